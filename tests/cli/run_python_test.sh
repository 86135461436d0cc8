#!/usr/bin/env bash
# Runs a Python end-to-end test against the built xlserve binary: run_python_test.sh TEST.py XLSERVE
# The interpreter is the one scripts/setup.sh prepared (.venv, passed in as XLSERVE_PYTHON).
set -euo pipefail
exec "${XLSERVE_PYTHON:-python3}" "$1" "$2"
