#!/usr/bin/env bash
# Downloads what bench/nxai_peer.py imports beyond torch, triton, numpy, PyYAML and packaging
# (which a GPU machine with torch and transformers already has) into one folder, to be carried
# to a GPU machine that has no network: NX-AI's xlstm and mlstm_kernels, and einops, which
# mlstm_kernels imports. Dependencies are not followed (--no-deps): their declared ones would
# pull in torch, matplotlib and ninja, none of which the benchmark imports or may replace.
#
# usage: bench/fetch_nxai_wheels.sh [DIR]   (default .whl/, which git ignores; a relative DIR
#                                            is taken from the repository root)
# Then, on the GPU machine (carry DIR with the tree):
#   pip install --no-index --no-deps DIR/*.whl && python3 bench/nxai_peer.py --json nxai.json
# Running it again downloads nothing that is already there.
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
cd "$(dirname "$0")/.."
dir="${1:-.whl}"

# Pinned: bench/nxai_peer.py was written against the xlstm_large and mlstm_kernels API of
# these versions (config field and kernel names).
wheels=(xlstm==2.0.6 mlstm_kernels==2.0.6 einops==0.8.2)

pip="$(command -v pip3 || command -v pip || true)"
[ -n "$pip" ] || { echo "fetch_nxai_wheels: no pip found" >&2; exit 1; }
mkdir -p "$dir"
# Pure-Python wheels only, so that they install on the GPU machine's Python whatever it is.
"$pip" download --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$dir" "${wheels[@]}"
ls -1 "$dir"/*.whl
