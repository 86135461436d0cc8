#!/usr/bin/env bash
# Runs the CLI end-to-end tests with the built binary (Bazel passes its path).
set -euo pipefail
exec python3 tests/cli/cli_test.py "$1"
