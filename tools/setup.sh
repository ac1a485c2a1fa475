#!/usr/bin/env bash
# One-time set-up of a fresh Debian 12 machine with the .NET 10 SDK: compilers, GoogleTest, clang-14 with the
# sanitizer/libFuzzer runtime, the CUDA 11.8 toolkit (Debian non-free, for compile checks), and the tokenizer used
# by the tests. Idempotent and non-interactive; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

packages=(cmake g++ make pkg-config libgtest-dev libgmock-dev libbenchmark-dev clang-14 libclang-rt-14-dev g++-mingw-w64-x86-64-posix nodejs npm)
if [ "${QWEN3VL_SKIP_CUDA_TOOLKIT:-0}" != 1 ]; then packages+=(nvidia-cuda-toolkit); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from another source than Debian: accept any working npm.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs/}"); missing=("${missing[@]/npm/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if printf '%s\n' "${missing[@]}" | grep -qx nvidia-cuda-toolkit; then
    # The CUDA toolkit is in Debian's non-free component: add contrib and non-free to the existing sources.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      $SUDO sed -i -E '/^Components:/{/non-free( |$)/!s/$/ contrib non-free/}' /etc/apt/sources.list.d/debian.sources
    fi
    if [ -f /etc/apt/sources.list ] && grep -qE '^deb .* main' /etc/apt/sources.list; then
      $SUDO sed -i -E '/^deb /{/non-free( |$)/!s/ main( |$)/ main contrib non-free\1/}' /etc/apt/sources.list
    fi
  fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

bash tools/fetch-tokenizer.sh
# The fixture checkpoints are complete Hugging Face folders once their tokenizer.json is in place.
for model in tests/fixtures/*/model; do
  [ -d "$model" ] && [ ! -f "$model/tokenizer.json" ] && cp .deps/tokenizer/tokenizer.json "$model/tokenizer.json"
done
echo "setup: done"
