#!/usr/bin/env bash
# On the GPU machine (after tools/device/gpu-run.sh built the library; carry .devcarry for the NativeAOT tools): a copy of the tiny
# checkpoint whose final norm weight is NaN, so every logit is NaN, run with `qwen3vl run --device cuda` greedily (the
# decoding graph's argmax path), with top-k sampling (the GPU candidates path) and with the checkpoint's defaults. Each
# must end at once with exit code 1 and one line naming NaN logits (issue 12). Logs in $OUT/nan-check.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
aot=$(devcarry_aot)
export QWEN3VL_NATIVE_LIBRARY="${QWEN3VL_NATIVE_LIBRARY:-$PWD/build/cuda/lib/libqwen3vl_cuda.so}"
ckpt=$(mktemp -d)
cp tests/fixtures/tiny-tied/model/* "$ckpt"/
python3 - "$ckpt/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
t = h['model.language_model.norm.weight']
assert t['dtype'] == 'BF16'
s, e = (8 + n + o for o in t['data_offsets'])
b[s:e] = b'\xc0\x7f' * ((e - s) // 2)
open(p, 'wb').write(b)
PY
fails=0
{
  for opts in "--temperature 0" "--temperature 0.7 --top-k 20" ""; do
    echo "== qwen3vl run --device cuda $opts (NaN checkpoint)"
    # shellcheck disable=SC2086
    timeout 120 "$aot/qwen3vl" run --model "$ckpt" --device cuda --prompt "hi" --max-tokens 4 $opts > "$OUT/nan-stdout.txt" 2> "$OUT/nan-stderr.txt"
    rc=$?
    grep -v '^loading' "$OUT/nan-stderr.txt" | tail -n 2
    if [ "$rc" = 1 ] && grep -q "NaN" "$OUT/nan-stderr.txt" && ! grep -q "   at " "$OUT/nan-stderr.txt"; then echo "ok (exit 1)"; else echo "FAILED (exit $rc)"; fails=$((fails + 1)); fi
  done
  echo "nan-check failures: $fails"
} 2>&1 | tee "$OUT/nan-check.log"
rm -rf "$ckpt"
