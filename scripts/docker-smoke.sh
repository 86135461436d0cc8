#!/usr/bin/env bash
# Builds and runs xlserve's images on a real Docker engine, with no image registry (root):
#  1. starts dockerd (--bridge=none --iptables=false) unless one answers; stops it at the end;
#  2. makes a Debian 12 base image with debootstrap from Debian's mirror and `docker import`;
#  3. builds the CPU variant of docker/Dockerfile and the Prometheus image (Debian's package);
#  4. runs the server container on the host network (127.0.0.1), waits for its HEALTHCHECK
#     and completes requests over gRPC;
#  5. brings up docker/docker-compose.cpu.yml (two replicas, the gateway, Prometheus), checks
#     a completion through the gateway and both replicas up in Prometheus, and runs the bounded
#     loadtest through the gateway, which must have no errors; then takes the stack down.
#
#   scripts/docker-smoke.sh [--rebuild]   --rebuild: remake the base image and the images
#
# Images are kept for the next run (xlserve-base:bookworm, xlserve:cpu, xlserve-prometheus:local).
# Ports used on 127.0.0.1: 50051 and 9159 (step 4), 50151/50152, 9151/9152, 8010, 9190 (step 5).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=xlserve-base:bookworm
COMPOSE=(docker-compose -f docker/docker-compose.cpu.yml -p xlserve-smoke)
state="${XLSERVE_SMOKE_STATE:-/tmp/xlserve-docker-smoke}"
rebuild=0
if [ "${1:-}" = "--rebuild" ]; then rebuild=1; fi
mkdir -p "$state"
# Docker 20.10 (Debian's engine) has no BuildKit plugin here: the classic builder it is.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

say() { echo "docker-smoke: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then fail "needs root (dockerd, debootstrap)"; fi
need=()
for p in docker.io debootstrap docker-compose curl python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

for port in 50051 9159 50151 50152 9151 9152 8010 9190; do
  if ss -Hltn "sport = :$port" | grep -q .; then fail "port $port on this machine is taken"; fi
done

dockerd_pid=""
cleanup() {
  set +e
  "${COMPOSE[@]}" --profile loadtest down --remove-orphans >/dev/null 2>&1
  docker rm -f xlserve-smoke >/dev/null 2>&1
  if [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd it started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid"
    for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
  fi
}
trap cleanup EXIT

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local seconds="$1" what="$2"; shift 2
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then fail "$what (waited ${seconds}s)"; fi
    sleep 1
  done
}

# 1. The engine.
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $state/dockerd.log)"
  dockerd --bridge=none --iptables=false >"$state/dockerd.log" 2>&1 &
  dockerd_pid=$!
  wait_for 60 "dockerd did not answer" docker info
fi
say "engine: Docker $(docker version --format '{{.Server.Version}}')"

