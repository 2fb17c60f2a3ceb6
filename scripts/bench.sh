#!/usr/bin/env bash
# Prints the write side's figures (see api/src/bin/bench.rs): create-booking over HTTP at 1 and
# 16 clients, relay lag, and the raw cqrs-es + postgres-es and plain INSERT baselines.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
ensure_nats_running "$(ensure_nats_server)"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4223}"
cargo build --release --locked -q -p api --bin bookingd-bench
exec ./target/release/bookingd-bench
