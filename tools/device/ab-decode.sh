#!/usr/bin/env bash
# On the GPU machine, after gpu-run.sh has built build/cuda (carry .devcarry for the NativeAOT tools): decode speed with and
# without a measurement knob, interleaved (A B A B ...) so that drift on the machine hits both alike.
# Usage: tools/device/ab-decode.sh "ENV=VALUE" [rounds] [extra bench args]; the B runs get ENV=VALUE. Log in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
knob="$1"; rounds="${2:-3}"; shift; [ $# -gt 0 ] && shift
ckpt=/tmp/qwen3vl-2b-random
[ -f "$ckpt/config.json" ] || { mkdir -p "$ckpt" && build/cuda/tests/qwen3vl_make_random_checkpoint "$ckpt" > /dev/null; }
aot=$(devcarry_aot)
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so"
args=(--model "$ckpt" --device cuda --prompt-tokens 512 --new-tokens 128 --image-size 0 --repeat 2 "$@")
for i in $(seq "$rounds"); do
  for side in A B; do
    if [ "$side" = A ]; then
      echo "== A (default) round $i"; "$aot/qwen3vl" bench "${args[@]}" 2>&1 | grep -E "decode|first step"
    else
      echo "== B ($knob) round $i"; env "$knob" "$aot/qwen3vl" bench "${args[@]}" 2>&1 | grep -E "decode|first step"
    fi
  done
done | tee -a "$OUT/ab-decode.log"
