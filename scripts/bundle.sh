#!/usr/bin/env bash
# Packs xlserve binaries and the Debian shared libraries they load into dist/, so they run on
# a CUDA machine that has no Bazel (README: "GPU machines"). CUDA libraries are not copied:
# the target machine's own CUDA runtime and cuBLAS are used.
#
# usage: scripts/bundle.sh [--archive] [bazel targets...]   (default: //:xlserve)
#   GPU tests: scripts/bundle.sh //:xlserve //tests/gpu:cuda_backend_test \
#     //tests/gpu:cuda_speculation_test //tests/gpu:cuda_sampling_test
#   --archive: also pack dist/ into dist.tar.gz (each binary carries its own device code, so
#     four of them with their libraries are ~70 MB; compressed ~25 MB). Unpack on the GPU
#     machine with: tar xzf dist.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."

archive=0
if [ "${1:-}" = "--archive" ]; then
  archive=1
  shift
fi
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(//:xlserve)

bazel build --config=portable "${targets[@]}" >&2
rm -rf dist dist.tar.gz
mkdir -p dist/bin dist/lib

for t in "${targets[@]}"; do
  pkg="${t%%:*}"; pkg="${pkg#//}"; name="${t##*:}"
  src="bazel-bin/${pkg:+$pkg/}$name"
  cp -L "$src" dist/bin/
done

# Libraries every Linux has (and must come from the host) stay behind.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libgcc_s\.|libstdc\+\+\.|libcuda|libcudart|libcublas)'
for bin in dist/bin/*; do
  ldd "$bin" | awk '/=> \//{print $1, $3}' | while read -r name path; do
    if ! [[ "$name" =~ $skip ]]; then cp -Ln "$path" dist/lib/ 2>/dev/null || true; fi
  done
done
du -sh dist | awk '{print "bundle: " $1 " in dist/ (bin: " ENVIRON["PWD"] "/dist/bin)"}'
echo "run there with: LD_LIBRARY_PATH=dist/lib dist/bin/xlserve --help"
if [ "$archive" -eq 1 ]; then
  tar czf dist.tar.gz dist
  du -h dist.tar.gz | awk '{print "archive: " $1 " in dist.tar.gz (unpack there with: tar xzf dist.tar.gz)"}'
fi
