#!/usr/bin/env bash
# On the GPU machine: the full-size parity check of the CUDA engine. Builds the CUDA library there, makes the
# full-2b perf fixture with transformers (random weights with the real Qwen3-VL-2B shapes, a ~1024-token prompt with two
# images; logits in fp32 and in bf16 at the last 8 positions), then runs qwen3vl-parity on it: our logits error against
# transformers-fp32 must be no worse than transformers-bf16's, with the CUDA default (tensor cores) and fp32 math.
# Carry: the tokenizer (.deps/tokenizer, or .devcarry/tokenizer.json.gz: smaller, for the 64 MiB tree limit) and the
# NativeAOT qwen3vl-parity (.devcarry/parity, or inside .devcarry/aot.tar.gz; both from tools/device/publish-aot.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
tokenizer=$(devcarry_tokenizer)
parity=.devcarry/parity/qwen3vl-parity
[ -x "$parity" ] || parity="$(devcarry_aot)/qwen3vl-parity"
ensure_cuda_library "$OUT/build.log" || exit 1
PYTHONUNBUFFERED=1 python3 tools/reference/make_fixtures.py --tokenizer "$tokenizer" --out /tmp/full2b \
  --preset full-2b --cases perf --device cuda --greedy-steps 8 --force > "$OUT/full2b-fixture.log" 2>&1 ||
  { tail -40 "$OUT/full2b-fixture.log"; exit 1; }
grep -E "WARNING|FATAL|logit std|perf_1k" "$OUT/full2b-fixture.log" | tail -8
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so"
{
  echo "== CUDA default math (bf16 tensor cores)"; "$parity" --device cuda /tmp/full2b
  echo "== CUDA fp32 math"; "$parity" --device cuda --fp32-math /tmp/full2b
} 2>&1 | tee "$OUT/full2b-parity.log"
