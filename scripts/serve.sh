#!/usr/bin/env bash
# Builds xlserve and runs it on the shipped default model. Extra arguments go to
# `xlserve generate` (e.g. --prompt "def main():" --max-new-tokens 64).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${XLSERVE_MODEL:-models/xlstm-code-mtp}"
scripts/setup.sh >/dev/null
bazel build //:xlserve >&2

if [ ! -f "$MODEL/config.json" ]; then
  echo "serve: no model at $MODEL (set XLSERVE_MODEL to a model directory)" >&2
  exit 1
fi
if [ "$#" -eq 0 ]; then
  # Ends mid-line: a prompt ending in a bare newline splits the indentation token the model
  # would have seen in training.
  set -- --prompt "class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self." --max-new-tokens 64
fi
exec bazel-bin/xlserve generate --model "$MODEL" "$@"
