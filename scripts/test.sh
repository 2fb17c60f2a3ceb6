#!/usr/bin/env bash
# Runs every test: unit tests and the system tests, which need PostgreSQL (each test gets a
# database of its own) and a nats-server binary (each test starts its own on a free port).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
NATS_SERVER_BIN="$(ensure_nats_server)"
export NATS_SERVER_BIN
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

log "building and running the tests"
cargo test --workspace --locked "$@"
