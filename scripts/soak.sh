#!/usr/bin/env bash
# Soak test: the shipped model served on the CPU behind the gateway, on loopback, under
# moderate load with random cancels and client disconnects for a bounded time; reports the
# RSS of both processes over time and fails when either grew by more than 5% after warm-up or
# a state slot is still busy at the end.
#
#   scripts/soak.sh                       # 30 minutes
#   scripts/soak.sh --duration 300        # 5 minutes; other flags go to scripts/soak.py
# Needs a built //:xlserve (bazel build //:xlserve).
set -euo pipefail
cd "$(dirname "$0")/.."
xlserve="${XLSERVE:-bazel-bin/xlserve}"
log="$(mktemp -d /tmp/xlserve-soak.XXXXXX)"

# The state store fills up to its byte bound as prefixes and sessions arrive: a small bound
# (64 MiB, ~200 snapshots of the shipped model) is reached during warm-up, so that RSS growth
# after it means a leak and not a cache filling (the default, 1/8 of RAM, takes hours here).
"$xlserve" serve --model models/xlstm-code-mtp --port 0 --metrics-port 0 --threads 2 --max-num-seqs 4 \
  --state-cache-host-mb "${SOAK_STATE_CACHE_MB:-64}" \
  >"$log/serve.out" 2>"$log/serve.err" &
server_pid=$!
gateway_pid=""
cleanup() {
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  true
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening" "$log/serve.out" && break; sleep 0.1; done
read -r grpc_port metrics_port < <(sed -nE 's/.*listening on [0-9.]+:([0-9]+) metrics ([0-9]+).*/\1 \2/p' "$log/serve.out")
"$xlserve" gateway --port 0 --upstream "127.0.0.1:$grpc_port" >"$log/gateway.out" 2>"$log/gateway.err" &
gateway_pid=$!
for _ in $(seq 100); do grep -q "listening" "$log/gateway.out" && break; sleep 0.1; done
gateway_port=$(sed -nE 's/.*listening on [0-9.]+:([0-9]+).*/\1/p' "$log/gateway.out")
echo "soak: server pid $server_pid (gRPC $grpc_port), gateway pid $gateway_pid (HTTP $gateway_port); logs in $log"
python3 scripts/soak.py --gateway-port "$gateway_port" --metrics-port "$metrics_port" \
  --server-pid "$server_pid" --gateway-pid "$gateway_pid" "$@" | tee "$log/soak.csv"
