#!/usr/bin/env bash
# Runs a Python end-to-end test against the built xlserve binary: run_python_test.sh TEST.py XLSERVE
set -euo pipefail
exec python3 "$1" "$2"
