#!/usr/bin/env bash
# tether's benchmarks (issue 9): one command builds and installs what is missing, then runs
# bench/run.py.
#
#   bench/run.sh                 full run (<= 10 min once built): tether, socketioxide, Node
#                                socket.io, python-socketio, tether through the C ABI
#                                (bench/peers/c); 3 repetitions; writes
#                                bench/results/<date>.json and .md
#   bench/run.sh --smoke         tether only, small sizes, correctness only (< 60 s once
#                                built); exits non-zero on a failure; last line `N passed, N failed`
#   bench/run.sh --quick         the full rotation with 1k connections and no heartbeat wait
#   bench/run.sh --servers tether,node --reps 1   a subset
#   bench/run.sh --nice -10      run server and generator at a higher priority (root)
#
# Installs into git-ignored folders of bench/ only: target/ (cargo), peers/node/node_modules
# (npm ci), .venv (pip). tether's own bench server is built with the main crate's cargo
# target dir ($CARGO_TARGET_DIR when set).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
BENCH="$PWD"
ROOT="$(dirname "$BENCH")"

SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
  esac
done

step() { echo "==> $*" >&2; }

# 10k connections: one descriptor each in the server and in the load generator.
NEED_FILES=$([ "$SMOKE" = 1 ] && echo 1024 || echo 10300)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FILES" ]; then
  echo "bench: the open-files limit is $(ulimit -n) (hard limit $(ulimit -Hn)); this run needs" \
       "$NEED_FILES. Raise the hard limit (e.g. in /etc/security/limits.conf, or run as root)." >&2
  exit 2
fi
for tool in taskset cargo python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: needs 2 cores (server on core 0, load generator on core 1)" >&2
  exit 2
fi

# --- builds ------------------------------------------------------------------------------

step "cargo build --release --example bench_server (tether)"
(cd "$ROOT" && cargo build --release --quiet --example bench_server)
TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')}"
export TETHER_BENCH_SERVER="$TARGET_DIR/release/examples/bench_server"

if [ "$SMOKE" = 1 ]; then
  step "cargo build --release -p loadgen (bench/)"
  (CARGO_TARGET_DIR="$BENCH/target" cargo build --release --quiet -p loadgen)
else
  step "cargo build --release -p loadgen -p bench-socketioxide -p bench-rawws (bench/)"
  (CARGO_TARGET_DIR="$BENCH/target" cargo build --release --quiet -p loadgen -p bench-socketioxide -p bench-rawws)

  NODE_DIR="$BENCH/peers/node"
  command -v node >/dev/null || { echo "bench: node is missing (apt-get install nodejs npm)" >&2; exit 2; }
  if [ ! -d "$NODE_DIR/node_modules/socket.io" ] || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules" ]; then
    step "npm ci (bench/peers/node)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$NODE_DIR/node_modules"
  fi

  VENV="$BENCH/.venv"
  REQS="$BENCH/peers/python/requirements.txt"
  STAMP="$VENV/.requirements.stamp"
  if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ] || ! cmp -s "$REQS" "$STAMP"; then
    step "python venv bench/.venv + pip install -r bench/peers/python/requirements.txt"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS"
    cp "$REQS" "$STAMP"
  fi
fi
# tether's Python binding (S4): built into $TETHER_VENV (default <repo>/.venv) unless a
# command is given in TETHER_BENCH_PY_CMD; a failed build leaves it out of the rotation.
if [ "$SMOKE" = 0 ] && [ -z "${TETHER_BENCH_PY_CMD:-}" ]; then
  step "bindings/python/build.sh (tether's Python binding, release)"
  if TETHER_PY_PROFILE=release bash "$ROOT/bindings/python/build.sh"; then
    export TETHER_BENCH_PY="${TETHER_VENV:-$ROOT/.venv}/bin/python"
  else
    echo "bench: the Python binding did not build; tether-python is left out" >&2
  fi
fi
export TETHER_BENCH_LOADGEN="$BENCH/target/release/loadgen"

# S4: the C ABI's echo server (bench/peers/c), against the release libtether.a.
if [ "$SMOKE" = 0 ] && [ -z "${TETHER_BENCH_CABI_CMD:-}" ]; then
  step "cargo build --release -p tether-ffi + cc bench/peers/c/echo_server.c"
  (cd "$ROOT" && cargo build --release --quiet -p tether-ffi)
  mkdir -p "$BENCH/target/c"
  "${CC:-cc}" -std=c11 -O2 -Wall -Wextra -Werror -I"$ROOT/include" "$BENCH/peers/c/echo_server.c" \
    "$TARGET_DIR/release/libtether.a" -lpthread -ldl -lm -o "$BENCH/target/c/echo_server"
  export TETHER_BENCH_CABI_CMD="$BENCH/target/c/echo_server"
fi

exec python3 "$BENCH/run.py" "$@"
