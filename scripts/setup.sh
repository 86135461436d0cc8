#!/usr/bin/env bash
# Installs everything xlserve's build and CPU tests need on Debian 12. Idempotent: packages
# already present are left alone, so a second run costs a second or two.
set -euo pipefail

APT_PACKAGES=(
  bazel-bootstrap bazel-rules-java
  g++ python3 python3-pip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev catch2 libcpp-httplib-dev
  curl docker-compose prometheus librsvg2-bin
  clang lld libclang-rt-14-dev
)
PIP_PACKAGES=(
  "tokenizers>=0.19"
  "grpcio>=1.51"
  "grpcio-tools>=1.51"
  "grpcio-health-checking>=1.51"
  "grpcio-reflection>=1.51"
  "openai>=1.30"
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: apt packages present"
fi

# Tests run under Bazel with a strict PATH, so they see the system interpreter.
PYTHON="${PYTHON:-/usr/bin/python3}"
pip_missing=()
for spec in "${PIP_PACKAGES[@]}"; do
  name="${spec%%[<>=]*}"
  if ! "$PYTHON" -m pip show -q "$name" >/dev/null 2>&1; then
    pip_missing+=("$spec")
  fi
done
if [ "${#pip_missing[@]}" -gt 0 ]; then
  echo "setup: installing pip packages: ${pip_missing[*]}"
  "$PYTHON" -m pip install -q --disable-pip-version-check "${pip_missing[@]}" 2>/dev/null ||
    "$PYTHON" -m pip install -q --disable-pip-version-check --break-system-packages "${pip_missing[@]}"
else
  echo "setup: pip packages present"
fi

if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: note: no CUDA toolkit at /usr/local/cuda; CPU targets build, CUDA targets do not" >&2
fi
