#!/usr/bin/env bash
# Prints the write side's figures (see api/src/bin/bench.rs): create-booking over HTTP at 1 and
# 16 clients, relay lag, and the raw cqrs-es + postgres-es and plain INSERT baselines.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
# A nats-server of its own (port 4224, store .data/nats-bench): the benchmark recreates the
# stream EVENTS, which must not be the one the demo's event store is relayed to.
NATS_BIN="$(ensure_nats_server)"
if ! (exec 3<>/dev/tcp/127.0.0.1/4224) 2>/dev/null; then
    mkdir -p .data/nats-bench
    sed -e 's/127.0.0.1:4223/127.0.0.1:4224/' -e 's/127.0.0.1:8223/127.0.0.1:8224/' \
        -e 's#".data/nats"#".data/nats-bench"#' nats.conf >.data/nats-bench.conf
    log "starting the benchmark's nats-server on 127.0.0.1:4224 (log: .data/nats-bench.log)"
    nohup "$NATS_BIN" -c .data/nats-bench.conf >.data/nats-bench.log 2>&1 &
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/4224) 2>/dev/null && break
        sleep 0.2
    done
fi
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4224}"
cargo build --release --locked -q -p api --bin bookingd-bench --bin bookingd
exec ./target/release/bookingd-bench
