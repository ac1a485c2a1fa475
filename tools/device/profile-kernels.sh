#!/usr/bin/env bash
# On the GPU machine, after gpu-run.sh built the library and wrote the random 2B checkpoint: Nsight Compute kernel
# durations (clocks left alone) of one `qwen3vl bench` invocation given as arguments, summed per kernel name. ncu adds a
# few us per kernel and serialises them: read the proportions, not the total. Writes $OUT/kernels.csv.
# Example: bash tools/device/profile-kernels.sh --prompt-tokens 8 --new-tokens 0 --image-size 1024
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
aot=$(devcarry_aot)
export QWEN3VL_NATIVE_LIBRARY="$PWD/build/cuda/lib/libqwen3vl_cuda.so"
ncu --clock-control none --metrics gpu__time_duration.sum --csv \
  "$aot/qwen3vl" bench --model /tmp/qwen3vl-2b-random --device cuda "$@" > "$OUT/kernels.csv" 2> "$OUT/ncu.err"
python3 - "$OUT/kernels.csv" <<'PY'
import csv, sys, collections, io
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6, "ns": 1e-3, "us": 1.0, "ms": 1e3}
per = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    n = r["Kernel Name"].replace("(anonymous namespace)::", "").replace("qwen3vl::cuda::", "").replace("void ", "")
    per[n.split("(")[0][-90:]][0] += 1
    per[n.split("(")[0][-90:]][1] += float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1.0)
total = sum(v[1] for v in per.values())
print(f"{len(rows)} kernels, {total / 1000:.2f} ms summed")
for k, (c, d) in sorted(per.items(), key=lambda kv: -kv[1][1])[:25]:
    print(f"{d / 1000:8.3f} ms {c:6d}x  {k}")
PY
