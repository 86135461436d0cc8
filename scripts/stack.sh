#!/usr/bin/env bash
# The docker-compose topology without containers, on loopback: two xlserve replicas (CPU
# backend), the REST gateway over both, and Debian's prometheus with docker/prometheus's
# scrape config pointed at the loopback ports.
#
#   scripts/stack.sh up   [--base-port N] [--state-dir DIR] [--scrape-interval 5s]
#   scripts/stack.sh down [--state-dir DIR]
#
# Ports: replica i gRPC N+i and metrics N+10+i, gateway N+20, prometheus N+30 (N = 51000).
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"; shift || true
base=51000
state=/tmp/xlserve-stack
scrape=5s
while [ $# -gt 0 ]; do
  case "$1" in
    --base-port) base="$2"; shift 2 ;;
    --state-dir) state="$2"; shift 2 ;;
    --scrape-interval) scrape="$2"; shift 2 ;;
    *) echo "stack: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin="${XLSERVE_BIN:-bazel-bin/xlserve}"

wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what="$1"; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "stack: $what did not come up (logs in $state)" >&2
  return 1
}

case "$cmd" in
  up)
    [ -x "$bin" ] || bazel build //:xlserve >&2
    mkdir -p "$state"
    for i in 0 1; do
      "$bin" serve --model models/xlstm-code-mtp --device cpu --threads 1 --max-num-seqs 4 \
        --port $((base + i)) --metrics-port $((base + 10 + i)) >"$state/xlserve-$i.log" 2>&1 &
      echo $! >"$state/xlserve-$i.pid"
    done
    for i in 0 1; do wait_for "replica $i" "$bin" health --addr "127.0.0.1:$((base + i))"; done
    "$bin" gateway --port $((base + 20)) --upstream "127.0.0.1:$base" --upstream "127.0.0.1:$((base + 1))" \
      >"$state/gateway.log" 2>&1 &
    echo $! >"$state/gateway.pid"
    wait_for gateway "$bin" health --http "http://127.0.0.1:$((base + 20))/health"
    sed -e "s/xlserve-0:9090/127.0.0.1:$((base + 10))/" -e "s/xlserve-1:9090/127.0.0.1:$((base + 11))/" \
        -e "s/gateway:8000/127.0.0.1:$((base + 20))/" -e "s/scrape_interval: 5s/scrape_interval: $scrape/" \
        docker/prometheus/prometheus.yml >"$state/prometheus.yml"
    prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus-data" \
      --web.listen-address="127.0.0.1:$((base + 30))" >"$state/prometheus.log" 2>&1 &
    echo $! >"$state/prometheus.pid"
    wait_for prometheus curl -sf "http://127.0.0.1:$((base + 30))/-/ready"
    echo "stack up: gateway http://127.0.0.1:$((base + 20)), replicas 127.0.0.1:$base and :$((base + 1)), prometheus http://127.0.0.1:$((base + 30))"
    ;;
  down)
    pids=()
    for name in gateway xlserve-0 xlserve-1 prometheus; do
      if [ -f "$state/$name.pid" ]; then
        pids+=("$(cat "$state/$name.pid")")
        rm -f "$state/$name.pid"
      fi
    done
    [ "${#pids[@]}" -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
    # The ports are free again only once the processes are gone.
    for pid in "${pids[@]}"; do
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    echo "stack down"
    ;;
  *)
    echo "usage: scripts/stack.sh up|down [--base-port N] [--state-dir DIR] [--scrape-interval 5s]" >&2
    exit 2
    ;;
esac
