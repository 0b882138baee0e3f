#!/usr/bin/env bash
# p11ca killed with SIGKILL under load, twice, and restarted on the same
# port.  6 Caramel clients (curl, as the protocol goes: GET, on 404 POST,
# GET again; no answer -> retry) enroll 12 UUID CSRs each (autosigned), and
# one p11cert client enrolls token keys one after another in embedded mode
# (each re-run until it exits 0) for as long as the curl clients run.  Afterwards:
#   - every client got its certificate, issued by the CA for its CSR's key
#   - every CSR is in the database exactly once, signed, with exactly one
#     certificate, and that certificate is the one the client holds
#     (serials match): no request lost, none signed twice
#   - the p11cert identities: certificate in the token next to the key, the
#     same serial in the database
# First, deterministically (test hooks): p11ca killed after a UUID
# request's certificate is issued and before the request and the
# certificate are committed together: nothing is stored, and the client's
# retry is signed; and a request left pending by a crash (stored without
# autosign, then served with autosign) is signed by the next GET.
# test_ca_load covers SIGTERM (graceful); this is the crash.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
need_test_hooks
command -v curl >/dev/null || fail "curl not installed"

start=$(date +%s)
NCLI=6 PER=12 NTOK=3
TOTAL=$((NCLI * PER))
ca_up kill0 --autosign uuid
PORT=$SRV_PORT
URL=https://localhost:$PORT
new_token fault-srv

# uuid_csr FILE: a CSR with a UUID CN (autosigned) in FILE; its SHA-256 on stdout
uuid_csr() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
		-subj "/C=SE/O=Example/CN=$(cat /proc/sys/kernel/random/uuid)" -out "$1" 2>/dev/null || fail "openssl req"
	sha256sum "$1" | cut -c1-64
}
# http_status SECONDS [curl args...] URL: the HTTP status (000: no answer)
http_status() {
	local secs=$1 c
	shift
	c=$(curl -s --noproxy '*' --max-time "$secs" --cacert "$D/ca.crt" -w '%{http_code}' "$@" 2>/dev/null) || true
	echo "${c:-000}"
}

# --- deterministic: killed between issuing a UUID request's certificate and storing both ---
# (P11CERT_TEST_STALL_AT stops p11ca right before the one commit)
kill_pid "$SRV_PID"
P11CERT_TEST_STALL_AT=ca-issued-not-stored srv_start stall "$D" --autosign uuid --listen "127.0.0.1:$PORT"
USHA=$(uuid_csr "$T/u.csr")
c=$(http_status 3 -o /dev/null --data-binary @"$T/u.csr" "$URL/$USHA")
[ "$c" = 000 ] || fail "POST answered $c although p11ca was to stop before answering"
wait_for 10 "p11ca stopped at ca-issued-not-stored" grep -qF "stopping at 'ca-issued-not-stored'" "$SRV_LOG"
kill_pid "$SRV_PID"
srv_start restart0 "$D" --autosign uuid --listen "127.0.0.1:$PORT"
p11ca show --dir "$D" "$USHA" >/dev/null 2>&1 && fail "the request was stored although p11ca died before its one commit"
c=$(http_status 10 -o /dev/null "$URL/$USHA")
[ "$c" = 404 ] || fail "GET after the crash: $c, want 404 (nothing stored)"
c=$(http_status 10 -o /dev/null --data-binary @"$T/u.csr" "$URL/$USHA")
[ "$c" = 202 ] || fail "POST again after the crash: $c, want 202"
[ "$(ca_request_field "$D" "$USHA" state)" = signed ] || fail "the retried request is not signed"
pass "killed between issuing and the one commit: nothing stored, the retry is signed"

# --- a UUID request left pending (stored while autosign was off), then a
# restart with autosign: the next GET signs it ---
kill_pid "$SRV_PID"
srv_start noauto "$D" --autosign none --listen "127.0.0.1:$PORT"
USHA=$(uuid_csr "$T/v.csr")
c=$(http_status 10 -o /dev/null --data-binary @"$T/v.csr" "$URL/$USHA")
[ "$c" = 202 ] || fail "POST with autosign none: $c, want 202"
kill_pid "$SRV_PID"
srv_start restart0 "$D" --autosign uuid --listen "127.0.0.1:$PORT"
[ "$(ca_request_field "$D" "$USHA" state)" = pending ] || fail "the request was not stored pending"
c=$(http_status 10 -o "$T/u.crt" "$URL/$USHA")
[ "$c" = 200 ] || fail "GET of an autosignable pending request: $c, want 200 (signed now)"
openssl verify -CAfile "$D/ca.crt" "$T/u.crt" >/dev/null 2>&1 || fail "the late-signed certificate does not verify"
pass "a UUID request left pending: the next GET signs it"

