#!/usr/bin/env bash
# Builds xlserve and serves the shipped default model over gRPC on 127.0.0.1:50051
# (metrics on :9090) with configs/server.json. Extra arguments go to `xlserve serve`,
# e.g. --port 6000 --device cuda. Stop with Ctrl-C (or SIGTERM): in-flight streams end cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
bazel build //:xlserve >&2
exec bazel-bin/xlserve serve --config configs/server.json "$@"
