#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis (PyPI, in a virtual environment made here) from its
# own OpenAPI document, with a valid API key, in every phase (examples, coverage, fuzzing,
# stateful): no answer may be a server error or contradict the document. Runs its own
# bookingd (fresh database, nats-server of its own, rate limits out of the way) and stops it
# afterwards. FUZZ_SECONDS bounds the run (default 60).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SCHEMATHESIS_VERSION="4.32.5"
VENV="${BOOKINGD_FUZZ_VENV:-$HOME/.cache/bookingd/schemathesis-venv}"

ensure_postgres
NATS_BIN="$(ensure_nats_server)"
ensure_venv_package "$VENV" schemathesis "$SCHEMATHESIS_VERSION"

# The fuzzer makes thousands of requests with one key: lift the limits so it tests the API,
# not the limiter (tests/api/rate_limits.rs covers that).
export MCP_RATE_LIMIT_BASIC=100000000 MCP_RATE_LIMIT_PRO=100000000 MCP_RATE_LIMIT_ENTERPRISE=100000000
export BOOKINGD_OPERATOR_TOKEN="fuzz-operator-token"
BOOKINGD_SECRET_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
export BOOKINGD_SECRET_KEY
start_private_bookingd bookingd_fuzz "$NATS_BIN"

log "schemathesis against http://$BOOKINGD_BIND/api/v2/openapi.json for ${FUZZ_SECONDS:-60} s"
# Streams (SSE, NDJSON export) never end, so they are left out; everything else is in.
status=0
# Unique Idempotency-Keys for generated requests (see the hooks file).
export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks
# Run from the scratch directory: schemathesis keeps a cache in the working directory.
(cd "$PRIVATE_WORK" && "$VENV/bin/schemathesis" run "http://$BOOKINGD_BIND/api/v2/openapi.json" \
    --header "Authorization: Bearer $PRIVATE_KEY" \
    --checks not_a_server_error,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --exclude-path-regex '/(audit/stream|audit/export|branches/\{branch_id\}/events)$' \
    --max-time "${FUZZ_SECONDS:-60}" \
    --seed "${FUZZ_SEED:-20261127}" \
    --no-color) || status=$?
if [ "$status" -ne 0 ]; then
    echo "bookingd's log (errors):" >&2
    grep -E "ERROR|panicked" "$PRIVATE_WORK/bookingd.log" | tail -n 30 >&2 || true
fi
exit "$status"
