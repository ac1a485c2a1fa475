#!/usr/bin/env bash
# On the GPU machine, issue 14 (quantized weights) in one command, after tools/device/gpu-run.sh has built the CUDA
# preset and run CTest (QWEN3VL_GPU_BENCH=0 skips its bf16 benchmarks): the CUDA q8 cases again by name, fixture
# parity with --weights q8 on CUDA and CPU, an FP8 fixture made by transformers (tiny-tied rewritten in fine-grained FP8,
# reference from FineGrainedFP8Config(dequantize=True) in fp32) checked on CUDA and CPU, `qwen3vl bench` with stored
# and q8 weights in one run on the full 2B shapes, and the op benchmark's q8 rows. Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so"
aot=$(devcarry_aot)
tokenizer=$(devcarry_tokenizer)
stage="${1:-all}"  # tests | bench | all (two calls stay within the device's per-command limit)
if [ "$stage" != bench ]; then
{
  for t in build/cuda/tests/qwen3vl_op_linear_tests build/cuda/tests/qwen3vl_op_embedding_tests; do
    "$t" --gtest_filter='*Q8*:*q8*' --gtest_brief=1 2>&1 | tail -n 4
  done
  build/cuda/tests/qwen3vl_capi_tests --gtest_filter='CApiQ8*' --gtest_brief=1 2>&1 | tail -n 3
  if command -v compute-sanitizer >/dev/null; then
    compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build/cuda/tests/qwen3vl_op_linear_tests \
      --gtest_filter='Cuda*Q8*' --gtest_brief=1 2>&1 | tail -n 3
    echo "compute-sanitizer q8 rc=$?"
  fi
} 2>&1 | tee "$OUT/q8-tests.log"
fixtures=(tests/fixtures/tiny-tied tests/fixtures/tiny-untied)
{
  echo "== CUDA --weights q8"; "$aot/qwen3vl-parity" --device cuda --weights q8 "${fixtures[@]}"
  echo "== CPU --weights q8"; "$aot/qwen3vl-parity" --device cpu --weights q8 "${fixtures[@]}"
} 2>&1 | tee "$OUT/parity-q8.log" | grep -E "^(ok|FAIL|==|[0-9]+ passed)"
if PYTHONUNBUFFERED=1 python3 tools/reference/make_fixtures.py --tokenizer "$tokenizer" --out /tmp/tiny-fp8 \
    --preset tiny-tied --fp8 --device cuda --force > "$OUT/fp8-fixture.log" 2>&1; then
  grep -E "FP8|WARNING|loaded" "$OUT/fp8-fixture.log" | head -8
  {
    echo "== FP8 fixture, CUDA, weights as stored (q8 decoder, bf16 vision)"; "$aot/qwen3vl-parity" --device cuda --weights q8 /tmp/tiny-fp8
    echo "== FP8 fixture, CUDA fp32 math, --weights bf16 (the FP8 blocks dequantized; bf16 rounding only)"
    "$aot/qwen3vl-parity" --device cuda --fp32-math --weights bf16 --tolerance 1e-2 /tmp/tiny-fp8
    echo "== FP8 fixture, CPU, --weights q8"; "$aot/qwen3vl-parity" --device cpu --weights q8 /tmp/tiny-fp8
  } 2>&1 | tee "$OUT/parity-fp8.log" | grep -E "^(ok|FAIL|==|[0-9]+ passed)"
  mkdir -p "$OUT/tiny-fp8" && cp /tmp/tiny-fp8/cases.json /tmp/tiny-fp8/model/config.json "$OUT/tiny-fp8/"
else
  tail -30 "$OUT/fp8-fixture.log"
fi
fi
[ "$stage" = tests ] && exit 0
ckpt=/tmp/qwen3vl-2b-random
[ -f "$ckpt/config.json" ] || { mkdir -p "$ckpt" && build/cuda/tests/qwen3vl_make_random_checkpoint "$ckpt" > /dev/null; }
{
  for w in stored q8; do
    echo "== qwen3vl bench --device cuda --weights $w --prompt-tokens 512 --new-tokens 128 --image-size 0"
    "$aot/qwen3vl" bench --model "$ckpt" --device cuda --weights "$w" --prompt-tokens 512 --new-tokens 128 --image-size 0 --repeat 3 2>&1
  done
  echo "== qwen3vl quantize (2B shapes) then bench of the written folder"
  rm -rf /tmp/q8-2b; /usr/bin/time -v "$aot/qwen3vl" quantize --model "$ckpt" --weights q8 --out /tmp/q8-2b 2>&1 |
    grep -E "wrote|Elapsed|Maximum resident"
  "$aot/qwen3vl" bench --model /tmp/q8-2b --device cuda --prompt-tokens 512 --new-tokens 128 --image-size 0 --repeat 2 2>&1
} 2>&1 | tee "$OUT/bench-q8.log"
build/cuda/tests/qwen3vl_bench_cuda 30 linear 2>&1 | tee "$OUT/bench-ops-linear.log" | grep -iE "q8|ceiling|copy" | head -40
