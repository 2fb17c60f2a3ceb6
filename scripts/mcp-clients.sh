#!/usr/bin/env bash
# Drives bookingd's /mcp endpoint with real MCP clients: the official Python SDK (PyPI `mcp`,
# in a virtual environment made here) lists the tools and books an appointment end to end,
# once per protocol era; with BOOKINGD_MCP_INSPECTOR=1 the official Inspector's CLI (npm) lists
# the tools in both eras too. Runs its own bookingd on a free port, with a fresh database and a
# nats-server of its own, and stops them afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

MCP_SDK_VERSION="2.3.0"
MCP_INSPECTOR_VERSION="2.12.0"
VENV="${BOOKINGD_MCP_VENV:-$HOME/.cache/bookingd/mcp-venv}"

ensure_postgres
NATS_BIN="$(ensure_nats_server)"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_SDK_VERSION')" 2>/dev/null; then
    log "installing the MCP Python SDK $MCP_SDK_VERSION into $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q "mcp==$MCP_SDK_VERSION"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

nats_port="$(free_port)"
"$NATS_BIN" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)

database="bookingd_mcp_clients"
admin_url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
export PGOPTIONS="--client-min-messages=warning"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
psql "$admin_url" -qc "CREATE DATABASE $database"

log "building bookingd"
cargo build --locked -q -p api --bin bookingd
port="$(free_port)"
export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$database"
export NATS_URL="nats://127.0.0.1:$nats_port"
export BOOKINGD_BIND="127.0.0.1:$port"
export BOOKINGD_SAGAS=false
key="$(./target/debug/bookingd demo | sed -n 's/^export BOOKINGD_KEY=//p')"
[ -n "$key" ] || { echo "bookingd demo printed no key" >&2; exit 1; }

./target/debug/bookingd serve >"$work/bookingd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "http://$BOOKINGD_BIND/api/v2/mcp/health" >/dev/null && break
    sleep 0.2
done
curl -sf "http://$BOOKINGD_BIND/api/v2/mcp/health" >/dev/null || {
    echo "bookingd did not come up:" >&2
    tail -n 50 "$work/bookingd.log" >&2
    exit 1
}

status=0
for mode in auto legacy; do
    log "MCP Python SDK, mode $mode"
    "$VENV/bin/python" scripts/mcp_client.py "http://$BOOKINGD_BIND/mcp" "$key" "$mode" || status=1
done
# The official MCP Inspector's CLI (npm), when asked for: BOOKINGD_MCP_INSPECTOR=1.
if [ "${BOOKINGD_MCP_INSPECTOR:-0}" = 1 ]; then
    inspector_dir="$HOME/.cache/bookingd/inspector"
    inspector="$inspector_dir/node_modules/.bin/inspector"
    if [ ! -x "$inspector" ]; then
        log "installing the MCP Inspector $MCP_INSPECTOR_VERSION into $inspector_dir"
        mkdir -p "$inspector_dir"
        (cd "$inspector_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
            npm install -s "@modelcontextprotocol/inspector@$MCP_INSPECTOR_VERSION")
    fi
    for era in legacy modern; do
        log "MCP Inspector CLI, $era era: tools/list"
        HOME="$work" "$inspector" --cli "http://$BOOKINGD_BIND/mcp" --transport http \
            --protocol-era "$era" --header "Authorization: Bearer $key" \
            --method tools/list --strict --format json >"$work/tools-$era.json" || status=1
        python3 -c 'import json, sys; tools = json.load(open(sys.argv[1]))["result"]["tools"]; print(len(tools), "tools:", " ".join(t["name"] for t in tools)); sys.exit(0 if len(tools) == 12 else 1)' \
            "$work/tools-$era.json" || status=1
    done
fi
if [ "$status" -ne 0 ]; then
    echo "bookingd's log:" >&2
    tail -n 50 "$work/bookingd.log" >&2
fi
psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
exit "$status"
