#!/usr/bin/env bash
# Runs every test: unit tests and the system tests, which need PostgreSQL (each test gets a
# database of its own) and a nats-server binary (each test starts its own on a free port);
# then the official MCP Python SDK against a running bookingd (scripts/mcp-clients.sh) and a
# schemathesis pass over the OpenAPI document (scripts/fuzz-api.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
NATS_SERVER_BIN="$(ensure_nats_server)"
export NATS_SERVER_BIN
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

log "building and running the tests"
cargo test --workspace --locked "$@"

# Real MCP clients against a running bookingd (skipped when arguments narrow the test run).
if [ "$#" -eq 0 ]; then
    log "MCP clients against a running bookingd"
    bash scripts/mcp-clients.sh
    log "schemathesis against the OpenAPI document (${FUZZ_SECONDS:-60} s)"
    bash scripts/fuzz-api.sh
fi