# --- CSRs, one key per client ---------------------------------------------------
mkdir "$T/c" "$T/r" "$T/p"
make_csrs() { # CLIENT
	local i
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/c/k$1.pem" 2>/dev/null || return 1
	for i in $(seq $(($1 * PER)) $(($1 * PER + PER - 1))); do
		openssl req -new -key "$T/c/k$1.pem" -subj "/C=SE/O=Example/CN=$(cat /proc/sys/kernel/random/uuid)" \
			-out "$T/c/$i.csr" 2>/dev/null || return 1
		sha256sum "$T/c/$i.csr" | cut -c1-64 >"$T/c/$i.sha"
	done
}
pids=()
for w in $(seq 0 $((NCLI - 1))); do
	make_csrs "$w" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "making CSRs failed"; done
echo "# $TOTAL CSRs in $(($(date +%s) - start)) s"

# client W: a Caramel client for CSRs W*PER .. W*PER+PER-1; every answer
# goes to $T/r/W.log as "I METHOD CODE" (000: no answer); bounded retries
client() {
	local w=$1 i sha code n ok
	for i in $(seq $((w * PER)) $((w * PER + PER - 1))); do
		sha=$(cat "$T/c/$i.sha")
		ok=0
		for n in $(seq 300); do
			code=$(curl -s --noproxy '*' --max-time 10 --cacert "$D/ca.crt" -o "$T/r/$i.get" \
				-w '%{http_code}' "$URL/$sha" 2>/dev/null) || true
			code=${code:-000}
			echo "$i GET $code" >>"$T/r/$w.log"
			case $code in
			200) mv "$T/r/$i.get" "$T/r/$i.crt"; ok=1; break ;;
			404)
				code=$(curl -s --noproxy '*' --max-time 10 --cacert "$D/ca.crt" -o "$T/r/$i.post" \
					-w '%{http_code}' --data-binary @"$T/c/$i.csr" "$URL/$sha" 2>/dev/null) || true
				code=${code:-000}
				echo "$i POST $code" >>"$T/r/$w.log"
				case $code in 202 | 000) ;; *) break ;; esac
				;;
			000 | 202) sleep 0.2 ;;
			*) break ;;
			esac
		done
		[ "$ok" = 1 ] || echo "$i FAILED" >>"$T/r/$w.log"
	done
}

# the p11cert client: identity after identity until $T/stop appears (at
# least NTOK, at most 40), each re-run in embedded mode until it exits 0
token_client() {
	local k n rc
	for k in $(seq 1 40); do
		[ "$k" -gt "$NTOK" ] && [ -e "$T/stop" ] && break
		mkdir -p "$T/p/$k"
		cat /proc/sys/kernel/random/uuid >"$T/p/$k.id"
		for n in $(seq 100); do
			rc=0
			timeout -k 5 60 "$P11CERT" --module "$MOD" --pin-file "$PINF" enroll caramel "localhost:$PORT" \
				"$(cat "$T/p/$k.id")" --dir "$T/p/$k" --ca-file "$D/ca.crt" --type ec:P-256 --once \
				>>"$T/p/$k.out" 2>&1 || rc=$?
			echo "$k run $rc" >>"$T/p/log"
			[ "$rc" = 0 ] && break
			sleep 0.3
		done
	done
}

