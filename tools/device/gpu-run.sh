#!/usr/bin/env bash
# On the GPU machine, in one command: build the CUDA preset with that machine's nvcc, run CTest and compute-sanitizer
# (tools/device/native-cuda-tests.sh), then the C# side as NativeAOT binaries carried in .devcarry/aot
# (qwen3vl-parity and qwen3vl, published here with tools/device/publish-aot.sh): fixture parity on the CUDA backend,
# and `qwen3vl bench` on a random-weight checkpoint with the full Qwen3-VL-2B shapes written there. Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
bash tools/device/native-cuda-tests.sh > "$OUT/native.log" 2>&1
grep -E "tests passed|tests failed|ERROR SUMMARY|rc=" "$OUT/native.log"
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so" QWEN3VL_LOG=1
aot=$(devcarry_aot)
if [ -x "$aot/qwen3vl-parity" ]; then
  fixtures=(tests/fixtures/tiny-tied tests/fixtures/tiny-untied)
  {
    echo "== CUDA, fp32 math: the CPU tolerance (relative L2 1e-4)"
    "$aot/qwen3vl-parity" --device cuda --fp32-math "${fixtures[@]}"
    # Tensor cores take activations rounded to bf16 (unit roundoff u = 2^-9 ~ 2e-3) in every prefill GEMM; a few
    # layers of such rounding move the logits by a few u in relative L2, so the documented bound is 1e-2 (~5u).
    echo "== CUDA, default math (bf16 tensor cores): documented bf16 tolerance (relative L2 1e-2)"
    "$aot/qwen3vl-parity" --device cuda --tolerance 1e-2 "${fixtures[@]}"
  } 2>&1 | tee "$OUT/parity-cuda.log"
fi
if [ -x "$aot/qwen3vl" ] && [ "${QWEN3VL_GPU_BENCH:-1}" = 1 ]; then
  ckpt=/tmp/qwen3vl-2b-random; mkdir -p "$ckpt"
  build/cuda/tests/qwen3vl_make_random_checkpoint "$ckpt" > /dev/null
  {
    for args in "--prompt-tokens 512 --new-tokens 128 --image-size 448" "--prompt-tokens 2048 --new-tokens 0 --image-size 1024"; do
      echo "== qwen3vl bench --device cuda $args"
      # shellcheck disable=SC2086
      "$aot/qwen3vl" bench --model "$ckpt" --device cuda $args --repeat 2 2>&1
    done
    # Before/after for the decode graph: the same step as eager ops (one P/Invoke and launch per op).
    echo "== QWEN3VL_NO_GRAPHS=1 qwen3vl bench --device cuda --prompt-tokens 512 --new-tokens 128 --image-size 0"
    QWEN3VL_NO_GRAPHS=1 "$aot/qwen3vl" bench --model "$ckpt" --device cuda --prompt-tokens 512 --new-tokens 128 --image-size 0 --repeat 2 2>&1
  } | tee "$OUT/bench-cuda.log"
fi
if [ -x build/cuda/tests/qwen3vl_bench_cuda ] && [ "${QWEN3VL_GPU_BENCH:-1}" = 1 ]; then
  build/cuda/tests/qwen3vl_bench_cuda 50 2>&1 | tee "$OUT/bench-ops.log"
fi
