#!/usr/bin/env bash
# The GPU measurements of add_heads.py (docs/adding-heads.md), in one command:
#  1. the shipped model's heads removed and re-added (frozen trunk, same head type), trained
#     for SHIPPED_SECONDS on this machine's Python code without the held-out packages;
#  2. `xlserve bench --speculative` (k = 3, held-out networkx) on the shipped and the re-added
#     model, and evaluate.py's exact greedy simulation (per-draft acceptance) on both;
#  3. a random-weight xLSTM-7b written by transformers, 4 mlstm_block heads trained for
#     B7_SECONDS: tokens/s and peak memory; then its export decodes in xlserve with speculation.
# What comes back: $OUT/results.tar (logs, bench and eval JSON, trainer states) and the re-added
# heads ($OUT/model-mtp-heads.safetensors; beside the shipped trunk they make the model again).
# Usage, from the repository root: tools/train/gpu_add_heads.sh XLSERVE_BINARY
# Environment: DEVICE (cuda), SHIPPED_SECONDS (90), B7_SECONDS (45; 0: no 7B run), B7_MODEL (an existing
# checkpoint instead of a new random 7B), HELDOUT (default: site-packages/networkx), and the
# batch shapes SHIPPED_SEQ/SHIPPED_BATCH (512/128), B7_SEQ/B7_BATCH (2048/16).
set -uo pipefail
start=$(date +%s)
xl=$1
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:?OUT must name the folder that comes back}
device=${DEVICE:-cuda}
work=/tmp/add_heads_gpu
rm -rf "$work" && mkdir -p "$work"
export PYTHONUNBUFFERED=1
# Packed after every stage, so that a command cut off at its limit still brings back what it did.
pack() {
  for run in readd_run x7b_run; do cp "$work/$run/trainer_state.json" "$work/${run}_state.json" 2>/dev/null; done
  cp "$work/readded/add_heads.json" "$work/readded_add_heads.json" 2>/dev/null
  tar -C "$work" -cf "$out/results.tar" --exclude readded --exclude x7b --exclude x7b_heads --exclude readd_run \
    --exclude x7b_run .
}
stamp() { echo "== $1 after $(( $(date +%s) - start )) s" | tee -a "$work/timeline.txt"; pack; }
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
heldout=${HELDOUT:-$site/networkx}
held_out_packages='networkx,seaborn,statsmodels,xarray,__pycache__'
shipped=models/xlstm-code-mtp
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'; } >"$work/machine.txt" 2>&1

stamp "re-adding the shipped model's heads"
timeout $(( ${SHIPPED_SECONDS:-90} + 120 )) python3 "$here/add_heads.py" --model "$shipped" --replace-heads \
  --num-heads 4 --head-type mlstm_block --train "$stdlib" "$site" --include '*.py' --exclude "$held_out_packages" \
  --eval "$heldout" --eval-windows "${SHIPPED_EVAL_WINDOWS:-64}" --seq "${SHIPPED_SEQ:-512}" --batch "${SHIPPED_BATCH:-128}" --lr 2e-3 \
  --min-lr-ratio 0.05 --warmup 100 --max-seconds "${SHIPPED_SECONDS:-90}" --log-every 50 --eval-every 500 \
  --save-every 1000000 --device "$device" --out "$work/readd_run" --export "$work/readded" \
  >"$work/readd_log.txt" 2>&1
echo "add_heads exit $?" >>"$work/readd_log.txt"
tail -4 "$work/readd_log.txt"
cp "$work/readded/model-mtp-heads.safetensors" "$out/" 2>/dev/null

stamp "bench"
for m in shipped readded; do
  dir=$shipped
  [ "$m" = readded ] && dir=$work/readded
  timeout 150 "$xl" bench --speculative --model "$dir" --prompts-from "$heldout" --batch-sizes "${BENCH_BATCHES:-1,8,32}" \
    --device "$device" --json "$work/bench_$m.json" >"$work/bench_$m.txt" 2>"$work/bench_${m}_err.txt"
  echo "bench $m exit $?" >>"$work/bench_$m.txt"
  cat "$work/bench_$m.txt"
done

stamp "evaluate.py (greedy simulation, per-draft acceptance)"
timeout 120 python3 "$here/evaluate.py" --model "$shipped" --model "$work/readded" --out "$work/eval.json" \
  --prompts 64 --acc-windows 64 --batch 64 >"$work/eval_log.txt" 2>&1
echo "evaluate exit $?" >>"$work/eval_log.txt"
cat "$work/eval_log.txt"

if [ "${B7_SECONDS:-45}" -eq 0 ]; then stamp "done (B7_SECONDS=0: no 7B run)"; exit 0; fi
stamp "xLSTM-7b"
b7=${B7_MODEL:-$work/x7b}
if [ -z "${B7_MODEL:-}" ]; then
  timeout 120 python3 -c "import sys; sys.path.insert(0, 'bench'); import serve_7b; serve_7b.write_checkpoint('$b7')" \
    >"$work/x7b_make.txt" 2>&1
  cat "$work/x7b_make.txt"
fi
stamp "add_heads on the 7B"
timeout $(( ${B7_SECONDS:-45} + 150 )) python3 "$here/add_heads.py" --model "$b7" \
  --tokenizer "$shipped/tokenizer.json" --eos-id 0 --num-heads 4 --head-type mlstm_block \
  --train "$site" --include '*.py' --exclude "$held_out_packages" --shuffle-buffer 256 \
  --seq "${B7_SEQ:-2048}" --batch "${B7_BATCH:-16}" --max-seconds "${B7_SECONDS:-45}" --warmup 10 --log-every 5 \
  --save-every 1000000 --device "$device" --out "$work/x7b_run" --export "$work/x7b_heads" --link-trunk \
  >"$work/x7b_log.txt" 2>&1
echo "add_heads exit $?" >>"$work/x7b_log.txt"
tail -6 "$work/x7b_log.txt"
du -sh "$work/x7b_run" "$work/x7b_heads" >>"$work/x7b_log.txt" 2>&1
stamp "the 7B export in xlserve generate"
for s in off on; do
  timeout 60 "$xl" generate --model "$work/x7b_heads" --prompt-ids 1,2,3,4,5,6,7,8 --max-tokens 32 \
    --speculation $s --device "$device" --print-json >"$work/x7b_generate_$s.json" 2>"$work/x7b_generate_${s}_err.txt"
  echo "generate $s exit $?" >>"$work/x7b_log.txt"
done
stamp "done"

ls -la "$out"