answers() { cat "$T"/r/*.crt 2>/dev/null | grep -c 'BEGIN CERTIFICATE' || true; }

# wait_answers N: until N certificates are in (bounded)
wait_answers() {
	local i
	for i in $(seq 600); do
		[ "$(answers)" -ge "$1" ] && return 0
		sleep 0.1
	done
	fail "only $(answers) certificates after 60 s, waiting for $1"
}

cpids=()
for w in $(seq 0 $((NCLI - 1))); do
	client "$w" &
	cpids+=($!)
	_PIDS+=($!)
done
token_client &
tpid=$!
_PIDS+=("$tpid")

# two crashes: after a third and after two thirds of the answers
for round in 1 2; do
	wait_answers $((TOTAL * round / 3))
	got=$(answers)
	kill_pid "$SRV_PID"
	echo "# SIGKILL $round after $got certificates"
	sleep 1
	srv_start "kill$round" "$D" --autosign uuid --listen "127.0.0.1:$PORT"
	[ "$SRV_PORT" = "$PORT" ] || fail "restarted on port $SRV_PORT, not $PORT"
done

# all clients finish (bounded)
for p in "${cpids[@]}" STOP "$tpid"; do
	[ "$p" = STOP ] && { touch "$T/stop"; continue; }
	for i in $(seq 1200); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$p" 2>/dev/null && fail "client $p still running after 120 s"
	wait "$p" || fail "client $p failed"
done
cat "$T"/r/*.log >"$T/all.log"
if grep -q FAILED "$T/all.log"; then
	grep -E 'FAILED|POST [^20]|GET [^20]' "$T/all.log" | head >&2
	fail "some clients did not get a certificate"
fi
noans=$(grep -c ' 000$' "$T/all.log" || true)
posts=$(grep -c ' POST 202$' "$T/all.log" || true)
[ "$(answers)" = "$TOTAL" ] || fail "$(answers) certificates, want $TOTAL"
[ "$noans" -ge 2 ] || fail "the crashes cut off no request ($noans unanswered)"
echo "# $TOTAL certificates; $noans requests without an answer, retried; $posts POSTs acknowledged"

# every certificate: issued by the CA (one openssl call for all)
# shellcheck disable=SC2046
openssl verify -CAfile "$D/ca.crt" $(for i in $(seq 0 $((TOTAL - 1))); do echo "$T/r/$i.crt"; done) >"$T/verify.out" 2>&1 \
	|| { grep -v ': OK$' "$T/verify.out" >&2; fail "a certificate does not verify under the CA"; }

# the p11cert identities
NTOK=$(find "$T/p" -maxdepth 1 -name '*.id' | wc -l)
for k in $(seq 1 "$NTOK"); do
	id=$(cat "$T/p/$k.id")
	[ -s "$T/p/$k/$id.crt" ] || { cat "$T/p/$k.out" >&2; fail "p11cert identity $k: no certificate"; }
	cert_next_to_key "$id" "$T/p/$k/$id.crt" >/dev/null
	cert_serial "$T/p/$k/$id.crt" >"$T/p/$k.serial"
	sha256sum "$T/p/$k/$id.csr" | cut -c1-64 >"$T/p/$k.sha"
done
fails=$(grep -vc ' 0$' "$T/p/log" || true)
echo "# p11cert: $NTOK identities, $(wc -l <"$T/p/log") runs, $fails failed and were re-run"

# the database against what the clients hold
p11ca list --dir "$D" --all --json >"$T/db.json" 2>"$T/db.err" || fail "p11ca list: $(cat "$T/db.err")"
python3 - "$T" "$TOTAL" "$NTOK" <<'PY' || fail "database check"
import base64, collections, json, re, sys
t, total, ntok = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def der(pem, kind):
    b64 = re.search(r"-----BEGIN %s-----(.*?)-----END %s-----" % (kind, kind), pem, re.S).group(1)
    return base64.b64decode("".join(b64.split()))

def tlv(b, i):
    """(tag, start of value, end of value) of the DER element at i"""
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, i, i + n

def children(b, i):
    _, s, e = tlv(b, i)
    out = []
    while s < e:
        out.append(s)
        s = tlv(b, s)[2]
    return out

def cert_serial_spki(d):
    tbs = children(d, 0)[0]
    f = children(d, tbs)
    if d[f[0]] == 0xA0:          # [0] version
        f = f[1:]
    _, s, e = tlv(d, f[0])
    spki = f[5]
    return d[s:e].hex().lstrip("0"), d[spki:tlv(d, spki)[2]]

def csr_spki(d):
    info = children(d, 0)[0]
    spki = children(d, info)[2]
    return d[spki:tlv(d, spki)[2]]

rows = json.load(open(t + "/db.json"))
by_sha = collections.defaultdict(list)
for r in rows:
    by_sha[r["sha256"]].append(r)
dup = [s for s, v in by_sha.items() if len(v) > 1]
assert not dup, "stored twice: %s" % dup
want = total + ntok + 2          # + the two deterministic ones
assert len(rows) == want, "%d requests in the database, want %d" % (len(rows), want)
for i in range(total):
    sha = open("%s/c/%d.sha" % (t, i)).read().strip()
    r = by_sha.get(sha)
    assert r, "request %d (%s) lost" % (i, sha)
    r = r[0]
    assert r["state"] == "signed", (i, r)
    assert r["certificates"] == 1, ("signed %d times" % r["certificates"], i, r)
    serial, spki = cert_serial_spki(der(open("%s/r/%d.crt" % (t, i)).read(), "CERTIFICATE"))
    assert serial == r["serial"].lower().lstrip("0"), ("client holds another certificate", i, serial, r)
    assert spki == csr_spki(der(open("%s/c/%d.csr" % (t, i)).read(), "CERTIFICATE REQUEST")), \
        ("certificate %d is not for its CSR's key" % i)
for k in range(1, ntok + 1):
    sha = open("%s/p/%d.sha" % (t, k)).read().strip()
    serial = open("%s/p/%d.serial" % (t, k)).read().strip().lstrip("0")
    r = by_sha.get(sha)
    assert r, "p11cert identity %d (%s) not in the database" % (k, sha)
    r = r[0]
    assert r["state"] == "signed" and r["certificates"] == 1, r
    assert r["serial"].lower().lstrip("0") == serial, ("token certificate is not the database's", k, r, serial)
print("%d requests, each once, each with its one certificate" % len(rows))
PY

kill -TERM "$SRV_PID"
bg_wait "$SRV_PID" 15
[ "$BG_RC" = 0 ] || fail "p11ca exited $BG_RC on SIGTERM after the crashes"
[ "$fails" -ge 1 ] || echo "# note: no p11cert run happened to meet a crash"
pass "SIGKILL twice under load: $TOTAL + $NTOK enrollments, none lost, none twice ($(($(date +%s) - start)) s)"
