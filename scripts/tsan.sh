#!/usr/bin/env bash
# ThreadSanitizer run of the serving path (the HTTP listener, the gateway, the gRPC service and
# the scheduler, driven by the server's end-to-end tests) and of the CPU backend's
# tensor-parallel ranks. gRPC's own false positives are suppressed by scripts/tsan.supp, which
# needs an absolute path, hence this script.
#   scripts/tsan.sh                 # the default targets
#   scripts/tsan.sh //net:all       # others
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(//net:all //server:all //tests/gateway:all //tests/server:all //engine/parallel:all
           //tests/engine:tensor_parallel_test)
fi
bazel test --config=tsan \
  --test_env=TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$PWD/scripts/tsan.supp" \
  "${targets[@]}"
