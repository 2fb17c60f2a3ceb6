#!/usr/bin/env bash
# DESIGN.md §2: the domain crate does no I/O, so none of these may appear under it.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(sqlx|sqlx-core|postgres-es|async-nats|reqwest|axum|hyper|tokio-postgres) '
if cargo tree -p domain -e normal --prefix none --locked | grep -E "$forbidden"; then
    echo "domain depends on an I/O crate (above); it must stay pure" >&2
    exit 1
fi
echo "domain: no I/O dependencies"
