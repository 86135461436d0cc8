#!/usr/bin/env bash
# Builds xlserve and serves the shipped default model: the gRPC server on 127.0.0.1:50051
# (metrics on :9090, settings in configs/server.json) and the OpenAI-compatible REST gateway
# on 127.0.0.1:8000. Extra arguments go to `xlserve serve` (e.g. --device cuda, or --model DIR
# for another checkpoint, whose chat template the gateway then uses). Ctrl-C or SIGTERM stops
# both; in-flight streams end cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
bazel build //:xlserve >&2
bin=bazel-bin/xlserve

# The gateway reads the chat template of the model being served (--model DIR, if given).
model=models/xlstm-code-mtp
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --model) model="${args[i + 1]:-$model}" ;;
    --model=*) model="${args[i]#--model=}" ;;
  esac
done

"$bin" serve --config configs/server.json "$@" &
server=$!
"$bin" gateway --upstream 127.0.0.1:50051 --port 8000 --model "$model" &
gateway=$!
trap 'kill -TERM "$server" "$gateway" 2>/dev/null; wait' INT TERM
wait -n "$server" "$gateway"
kill -TERM "$server" "$gateway" 2>/dev/null || true
wait
