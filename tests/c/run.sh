#!/usr/bin/env bash
# Builds libtether (cargo build -p tether-ffi) and runs the C ABI's tests:
#   - the header compiles as C11 and C++17 (with the C++ wrapper), -Werror
#   - the shared library exports only tether_* symbols
#   - tests/c/test_*.c with -fsanitize=address,undefined
#   - test_lifecycle once under valgrind
#   - 100 dlopen/dlclose cycles (test_dlopen)
#   - tests/c/test_ws.c, test_tls.c (CA made with the openssl CLI), test_redis.c (starts a
#     redis-server on a free port; skipped, saying so, when it is not installed)
#   - the examples (examples/c/Makefile): game_loop, broadcast, ws_echo; client.c against the
#     official Node socket.io server; the official socket.io-client against chat_server.c
# The last line is "N passed, N failed"; the exit status is non-zero on any failure.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIB_DIR="$TARGET_DIR/debug"
OUT="$TARGET_DIR/c-tests"
mkdir -p "$OUT"
PASS=0
FAIL=0
FAILED=()

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
ko() { FAIL=$((FAIL + 1)); FAILED+=("$1"); echo "FAIL $1"; }
run() { # name, command...
  local name="$1"; shift
  local log="$OUT/$name.log"
  if "$@" >"$log" 2>&1; then ok "$name"; else ko "$name"; tail -n 30 "$log" | sed 's/^/     /'; fi
}

echo "== cargo build -p tether-ffi"
if ! cargo build -p tether-ffi --quiet; then
  echo "0 passed, 1 failed"
  exit 1
fi

CFLAGS=(-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -I"$ROOT/include")
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer)
LIBS=("$LIB_DIR/libtether.a" -lpthread -ldl -lm)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

echo "== header"
run header-c11 gcc "${CFLAGS[@]}" -Wpedantic -c tests/c/header_c.c -o "$OUT/header_c.o"
run header-cxx17 g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$ROOT/include" -I"$ROOT/bindings/cpp" \
  -c tests/c/header_cpp.cpp -o "$OUT/header_cpp.o"

echo "== exported symbols"
nm_check() {
  local bad
  bad="$(nm -D --defined-only "$LIB_DIR/libtether.so" | awk '{print $3}' | grep -v '^tether_' || true)"
  if [ -n "$bad" ]; then echo "non-tether symbols exported:"; echo "$bad" | head -20; return 1; fi
  [ "$(nm -D --defined-only "$LIB_DIR/libtether.so" | grep -c ' T tether_')" -gt 50 ]
}
run nm-only-tether-symbols nm_check

echo "== C tests (ASan + UBSan)"
for src in tests/c/test_*.c; do
  name="$(basename "$src" .c)"
  [ "$name" = test_dlopen ] && continue
  if gcc "${CFLAGS[@]}" "${SAN[@]}" "$src" "${LIBS[@]}" -o "$OUT/$name" >"$OUT/$name.build.log" 2>&1; then
    run "$name" timeout 120 "$OUT/$name"
  else
    ko "$name (build)"; tail -n 20 "$OUT/$name.build.log"
  fi
done

echo "== valgrind"
if command -v valgrind >/dev/null; then
  if gcc "${CFLAGS[@]}" tests/c/test_lifecycle.c "${LIBS[@]}" -o "$OUT/test_lifecycle_vg"; then
    run valgrind-lifecycle timeout 600 valgrind -q --error-exitcode=3 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
      "$OUT/test_lifecycle_vg"
  else
    ko "valgrind-lifecycle (build)"
  fi
else
  ko "valgrind-lifecycle (valgrind is not installed: apt-get install -y valgrind)"
fi

echo "== dlopen cycles"
if gcc "${CFLAGS[@]}" tests/c/test_dlopen.c -ldl -lpthread -o "$OUT/test_dlopen"; then
  run dlopen-100-cycles timeout 300 "$OUT/test_dlopen" "$LIB_DIR/libtether.so" 100
else
  ko "dlopen (build)"
fi

echo "== examples"
EX="$OUT/examples"
if make -s -C examples/c OUT="$EX" TARGET_DIR="$TARGET_DIR" SAN="${SAN[*]}" >"$OUT/examples.build.log" 2>&1; then
  ok examples-build
  run example-game_loop timeout 60 "$EX/game_loop" 90
  run example-broadcast-cpp timeout 60 "$EX/broadcast"
  run example-ws_echo-cpp timeout 60 "$EX/ws_echo"
  if command -v node >/dev/null && [ -d tests/interop/node_modules/socket.io ]; then
    # client.c against the official Node socket.io server
    client_vs_node() {
      local log="$OUT/reference_server.out" pid port i
      node tests/interop/reference_server.js --port 0 >"$log" 2>&1 &
      pid=$!
      for i in $(seq 1 100); do
        port="$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
        [ -n "$port" ] && break
        sleep 0.1
      done
      local rc=1
      if [ -n "$port" ]; then timeout 30 "$EX/client" "http://127.0.0.1:$port"; rc=$?; fi
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      return $rc
    }
    run example-client-vs-node-socket.io client_vs_node
    # the official socket.io-client against the C chat server
    run socket.io-client-vs-c-chat_server env TETHER_C_CHAT_BIN="$EX/chat_server" \
      node --test tests/interop/c_chat.test.mjs
  else
    ko "interop (node or tests/interop/node_modules missing)"
  fi
else
  ko examples-build
  tail -n 30 "$OUT/examples.build.log"
fi

if [ "$FAIL" -gt 0 ]; then
  echo "failed: ${FAILED[*]}"
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
