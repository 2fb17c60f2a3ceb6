#!/usr/bin/env bash
# Brings up what is missing (PostgreSQL, a current nats-server with nats.conf), builds
# bookingd, seeds the demo tenant, prints an API key with curl lines, and serves on :8080.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
NATS_BIN="$(ensure_nats_server)"
ensure_nats_running "$NATS_BIN"
ensure_database bookingd

export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/bookingd}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4223}"
export BOOKINGD_BIND="${BOOKINGD_BIND:-127.0.0.1:8080}"
export BOOKINGD_OPERATOR_TOKEN="${BOOKINGD_OPERATOR_TOKEN:-demo-operator-token}"
# The key sealing tenants' integration credentials: made once for this checkout and kept, so
# a Cal.com connection stored in one run still opens in the next.
if [ -z "${BOOKINGD_SECRET_KEY:-}" ]; then
    mkdir -p .data
    [ -s .data/secret.key ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > .data/secret.key
    BOOKINGD_SECRET_KEY="$(cat .data/secret.key)"
    export BOOKINGD_SECRET_KEY
fi

log "building bookingd (release)"
cargo build --release --locked -q -p api --bin bookingd
./target/release/bookingd demo
echo
echo "operator token: $BOOKINGD_OPERATOR_TOKEN   OpenAPI: http://$BOOKINGD_BIND/api/v2/openapi.json"
exec ./target/release/bookingd serve
