#!/usr/bin/env bash
# unit.test_store.pg: tests/unit/test_store.c on PostgreSQL.  A throwaway
# cluster (pg_lib.sh), then the test binary ($1) with P11CA_TEST_PG naming
# the cluster's maintenance database (each test makes and drops its own);
# the password reaches libpq through PGPASSFILE only.
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=pg_lib.sh
. "$_lib_dir/pg_lib.sh"
trap 'rc=$?; pg_destroy; _cleanup "$rc"' EXIT
[ -x "${1:-}" ] || fail "usage: store_pg_run.sh TEST_STORE_BINARY"
pg_start
export P11CA_TEST_PG="postgresql://p11ca@/postgres?host=$PG_SOCK&port=$PG_PORT"
timeout -k 5 300 "$1" || fail "test_store on PostgreSQL failed"
pass "store unit tests on PostgreSQL"
