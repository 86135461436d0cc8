#!/usr/bin/env bash
# run_pytest.sh XLSERVE TEST.py...: pytest over the given files with the interpreter that
# scripts/setup.sh prepared (XLSERVE_PYTHON), the binary passed in as XLSERVE.
set -euo pipefail
export XLSERVE="$PWD/$1"
shift
# The runfiles tree is read-only for pytest's cache; temporary files go to Bazel's TEST_TMPDIR.
exec "${XLSERVE_PYTHON:-python3}" -m pytest -q -p no:cacheprovider --basetemp="${TEST_TMPDIR:-/tmp}/pytest" "$@"
