#!/usr/bin/env bash
# A two-node tether chat cluster on loopback: redis-server, two `cluster_node` examples
# sharing it, and nginx in front with sticky sessions (nginx.conf.template).
#
#   bash examples/cluster/start.sh
#
# then open the printed URL in a few browser tabs: every tab is in one chat, whichever
# node serves it. Ctrl-C (or SIGTERM) stops everything; so does any child exiting.
#
# Environment:
#   PORT, REDIS_PORT, NODE_A_PORT, NODE_B_PORT   ports (default: free ones)
#   CLUSTER_PROFILE=dev                          debug build instead of --release
#   CARGO_TARGET_DIR                             respected
# Needs redis-server and nginx (Debian: apt-get install redis-server nginx) and cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for prog in redis-server nginx cargo; do
    if ! command -v "$prog" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$prog" ]; then
        echo "start.sh: $prog is missing (Debian: apt-get install redis-server nginx)" >&2
        exit 1
    fi
done
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
free_port() { # below Linux's ephemeral range (32768+), not listening, not picked yet
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        if [[ "$taken" != *" $p "* ]] && ! port_in_use "$p"; then
            taken+="$p "
            echo "$p"
            return
        fi
    done
}
wait_port() { # port, what, pid
    for _ in $(seq 1 200); do
        if port_in_use "$1"; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then
            echo "start.sh: $2 exited" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "start.sh: $2 did not open port $1" >&2
    return 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/tether-cluster.XXXXXX")"
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports: from the environment, else free ones. (Not `$(free_port)`: a subshell would
# not remember the ports already picked.)
for v in REDIS_PORT NODE_A_PORT NODE_B_PORT PORT; do taken+="${!v:-} "; done
for v in REDIS_PORT NODE_A_PORT NODE_B_PORT PORT; do
    if [ -z "${!v:-}" ]; then
        free_port >"$work/port"
        printf -v "$v" %s "$(cat "$work/port")"
    fi
done

profile=(--release)
profile_dir=release
if [ "${CLUSTER_PROFILE:-release}" = dev ]; then
    profile=()
    profile_dir=debug
fi
(cd "$root" && cargo build "${profile[@]}" --example cluster_node)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
node_bin="$target_dir/$profile_dir/examples/cluster_node"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT" redis-server "$!"

redis_url="redis://127.0.0.1:$REDIS_PORT"
"$node_bin" --port "$NODE_A_PORT" --redis "$redis_url" &
pids+=($!)
wait_port "$NODE_A_PORT" "node A" "$!"
"$node_bin" --port "$NODE_B_PORT" --redis "$redis_url" &
pids+=($!)
wait_port "$NODE_B_PORT" "node B" "$!"

sed -e "s#@DIR@#$work#g" -e "s#@PORT@#$PORT#g" \
    -e "s#@NODE_A@#127.0.0.1:$NODE_A_PORT#g" -e "s#@NODE_B@#127.0.0.1:$NODE_B_PORT#g" \
    "$here/nginx.conf.template" >"$work/nginx.conf"
"$nginx_bin" -p "$work" -c "$work/nginx.conf" &
pids+=($!)
wait_port "$PORT" nginx "$!"

cat <<EOF
cluster up:
  open http://127.0.0.1:$PORT  (nginx, sticky sessions)
  node A  http://127.0.0.1:$NODE_A_PORT
  node B  http://127.0.0.1:$NODE_B_PORT
  redis   $redis_url
Ctrl-C stops everything.
EOF

# Stop when any child stops.
wait -n "${pids[@]}"
