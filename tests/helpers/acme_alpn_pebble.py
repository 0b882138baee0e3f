#!/usr/bin/python3
"""A minimal ACME client (Debian's python3-acme) that has pebble validate
tests/helpers/alpn_responder by tls-alpn-01, for tests/cli/test_acme_alpn_pebble.sh
(until p11cert's own ACME client drives the responder).

  acme_alpn_pebble.py DIRECTORY CA_PEM FIFO LOG MODE IDENTIFIER...

Orders a certificate for the identifiers (DNS names, IP addresses), writes
"IDENTIFIER KEYAUTH" to FIFO (the responder's --stdin) for each tls-alpn-01
challenge, waits for "added IDENTIFIER" in LOG, answers the challenge and
polls the authorization.  MODE good: correct key authorizations, then
finalize and print the certificate's names; MODE bad: a wrong key
authorization (another token), so pebble must refuse.  Prints one line
per authorization: "IDENTIFIER valid" or "IDENTIFIER invalid: detail".
Every wait is bounded; loopback only.
"""
import datetime
import ipaddress
import sys
import time

import josepy as jose
from acme import client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def wait_added(log, ident):
    for _ in range(200):
        with open(log) as f:
            if ("added %s\n" % ident) in f.read():
                return
        time.sleep(0.05)
    sys.exit("responder did not add %s" % ident)


def main():
    directory, ca, fifo, log, mode = sys.argv[1:6]
    idents = sys.argv[6:]
    acct = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    net = client.ClientNetwork(acct, user_agent="p11cert-test", verify_ssl=ca)
    dirobj = client.ClientV2.get_directory(directory, net)
    acme = client.ClientV2(dirobj, net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    dns, ips = [], []
    for i in idents:
        try:
            ips.append(ipaddress.ip_address(i))
        except ValueError:
            dns.append(i)
    csr = crypto_util.make_csr(key_pem, dns, ipaddrs=ips)
    order = acme.new_order(csr)

    ok = True
    with open(fifo, "w") as w:
        for authz in order.authorizations:
            ident = authz.body.identifier.value
            chall = [c for c in authz.body.challenges if c.chall.typ == "tls-alpn-01"][0]
            ka = chall.chall.key_authorization(acct)
            if mode == "bad":
                ka = "wrongtoken" + ka[ka.index("."):]
            w.write("%s %s\n" % (ident, ka))
            w.flush()
            wait_added(log, ident)
            acme.answer_challenge(chall, chall.chall.response(acct))
            for _ in range(120):
                authz, _ = acme.poll(authz)
                if authz.body.status in (messages.STATUS_VALID, messages.STATUS_INVALID):
                    break
                time.sleep(0.5)
            if authz.body.status == messages.STATUS_VALID:
                print("%s valid" % ident)
            else:
                ok = False
                errs = [c.error.detail for c in authz.body.challenges if c.error is not None]
                print("%s %s: %s" % (ident, authz.body.status.name, "; ".join(errs)))
    if not ok:
        return 1
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    order = acme.poll_and_finalize(order, deadline)
    leaf = x509.load_pem_x509_certificate(order.fullchain_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sorted([str(n.value) for n in san])
    print("certificate " + " ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
