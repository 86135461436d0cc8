#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) and runs each one for a bounded
# time from its seed corpus (fuzz/corpus/<target>, never modified: new inputs go to a scratch
# directory). A crash, leak, timeout or out-of-memory fails the run; the reproducer is left in
# the artifact directory. Prints executions per target.
#
#   scripts/fuzz.sh                      # CI smoke: 30 s per target
#   scripts/fuzz.sh --time 1800          # the long run: 30 min per target ...
#   scripts/fuzz.sh --time 1800 --runs 1000000   # ... or 1e6 executions, whichever comes first
#   scripts/fuzz.sh --time 600 openai_body_fuzz chat_template_fuzz
#   FUZZ_JOBS=1 scripts/fuzz.sh          # one target at a time (default: one a core)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
runs=-1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(safetensors_fuzz model_config_fuzz tokenizer_json_fuzz tokenizer_text_fuzz generate_request_fuzz
           openai_body_fuzz chat_template_fuzz)
fi
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang)" >&2; exit 1; }
# One target a core at a time: libFuzzer runs on one thread, so each keeps its full time.
jobs="${FUZZ_JOBS:-$(nproc)}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: FUZZ_JOBS must be a positive count, got '$jobs'" >&2; exit 2; }

labels=()
for t in "${targets[@]}"; do labels+=("//fuzz:$t"); done
bazel build --config=fuzz "${labels[@]}"
bin="$(bazel info --config=fuzz bazel-bin 2>/dev/null)/fuzz"

work="${FUZZ_WORK_DIR:-$(mktemp -d /tmp/xlserve-fuzz.XXXXXX)}"
echo "fuzz: ${seconds} s per target$([ "$runs" -ge 0 ] && echo " or $runs executions"); new inputs and any reproducer under $work"
fuzz_one() {
  local t=$1 dict=() max_len=4096 rc=0
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  case "$t" in model_config_fuzz|tokenizer_json_fuzz|openai_body_fuzz) dict=(-dict=fuzz/json.dict) ;; esac
  case "$t" in tokenizer_json_fuzz) max_len=32768 ;; esac
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin/$t" "$work/$t/corpus" "fuzz/corpus/$t" "${dict[@]}" -max_total_time="$seconds" -runs="$runs" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
    >"$work/$t/log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t/rc"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait
failed=0
for t in "${targets[@]}"; do
  rc=$(cat "$work/$t/rc" 2>/dev/null || echo "?")
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$work/$t/log" | grep -oE "[0-9]+$" || echo "?")
  rate=$(grep -oE "stat::average_exec_per_sec: *[0-9]+" "$work/$t/log" | grep -oE "[0-9]+$" || echo "?")
  corpus=$(find "$work/$t/corpus" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    echo "fuzz: $t: ok, $execs executions ($rate/s), $corpus new inputs"
  else
    failed=1
    echo "fuzz: $t: FAILED (exit $rc) after $execs executions; log $work/$t/log" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$work/$t/log" | head -5 >&2 || true
  fi
done
exit "$failed"
