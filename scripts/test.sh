#!/usr/bin/env bash
# The one test command: installs what is missing, builds everything, runs every CPU test.
# GPU tests are tagged "gpu" and run on a CUDA machine instead (README: "GPU tests").
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== bazel build //..."
bazel build //...

echo "== bazel test (CPU tests)"
set +e
bazel test //... --test_tag_filters=-gpu --build_tests_only 2>&1 | tee /tmp/xlserve-test.$$.log
rc=${PIPESTATUS[0]}
set -e

# ASan + UBSan (clang; .bazelrc) over every CPU test but the four longest end-to-end suites,
# which the full run covers (README "Sanitizers and fuzzing"); then each fuzz target for 30 s
# on the same build.
echo "== bazel test --config=asan (ASan + UBSan)"
set +e
bazel test --config=asan --test_tag_filters=-gpu --build_tests_only -- //... -//tests/server:server_test \
  -//tests/cli:tokenizer_parity_test -//tests/loadtest:loadtest_test -//tests/deploy:deploy_test 2>&1 |
  tee -a /tmp/xlserve-test.$$.log
asan_rc=${PIPESTATUS[0]}
echo "== fuzz smoke (30 s per target)"
scripts/fuzz.sh --time 30
fuzz_rc=$?
set -e

# Each Catch2 binary's own summary, then one closing line for the whole run.
testlogs="$(bazel info bazel-testlogs 2>/dev/null)"
echo "== Catch2 summaries"
find "$testlogs" -name test.log | sort | while read -r log; do
  target="${log#"$testlogs"/}"
  summary="$(grep -E "^(All tests passed|test cases:)" "$log" | tail -1 || true)"
  if [ -n "$summary" ]; then echo "${target%/test.log}: $summary"; fi
done
passed=$(grep -cE "^//.* PASSED in" /tmp/xlserve-test.$$.log || true)
failed=$(grep -cE "^//.* (FAILED|TIMEOUT|NO STATUS|INCOMPLETE)" /tmp/xlserve-test.$$.log || true)
rm -f /tmp/xlserve-test.$$.log
echo "${passed} passed, ${failed} failed"
if [ "$rc" -ne 0 ] || [ "$asan_rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  exit 1
fi
