#!/usr/bin/env bash
# Builds the native library (CPU preset; the CUDA preset too when nvcc is present and QWEN3VL_CUDA_BUILD=1) and the
# .NET solution.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$jobs"
if [ "${QWEN3VL_CUDA_BUILD:-0}" = 1 ]; then
  cmake --preset cuda ${QWEN3VL_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES="$QWEN3VL_CUDA_ARCHITECTURES"} >/dev/null
  cmake --build --preset cuda -j "$jobs"
fi
dotnet build Qwen3VL.sln -c Release -nologo -v quiet
