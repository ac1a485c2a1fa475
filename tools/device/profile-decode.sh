#!/usr/bin/env bash
# On the GPU machine, after gpu-run.sh built the library and wrote the random 2B checkpoint: the duration of every
# kernel of a few greedy decoding steps (Nsight Compute, clocks left alone), summed per kernel name per step, to see
# where one step's time goes. Writes $OUT/decode-kernels.csv and prints the table. QWEN3VL_PROFILE_PROMPT sets the
# prompt length (default 64; the decode bench uses 512). One repeat; the last steps are the bench's back-to-back
# replays of the step graph.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
aot=$(devcarry_aot)
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so"
steps=4
ncu --clock-control none --metrics gpu__time_duration.sum --csv \
  "$aot/qwen3vl" bench --model /tmp/qwen3vl-2b-random --device cuda --prompt-tokens "${QWEN3VL_PROFILE_PROMPT:-64}" \
  --new-tokens $((steps + 1)) --image-size 0 --repeat 1 > "$OUT/decode-kernels.csv" 2> "$OUT/ncu.err"
python3 - "$OUT/decode-kernels.csv" "$steps" <<'PY'
import csv, sys, collections, io
path, steps = sys.argv[1], int(sys.argv[2])
lines = open(path).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
# The last `steps` * (kernels per step) launches are the steady decoding steps: find the step length from the
# embedding kernel that starts each step.
names = [r["Kernel Name"] for r in rows]
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6, "ns": 1e-3, "us": 1.0, "ms": 1e3}
dur = [float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1.0) for r in rows]  # -> us
starts = [i for i, n in enumerate(names) if "embedding_kernel" in n]
first = starts[-steps]
per = collections.defaultdict(lambda: [0, 0.0])
for n, d in zip(names[first:], dur[first:]):
    key = n.replace("(anonymous namespace)::", "").replace("qwen3vl::cuda::", "").replace("void ", "").split("(")[0][-80:]
    per[key][0] += 1
    per[key][1] += d
total = sum(v[1] for v in per.values()) / steps
print(f"kernels per step: {(len(names) - first) / steps:.0f}; GPU time per step (sum of kernel durations): {total:.1f} us")
for k, (c, d) in sorted(per.items(), key=lambda kv: -kv[1][1]):
    print(f"{d / steps:9.1f} us  {c / steps:5.1f}x  {k}")
PY
