#!/usr/bin/env bash
# p11ca's state folder (issue 10 points 11, 13): one `serve` per folder
# (lock), folders and secret files others could write or read are refused,
# a database that cannot be written is refused at start, and a missing or
# empty database next to an existing CA is never silently replaced.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

start=$(date +%s)
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0
mk_csr "$T/a.csr" "/C=SE/O=Example/CN=state-a"
ca_start one "$D"
post 202 "$T/a.csr"
SHA=$(sha256_of "$T/a.csr")

# --- a second serve on the same folder is refused; admin commands work ---
expect_rc 1 p11ca serve --dir "$D" --listen 127.0.0.1:0
expect_grep "another 'p11ca serve' is running on '$D'" "$T/err"
expect_rc 0 p11ca sign --dir "$D" "$SHA"
kill -0 "$CA_PID" || fail "the first serve died"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC"
# the lock goes with the process
ca_start two "$D"
ca_stop

# --- a folder others can write, or owned by another user: refused ---
chmod 777 "$D"
expect_rc 1 p11ca list --dir "$D"
expect_grep "state folder '$D' is writable by everyone \(mode 0777\): refused; run chmod 700" "$T/err"
chmod 770 "$D"
expect_rc 1 p11ca list --dir "$D"
expect_grep "writable by its group" "$T/err"
chmod 700 "$D"
if [ "$(id -u)" = 0 ]; then
	chown 65534 "$D"
	expect_rc 1 p11ca list --dir "$D"
	expect_grep "belongs to uid 65534, not to this user \(uid 0\) or root: refused" "$T/err"
	chown 0 "$D"
fi
expect_rc 0 p11ca list --dir "$D"

# --- secret files readable by others: refused for commands that use them ---
chmod 644 "$D/ca.key"
expect_rc 1 p11ca crl --dir "$D" -o "$T/crl.pem"
expect_grep "the CA key file '$D/ca.key' is accessible to everyone \(mode 0644\): refused; run chmod 600" "$T/err"
expect_rc 0 p11ca list --dir "$D"   # needs no key
chmod 600 "$D/ca.key"
chmod 640 "$D/tls.key"
expect_rc 1 p11ca serve --dir "$D"
expect_grep "the TLS key file '$D/tls.key' is accessible to its group" "$T/err"
chmod 600 "$D/tls.key"
printf '%s\n' "abcdefghijklmnopqrstuvwxyz0123456789" >"$D/token"
chmod 666 "$D/token"
expect_rc 1 p11ca serve --dir "$D" --token-file token --token-listen 127.0.0.1:0
expect_grep "the shared token file '$D/token' is accessible to everyone \(mode 0666\)" "$T/err"
rm -f "$D/token"
expect_rc 0 p11ca crl --dir "$D" -o "$T/crl.pem"

# --- a database that cannot be written: refused at start, not at the first POST ---
if [ "${P11CA_TEST_DB:-sqlite}" = pg ]; then
	# PostgreSQL: a role that may not insert (as a read-only standby would be)
	pg_sql ca1 "CREATE ROLE ro LOGIN PASSWORD 'ro-pass-not-secret'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ro" \
		>/dev/null || fail "CREATE ROLE ro"
	printf '%s\n' ro-pass-not-secret >"$T/ro.pw"
	chmod 600 "$T/ro.pw"
	expect_rc 1 p11ca serve --dir "$D" --db "postgresql://ro@/ca1?host=$PG_SOCK&port=$PG_PORT" --db-password-file "$T/ro.pw"
	expect_grep "the database of '$D' cannot be written \(the database is read-only \(a standby\) or this role may not insert\)" "$T/err"
	# the password file is a secret file: others may not read it
	chmod 644 "$PG_PWFILE"
	expect_rc 1 p11ca serve --dir "$D"
	expect_grep "the database password file '$PG_PWFILE' is accessible to everyone \(mode 0644\)" "$T/err"
	chmod 600 "$PG_PWFILE"
	# a wrong password: refused, and no password in the message
	printf '%s\n' wrong-password-xyz >"$T/bad.pw"
	chmod 600 "$T/bad.pw"
	expect_rc 1 p11ca list --dir "$D" --db "postgresql://p11ca:uri-secret-xyz@/nosuchdb?host=$PG_SOCK&port=$PG_PORT&password=q-secret-xyz"
	expect_grep "cannot open database 'postgresql://p11ca:\\*\\*\\*@/nosuchdb.*password=\\*\\*\\*" "$T/err"
	expect_nogrep q-secret-xyz "$T/err"
	expect_nogrep uri-secret-xyz "$T/err"
	expect_rc 1 p11ca list --dir "$D" --db-password-file "$T/bad.pw"
	expect_grep "password authentication failed" "$T/err"
	expect_nogrep wrong-password-xyz "$T/err"
	ro_note="read-only role, password file mode, wrong password refused (PostgreSQL)"
elif [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 711 "$T"
	D3=$T/ro
	cp -a "$D" "$D3"
	rm -f "$D3/p11ca.lock"
	chown -R 65534:65534 "$D3"
	chmod 444 "$D3/p11ca.db"
	expect_rc 1 setpriv --reuid=65534 --regid=65534 --clear-groups timeout -k 5 30 "$P11CA" serve --dir "$D3"
	expect_grep "the database of '$D3' cannot be written \(the database file is read-only for this user\)" "$T/err"
	chmod 700 "$T"
	ro_note="read-only database refused"
else
	ro_note="read-only database not checked (needs root and setpriv)"
fi

if [ "${P11CA_TEST_DB:-sqlite}" = pg ]; then
	# no database file to lose: a database that is not there is refused
	expect_rc 1 p11ca list --dir "$D" --db "postgresql://p11ca@/nosuchdb?host=$PG_SOCK&port=$PG_PORT"
	expect_grep "database \"nosuchdb\" does not exist" "$T/err"
	[ ! -e "$D/p11ca.db" ] || fail "p11ca.db created although the database is PostgreSQL"
	expect_rc 0 p11ca list --dir "$D" --all --json
	grep -q state-a "$T/out" || fail "the request is not in PostgreSQL"
	pass "state folder checks ($ro_note) in $(($(date +%s) - start)) s"
	exit 0
fi

# --- a missing or empty database next to the CA: refused, nothing created ---
cp "$D/p11ca.db" "$T/backup.db"
[ ! -s "$D/p11ca.db-wal" ] || fail "WAL left after the server stopped"
: >"$D/p11ca.db"
expect_rc 1 p11ca list --dir "$D"
expect_grep "the CA in '$D' exists \(ca.crt\) but its database $D/p11ca.db is empty" "$T/err"
expect_grep "Restore p11ca.db .* from a backup; only 'p11ca init' creates a database" "$T/err"
[ ! -s "$D/p11ca.db" ] || fail "the empty database was replaced"
expect_rc 1 p11ca serve --dir "$D"
expect_grep "is empty" "$T/err"
rm -f "$D/p11ca.db" "$D/p11ca.db-wal" "$D/p11ca.db-shm"
expect_rc 1 p11ca list --dir "$D"
expect_grep "database $D/p11ca.db is missing" "$T/err"
[ ! -e "$D/p11ca.db" ] || fail "a new database was created"
# restored: the request and its certificate are back
cp "$T/backup.db" "$D/p11ca.db"
expect_rc 0 p11ca list --dir "$D" --all --json
grep -q state-a "$T/out" || fail "the restored database lost the request"

pass "state folder checks ($ro_note) in $(($(date +%s) - start)) s"
