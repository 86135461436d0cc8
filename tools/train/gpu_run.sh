#!/usr/bin/env bash
# One command on the GPU machine: train (fresh, or resumed with --resume DIR) until a deadline,
# then export, verify against transformers and evaluate. What comes back (at most 8 files):
#   $OUT/ckpt/{ckpt-*.safetensors, trainer_state.json, tokenizer.json}  resumable checkpoint
#   $OUT/model.safetensors                                           the exported model (bf16)
#   $OUT/report.tar   config.json, eval.json, verify.json, train_log.txt, eval/verify logs
# Usage: tools/train/gpu_run.sh SECONDS [train.py flags...]   (SECONDS: whole command budget)
# Environment: RESERVE (seconds kept after training), EVAL_ARGS (extra evaluate.py flags).
set -uo pipefail
start=$(date +%s)
budget=$1
shift
out=${OUT:?OUT must name the folder that comes back}
reserve=${RESERVE:-100}  # export, transformers check, evaluation of two models, packing
read -r -a eval_args <<< "${EVAL_ARGS:-}"
export PYTHONUNBUFFERED=1
here=$(dirname "$0")
work=/tmp/xlstm_mtp_run
rm -rf "$work" && mkdir -p "$work"

python3 "$here/train.py" --out "$out/ckpt" --stop-at $((start + budget - reserve)) \
  --export-dir "$work/model" --export-untuned-dir "$work/untuned" "$@"
echo "train.py exit $? after $(( $(date +%s) - start )) s"
if [ -f "$work/model/model.safetensors" ]; then
  python3 "$here/verify_hf.py" --model "$work/model" --out "$work/model/verify.json" 2>&1 \
    | grep -v -e '^Loading weights' -e 'UNEXPECTED' | tee "$work/model/verify_log.txt"
  echo "verify after $(( $(date +%s) - start )) s"
  models=(--model "$work/model")
  [ -f "$work/untuned/model.safetensors" ] && models+=(--model "$work/untuned")
  python3 "$here/evaluate.py" "${models[@]}" --out "$work/model/eval.json" "${eval_args[@]}" 2>&1 \
    | tee "$work/model/eval_log.txt"
  echo "evaluate after $(( $(date +%s) - start )) s"
  cp "$work/model/model.safetensors" "$out/"
  mv "$out/ckpt/train_log.txt" "$work/model/"
  tar -C "$work/model" -cf "$out/report.tar" --exclude model.safetensors --exclude tokenizer.json .
fi
ls -la "$out" "$out/ckpt"
echo "total $(( $(date +%s) - start )) s"