# 2. The base image, from Debian's mirror.
if [ "$rebuild" -eq 1 ] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  rootfs="$state/rootfs"
  rm -rf "$rootfs"
  say "debootstrap --variant=minbase bookworm (log: $state/debootstrap.log)"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$state/debootstrap.log" 2>&1 ||
    fail "debootstrap (see $state/debootstrap.log)"
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
say "base image $BASE_IMAGE: $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# 3. The images. Builds reach Debian's mirror through the host's network (no bridge here).
build() {  # build TAG LOG ARGS...
  local tag="$1" logfile="$state/$2"; shift 2
  if [ "$rebuild" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    say "image $tag present (--rebuild to remake it)"
    return
  fi
  say "building $tag (log: $logfile)"
  local start=$SECONDS
  nice -n 10 docker build --network host -t "$tag" "$@" >"$logfile" 2>&1 || fail "building $tag (see $logfile)"
  say "built $tag in $((SECONDS - start)) s"
}
build xlserve:cpu build-xlserve.log -f docker/Dockerfile --build-arg VARIANT=cpu \
  --build-arg BUILD_IMAGE="$BASE_IMAGE" --build-arg RUNTIME_IMAGE="$BASE_IMAGE" .
build xlserve-prometheus:local build-prometheus.log --build-arg BASE_IMAGE="$BASE_IMAGE" docker/prometheus
say "xlserve:cpu is $(docker image inspect --format '{{.Size}}' xlserve:cpu | awk '{printf "%.0f MB", $1/1e6}')"

# 4. One server container: its own HEALTHCHECK, then requests.
docker rm -f xlserve-smoke >/dev/null 2>&1 || true
docker run -d --name xlserve-smoke --network host xlserve:cpu serve --config /etc/xlserve/server.json \
  --model /models/xlstm-code-mtp --device cpu --threads 1 --host 127.0.0.1 --port 50051 --metrics-port 9159 >/dev/null
healthy() { [ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" = healthy ]; }
wait_for 120 "the server container's HEALTHCHECK did not pass" healthy xlserve-smoke
say "container healthy (HEALTHCHECK: xlserve health --addr 127.0.0.1:50051)"
out="$(docker run --rm --network host xlserve:cpu loadtest --grpc 127.0.0.1:50051 --concurrency 1 \
  --num-requests 2 --prompt-tokens 16 --max-tokens 8 --duration-s 60 2>/dev/null)" || fail "gRPC requests to the container"
grep -Eq "requests +2 sent, 2 ok, 0 failed" <<<"$out" || fail "gRPC requests to the container: $out"
say "gRPC: 2 of 2 requests answered by the container"
docker rm -f xlserve-smoke >/dev/null

# 5. The compose stack.
export XLSERVE_BASE_IMAGE="$BASE_IMAGE"
say "docker-compose up (two replicas, gateway, prometheus)"
"${COMPOSE[@]}" up -d --no-build >"$state/compose-up.log" 2>&1 || fail "docker-compose up (see $state/compose-up.log)"
wait_for 180 "the gateway did not become healthy" healthy xlserve-smoke_gateway_1
body='{"model": "xlstm-code-mtp", "prompt": "def fibonacci(n):", "max_tokens": 16}'
reply="$(curl -s 127.0.0.1:8010/v1/completions -H 'Content-Type: application/json' -d "$body")" ||
  fail "completion through the gateway: no answer"
tokens="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["usage"]["completion_tokens"])' <<<"$reply" 2>/dev/null)" ||
  fail "completion through the gateway: $reply"
[ "$tokens" -gt 0 ] || fail "the gateway's completion has no tokens: $reply"
say "REST: completion through the gateway ($tokens tokens)"
replicas_up() {
  curl -sf '127.0.0.1:9190/api/v1/query?query=up%7Bjob%3D%22xlserve%22%7D%3D%3D1' |
    python3 -c 'import json,sys; sys.exit(len(json.load(sys.stdin)["data"]["result"]) != 2)'
}
wait_for 60 "Prometheus does not see both replicas up" replicas_up
say "Prometheus: both replicas up"
lt="$("${COMPOSE[@]}" --profile loadtest run --rm loadtest 2>/dev/null)" || fail "loadtest through the gateway: $lt"
echo "$lt" >"$state/loadtest.txt"
grep -Eq "requests +40 sent, 40 ok, 0 failed" <<<"$lt" || fail "loadtest through the gateway had errors: $lt"
served="$(curl -sf '127.0.0.1:9190/api/v1/query?query=xlserve_requests_total' |
  python3 -c 'import json,sys; print(" ".join(r["value"][1] for r in json.load(sys.stdin)["data"]["result"]))')"
say "loadtest: 40 of 40 requests through the gateway, 0 errors; requests per replica (Prometheus, last scrape): $served"
grep -E "throughput|TTFT|E2E" <<<"$lt" | sed 's/^/docker-smoke:   /' >&2
"${COMPOSE[@]}" --profile loadtest down --remove-orphans >/dev/null 2>&1
say "PASSED"
