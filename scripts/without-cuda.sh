#!/usr/bin/env bash
# Runs a command as on a machine without the CUDA toolkit, to prove that the CPU-only build
# needs none of it: in a private mount namespace (root; nothing outside changes) /usr/local is
# replaced by a copy of itself without the toolkit, its headers, its libraries and nvcc.
#
#   scripts/without-cuda.sh COMMAND [ARGS...]
#
# A Bazel server started outside keeps seeing the toolkit, so callers shut it down before and
# after (scripts/test.sh does). The script refuses to run COMMAND unless the toolkit is
# really out of sight: no nvcc on PATH, no cuda_runtime_api.h for g++, no libcudart for ld.
set -euo pipefail

if [ -z "${XLSERVE_USR_LOCAL:-}" ]; then
  XLSERVE_USR_LOCAL="$(mktemp -d /tmp/xlserve-usr-local.XXXXXX)"
  export XLSERVE_USR_LOCAL
  rc=0
  unshare --mount --propagation private "$0" "$@" || rc=$?
  rmdir "$XLSERVE_USR_LOCAL"
  exit "$rc"
fi

# The original /usr/local stays reachable here, inside this namespace only, while a tmpfs
# takes its place and gets back everything that is not CUDA.
orig="$XLSERVE_USR_LOCAL"
mount --bind /usr/local "$orig"
mount -t tmpfs -o mode=0755 xlserve-without-cuda /usr/local

is_cuda() {  # is_cuda NAME: the toolkit's own entries, and where this image copied it
  case "$1" in
    cuda | cuda-* | include | lib64 | nvvm | targets | libcud* | libcublas* | libnv* | nvcc | ptxas | nvlink | \
      fatbinary | cudafe++ | bin2c | __nvcc_device_query) return 0 ;;
  esac
  return 1
}

restore() {  # restore SRC DST: SRC's entries under DST, one bind mount or symlink each
  local src="$1" dst="$2" entry name
  for entry in "$src"/* "$src"/.[!.]*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    name="${entry##*/}"
    if is_cuda "$name"; then continue; fi
    if [ -L "$entry" ]; then
      cp -P "$entry" "$dst/$name"
    elif [ -d "$entry" ] && { [ "$name" = lib ] || [ "$name" = bin ]; }; then
      mkdir -p "$dst/$name"
      restore "$entry" "$dst/$name"  # mixed folders: keep their non-CUDA entries one by one
    elif [ -d "$entry" ]; then
      mkdir -p "$dst/$name"
      mount --bind "$entry" "$dst/$name"
    else
      touch "$dst/$name"
      mount --bind "$entry" "$dst/$name"
    fi
  done
}
restore "$orig" /usr/local
# Debian has an empty /usr/local/include. gcc lists its include folders only where they exist,
# and Bazel records that list when it first configures the C++ toolchain, here or outside:
# keep the folder so that both see the same list.
mkdir -p /usr/local/include

# Each check below fails if any trace of the toolkit is still visible to a build.
if command -v nvcc >/dev/null 2>&1; then
  echo "without-cuda: nvcc still on PATH: $(command -v nvcc)" >&2
  exit 1
fi
if echo '#include <cuda_runtime_api.h>' | g++ -x c++ -fsyntax-only - >/dev/null 2>&1; then
  echo "without-cuda: g++ still finds cuda_runtime_api.h" >&2
  exit 1
fi
if printf 'int main(){}' | g++ -x c++ - -o /dev/null -lcudart >/dev/null 2>&1; then
  echo "without-cuda: the linker still finds libcudart" >&2
  exit 1
fi
if [ -e /usr/local/cuda ]; then
  echo "without-cuda: /usr/local/cuda still exists" >&2
  exit 1
fi
echo "without-cuda: CUDA toolkit hidden (no nvcc, no CUDA headers or libraries, no /usr/local/cuda)" >&2
"$@"
