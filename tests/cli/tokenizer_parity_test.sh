#!/usr/bin/env bash
# Runs the tokenizer parity test with the built binary (Bazel passes its path).
set -euo pipefail
exec python3 tests/cli/tokenizer_parity_test.py "$1"
