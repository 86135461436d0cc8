#!/usr/bin/env bash
# The one test command: installs what is missing, builds everything, runs every CPU test.
# GPU tests are tagged "gpu" and run on a CUDA machine instead (README: "GPU tests").
#
# The CPU-only configuration is built and tested with the CUDA toolkit hidden
# (scripts/without-cuda.sh), as on a machine that never had one; where the toolkit is
# installed, the CUDA configuration is then built too. Both need root for the mount namespace;
# without it the CPU run proves less, so CI (CI=true) refuses to go on.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

have_cuda=0
if [ -x /usr/local/cuda/bin/nvcc ]; then have_cuda=1; fi
hide=()
if [ "$have_cuda" -eq 1 ]; then
  if [ "$(id -u)" -eq 0 ] && unshare --mount true 2>/dev/null; then
    hide=(scripts/without-cuda.sh)
  elif [ "${CI:-}" = true ]; then
    echo "test: cannot hide the CUDA toolkit (needs root and unshare): the CPU-only build would prove nothing" >&2
    exit 1
  else
    echo "test: warning: CUDA toolkit visible to the CPU-only build (not root): it is not proven toolkit-free" >&2
  fi
fi

# Each phase's heading says when it starts, so that a slow run shows where its time went.
phase() { printf '== %s (at %d:%02d)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

log="$(mktemp /tmp/xlserve-test.XXXXXX)"
# A Bazel server started outside the namespace would keep seeing the toolkit: stop it first,
# and stop the one started inside before leaving it.
bazel shutdown
phase "CPU-only build and tests (--config=cpu${hide:+, CUDA toolkit hidden})"
set +e
"${hide[@]}" bash -c '
  set -o pipefail
  bazel build --config=cpu //... &&
    bazel test --config=cpu //... --test_tag_filters=-gpu --build_tests_only 2>&1 | tee "$1"
  rc=$?
  bazel info --config=cpu bazel-testlogs >"$1.testlogs" 2>/dev/null
  bazel shutdown
  exit $rc' _ "$log"
rc=$?
set -e
testlogs="$(cat "$log.testlogs" 2>/dev/null || true)"

if [ "$rc" -eq 0 ] && [ "$have_cuda" -eq 1 ]; then
  phase "CUDA build (--config=cuda: kernels, the CUDA backend, GPU tests compiled, not run)"
  bazel build --config=cuda //... || rc=$?
fi

# The layering test (tests/layering) checks direct edges; bazel query checks that no path leads
# from these packages to the CUDA backend (cli/ reaches it through runtime/ by design, which the
# second query confirms, so that the first cannot pass on an empty graph).
if [ "$rc" -eq 0 ]; then
  phase "dependency paths to kernels/"
  q() { bazel query --noimplicit_deps --noshow_progress "$1" 2>/dev/null; }
  reach="$(q 'deps(kind("cc_library|cc_binary", //engine/... + //server/... + //gateway/... + //tools/...))
              intersect (//kernels/... + //runtime/... + //third_party:cuda)')" || rc=1
  path="$(q 'somepath(//:xlserve, //kernels:cuda)' | tr '\n' ' ')" || rc=1
  if [ -n "$reach" ]; then
    echo "forbidden dependency paths reach: $reach" >&2
    rc=1
  elif [[ "$path" != *"//runtime:accelerators //kernels:cuda"* ]]; then
    echo "expected //:xlserve to reach kernels/ only through //runtime:accelerators, got: $path" >&2
    rc=1
  else
    echo "no path from engine/, server/, gateway/, tools/ to kernels/; //:xlserve -> ... -> $path"
  fi
fi

# ASan + UBSan (clang; .bazelrc) over every CPU test but the two longest end-to-end suites
# (5.6 and 1.8 min under ASan), which the plain run covers (README "Sanitizers and fuzzing");
# then each fuzz target for 30 s on the same build.
phase "bazel test --config=asan (ASan + UBSan)"
set +e
bazel test --config=asan --test_tag_filters=-gpu --build_tests_only -- //... -//tests/server:server_test \
  -//tests/deploy:deploy_test 2>&1 |
  tee -a /tmp/xlserve-test.$$.log
asan_rc=${PIPESTATUS[0]}
phase "fuzz smoke (30 s per target)"
scripts/fuzz.sh --time 30
fuzz_rc=$?
set -e

# Each Catch2 binary's own summary (of the targets this run tested: the test-log folder keeps
# those of targets since removed), then one closing line for the whole run.
phase "Catch2 summaries"
[ -d "$testlogs" ] && grep -oE "^//[^ ]+ +(\(cached\) +)?(PASSED|FAILED)" "$log" | awk '{print $1}' | sort | while read -r label; do
  target="${label#//}"
  tlog="$testlogs/${target/://}/test.log"
  summary="$( (grep -E "^(All tests passed|test cases:)" "$tlog" 2>/dev/null || true) | tail -1)"
  if [ -n "$summary" ]; then echo "${target/://}: $summary"; fi
done
passed=$(grep -cE "^//.* PASSED in" "$log" || true)
failed=$(grep -cE "^//.* (FAILED|TIMEOUT|NO STATUS|INCOMPLETE)" "$log" || true)
rm -f "$log" "$log.testlogs"
phase "done"
echo "${passed} passed, ${failed} failed"
if [ "$rc" -ne 0 ] || [ "$asan_rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  exit 1
fi
