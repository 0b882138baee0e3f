#!/usr/bin/env bash
# p11ca resumes TLS sessions (session IDs on TLS 1.2, tickets on 1.3):
# it asks for client certificates, and OpenSSL refuses to resume on such a
# server without a session ID context (an "internal error" alert that
# failed every client and proxy reusing its sessions).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

p11ca init --dir "$T/ca" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 \
	>/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$T/ca"

for v in tls1_2 tls1_3; do
	rm -f "$T/sess.pem"
	# first connection: keep the session (TLS 1.3 tickets come after the
	# handshake: stay a second to read them); second: offer it back
	sleep 1 | timeout 20 openssl s_client -connect "127.0.0.1:$CA_PORT" -servername localhost -"$v" \
		-CAfile "$T/ca/ca.crt" -verify_return_error -sess_out "$T/sess.pem" \
		>"$T/s1.out" 2>&1 || fail "$v: first handshake: $(tail -5 "$T/s1.out")"
	[ -s "$T/sess.pem" ] || fail "$v: no session to resume"
	timeout 20 openssl s_client -connect "127.0.0.1:$CA_PORT" -servername localhost -"$v" \
		-CAfile "$T/ca/ca.crt" -verify_return_error -sess_in "$T/sess.pem" \
		</dev/null >"$T/s2.out" 2>&1 || fail "$v: resumed handshake failed: $(grep -i 'alert\|error' "$T/s2.out" | head -3)"
	grep -q '^Reused, ' "$T/s2.out" || fail "$v: the session was not resumed: $(grep -E '^(New|Reused)' "$T/s2.out")"
done
# and the server is still fine
curl -sf --cacert "$T/ca/ca.crt" "https://localhost:$CA_PORT/root.crt" -o /dev/null || fail "p11ca stopped answering"
pass "TLS 1.2 and 1.3 sessions resume"
