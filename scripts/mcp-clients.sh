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
ensure_venv_package "$VENV" mcp "$MCP_SDK_VERSION"

start_private_bookingd bookingd_mcp_clients "$NATS_BIN"
key="$PRIVATE_KEY"
work="$PRIVATE_WORK"

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
exit "$status"
