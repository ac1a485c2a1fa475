#!/usr/bin/env bash
# On the GPU machine: build the CUDA preset with that machine's nvcc and run CTest there, then the CUDA suite under
# compute-sanitizer memcheck. GoogleTest is built from source when the machine has none (carry .devcarry/googletest,
# a copy of Debian's /usr/src/googletest). Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
gtest_args=()
[ -d .devcarry/googletest ] && gtest_args=(-DQWEN3VL_GTEST_SOURCE_DIR="$PWD/.devcarry/googletest")
# QWEN3VL_CUDA_ARCHS=90 builds only the machine's architecture (a quicker turn-around than the toolkit's full list).
[ -n "${QWEN3VL_CUDA_ARCHS:-}" ] && gtest_args+=(-DCMAKE_CUDA_ARCHITECTURES="$QWEN3VL_CUDA_ARCHS")
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -n 2
  cmake --preset cuda -G Ninja "${gtest_args[@]}" && cmake --build --preset cuda -j "$(nproc)" &&
    ctest --preset cuda -j 8 --output-on-failure
  echo "ctest rc=$?"
  build/cuda/tests/qwen3vl_capi_tests --gtest_brief=1 2>&1 | tail -n 3
  if [ "${QWEN3VL_SANITIZER:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    # The CUDA backend and graph suite, then the CUDA cases of each op-family suite (Cuda<Family>Ops).
    compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build/cuda/tests/qwen3vl_cuda_tests --gtest_brief=1
    echo "compute-sanitizer memcheck rc=$?"
    for t in build/cuda/tests/qwen3vl_op_*_tests; do
      compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 "$t" --gtest_filter='Cuda*' --gtest_brief=1
      echo "compute-sanitizer memcheck $(basename "$t") rc=$?"
    done
  fi
} 2>&1 | tee "$OUT/native-cuda-tests.log"
