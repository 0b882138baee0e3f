# shellcheck shell=bash disable=SC2034
# A throwaway PostgreSQL cluster for the p11ca tests (issue 13); sourced by
# ca_lib.sh when P11CA_TEST_DB=pg, and by test_ca_pg_*.sh.
#
#   pg_start      initdb + pg_ctl start in a new folder under /tmp, listening
#                 only on a unix socket in that folder (no TCP port), with
#                 password authentication (scram-sha-256) for role p11ca
#   pg_newdb NAME a new database; sets PG_URI (postgresql://p11ca@/NAME?host=...)
#   pg_stop       pg_ctl stop (fast), then the postmaster's PID if still there
#   pg_restart    pg_stop + start on the same data (the fault tests)
#   PG_PWFILE     the role's password (db-password-file); PGPASSFILE is set
#                 for psql, so no password is ever in argv
#   pg_sql DB SQL one psql -tA command, output on stdout
#
# PostgreSQL refuses to run as root: as root (CI) the cluster runs as user
# nobody (setpriv), in a folder under /tmp that nobody owns (the tests that
# touch /tmp as nobody share the ctest RESOURCE_LOCK user_nobody).  Without
# the server binaries the test is skipped (exit 77, SKIP_RETURN_CODE).

PG_BIN=
for _d in /usr/lib/postgresql/*/bin; do
	[ -x "$_d/initdb" ] && [ -x "$_d/pg_ctl" ] && [ -x "$_d/postgres" ] && PG_BIN=$_d
done
if [ -z "$PG_BIN" ] || ! command -v psql >/dev/null; then
	echo "skip: ${TEST_NAME:-pg}: PostgreSQL server binaries not installed (scripts/setup installs postgresql)"
	exit 77
fi

PG_DIR='' PG_SOCK='' PG_URI='' PG_PWFILE='' _PG_AS=() _PG_UP=0
PG_PORT=5432

# pg_start: the cluster, running; bounded (30 s)
pg_start() {
	local uid
	uid=$(id -u)
	PG_DIR=$(mktemp -d /tmp/p11c-pg.XXXXXX) || fail "mktemp for the cluster"
	PG_SOCK=$PG_DIR
	if [ "$uid" = 0 ]; then
		command -v setpriv >/dev/null || fail "running as root without setpriv: cannot start PostgreSQL as nobody"
		chown 65534:65534 "$PG_DIR"
		_PG_AS=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
	fi
	chmod 700 "$PG_DIR"
	# the password: random, in files only (db-password-file, PGPASSFILE)
	PG_PWFILE=$T/pg.pw
	(umask 077 && openssl rand -hex 16 >"$PG_PWFILE") || fail "cannot make a password"
	cp "$PG_PWFILE" "$PG_DIR/pw"
	[ "$uid" = 0 ] && chown 65534:65534 "$PG_DIR/pw"
	(umask 077 && printf '*:*:*:p11ca:%s\n' "$(cat "$PG_PWFILE")" >"$T/pgpass")
	export PGPASSFILE=$T/pgpass
	"${_PG_AS[@]}" env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$PG_BIN/initdb" -D "$PG_DIR/data" -U p11ca \
		--pwfile="$PG_DIR/pw" --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 \
		--locale=C.UTF-8 >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log" >&2; fail "initdb failed"; }
	rm -f "$PG_DIR/pw"
	cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$PG_SOCK'
port = $PG_PORT
max_connections = 40
shared_buffers = 16MB
fsync = off
full_page_writes = off
CONF
	_pg_up
}

_pg_up() {
	"${_PG_AS[@]}" env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 timeout 30 "$PG_BIN/pg_ctl" -D "$PG_DIR/data" \
		-l "$PG_DIR/server.log" -w -t 25 start >"$T/pg_ctl.log" 2>&1 \
		|| { cat "$T/pg_ctl.log" "$PG_DIR/server.log" >&2; fail "pg_ctl start failed"; }
	_PG_UP=1
}

# pg_stop: fast shutdown (active sessions end), bounded; then by PID
pg_stop() {
	local pid=''
	[ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 0
	[ -f "$PG_DIR/data/postmaster.pid" ] && pid=$(head -n 1 "$PG_DIR/data/postmaster.pid")
	"${_PG_AS[@]}" env -i PATH=/usr/bin:/bin timeout 30 "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 20 \
		stop >/dev/null 2>&1 || true
	case $pid in '' | *[!0-9]*) ;; *)
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi ;;
	esac
	_PG_UP=0
}

pg_restart() {
	pg_stop
	_pg_up
}

# pg_destroy: stop, and remove the folder (from the EXIT traps)
pg_destroy() {
	[ -n "$PG_DIR" ] || return 0
	pg_stop
	rm -rf -- "$PG_DIR"
	PG_DIR=''
}

pg_sql() {
	local db=$1
	shift
	timeout 30 psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U p11ca -d "$db" -v ON_ERROR_STOP=1 -c "$1"
}

_PG_N=0
# pg_newdb [NAME]: a new, empty database; PG_URI names it
pg_newdb() {
	_PG_N=$((_PG_N + 1))
	local name=${1:-ca$_PG_N}
	pg_sql postgres "CREATE DATABASE $name" >/dev/null || fail "CREATE DATABASE $name"
	PG_URI="postgresql://p11ca@/$name?host=$PG_SOCK&port=$PG_PORT"
}
