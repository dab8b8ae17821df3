#!/usr/bin/env bash
# The test command of tether. Runs on a fresh Debian machine (as root) by itself:
# installs what is missing, then checks formatting and lints, builds, runs the Rust
# tests and the interop suites (Node socket.io-client, Playwright/Chromium, python-socketio)
# against tether's example servers.
#
#   scripts/test.sh              everything
#   scripts/test.sh --reference  only the node and python interop suites, against the
#                                Node reference server (proves the tests themselves; no cargo)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

REFERENCE=0
for arg in "$@"; do
  case "$arg" in
    --reference) REFERENCE=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

step() { echo "==> $*"; }

# --- what the interop suites need -----------------------------------------------------

if [ ! -x /usr/bin/chromium ]; then
  step "install chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y chromium
else
  step "chromium present: /usr/bin/chromium"
fi

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
if ! have redis-server || ! have nginx; then
  step "install redis-server and nginx (apt-get; the cluster tests start their own)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y redis-server nginx
  # The packages start system services on fixed ports; the tests use their own.
  (service redis-server stop || systemctl stop redis-server || true) >/dev/null 2>&1
  (service nginx stop || systemctl stop nginx || true) >/dev/null 2>&1
else
  step "redis-server and nginx present"
fi

INTEROP="$ROOT/tests/interop"
if [ ! -d "$INTEROP/node_modules" ] || [ "$INTEROP/package-lock.json" -nt "$INTEROP/node_modules" ]; then
  step "npm ci (tests/interop)"
  (cd "$INTEROP" && npm ci --no-audit --no-fund)
  touch "$INTEROP/node_modules"
else
  step "node modules up to date (tests/interop/node_modules)"
fi

VENV="$ROOT/.venv"
REQS="$INTEROP/requirements.txt"
STAMP="$VENV/.requirements.stamp"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ] || ! cmp -s "$REQS" "$STAMP"; then
  step "python venv .venv + pip install -r tests/interop/requirements.txt"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS"
  cp "$REQS" "$STAMP"
else
  step "python venv up to date (.venv)"
fi

run_interop() {
  step "node interop tests ($1)"
  node --test --test-concurrency=1 tests/interop/
  step "python interop tests ($1)"
  "$VENV/bin/python" -m pytest tests/interop -q
}

if [ "$REFERENCE" = 1 ]; then
  unset TETHER_TEST_SERVER TETHER_CHAT_BIN TETHER_CLIENT_BIN TETHER_CLIENT_EXAMPLE \
    TETHER_WS_ECHO_BIN TETHER_WSS_CHAT_BIN
  run_interop "against the Node reference server"
  step "done (reference)"
  exit 0
fi

# --- Rust --------------------------------------------------------------------------------

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --examples"
cargo build --examples

step "cargo test --workspace"
cargo test --workspace

# --- interop against tether ---------------------------------------------------------------

step "locate the cargo target dir"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
echo "target dir: $TARGET_DIR"
export TETHER_TEST_SERVER="$TARGET_DIR/debug/examples/conformance_server"
export TETHER_CHAT_BIN="$TARGET_DIR/debug/examples/chat"
export TETHER_CLIENT_BIN="$TARGET_DIR/debug/examples/conformance_client"
export TETHER_CLIENT_EXAMPLE="$TARGET_DIR/debug/examples/client"
export TETHER_WS_ECHO_BIN="$TARGET_DIR/debug/examples/ws_echo"
export TETHER_WSS_CHAT_BIN="$TARGET_DIR/debug/examples/wss_chat"
for bin in "$TETHER_TEST_SERVER" "$TETHER_CHAT_BIN" "$TETHER_CLIENT_BIN" "$TETHER_CLIENT_EXAMPLE" \
  "$TETHER_WS_ECHO_BIN" "$TETHER_WSS_CHAT_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "missing example binary: $bin (cargo build --examples should have built it)" >&2
    exit 1
  fi
done

step "benchmark harness smoke run (bench/run.sh --smoke: correctness only)"
bash bench/run.sh --smoke

step "Python package: build into .venv, mypy.stubtest, pytest (bindings/python/run_tests.sh)"
TETHER_PY_PROFILE=dev bash bindings/python/run_tests.sh -q

step "C ABI: build, header, sanitizers, valgrind, dlopen cycles, examples (tests/c/run.sh)"
bash tests/c/run.sh

run_interop "against tether"
step "done"
