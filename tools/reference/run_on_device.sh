#!/usr/bin/env bash
# Build Qwen3-VL parity fixtures on the GPU machine (torch + transformers 5.x, no network) and pack them
# into $OUT as at most a handful of <= 15 MiB parts plus fixtures.log.
#
#   bash tools/reference/run_on_device.sh          # tiny-tied + tiny-untied, default cases  (~1-2 min)
#   bash tools/reference/run_on_device.sh full2b   # full-2b perf fixture; its ~4.3 GB weights are NOT packed
#                                                  # (regenerate them with the same seed; model_manifest.json
#                                                  #  holds their sha256)
# Needs .deps/tokenizer/tokenizer.json in the working tree (run tool: carry [".deps/tokenizer"]).
# Env: OUT (required), PYTHON (python3), SEED (1234), GREEDY_STEPS (8), WORK (a fresh /tmp dir).
set -euo pipefail
export PYTHONUNBUFFERED=1

MODE="${1:-tiny}"
: "${OUT:?OUT must name the folder that is shipped back}"
PY="${PYTHON:-python3}"
SEED="${SEED:-1234}"
STEPS="${GREEDY_STEPS:-8}"
TOK=".deps/tokenizer/tokenizer.json"
WORK="${WORK:-$(mktemp -d /tmp/qwen3vl-fixtures.XXXXXX)}"
LOG="$OUT/fixtures.log"
mkdir -p "$OUT" "$WORK"
: > "$LOG"

say() { echo "[run_on_device] $*" | tee -a "$LOG"; }
gen() {
    "$PY" tools/reference/make_fixtures.py --tokenizer "$TOK" --seed "$SEED" --device cuda \
        --greedy-steps "$STEPS" --force "$@" 2>&1 | tee -a "$LOG"
}

if [ ! -f "$TOK" ]; then
    say "missing $TOK (carry .deps/tokenizer to the device)"
    exit 2
fi
say "mode=$MODE seed=$SEED steps=$STEPS work=$WORK"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true) | tee -a "$LOG"
"$PY" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tee -a "$LOG"

EXCL=()
case "$MODE" in
    tiny)
        gen --preset tiny-tied --cases default --out "$WORK/tiny-tied"
        gen --preset tiny-untied --cases default --out "$WORK/tiny-untied"
        DIRS=(tiny-tied tiny-untied)
        ;;
    full2b)
        gen --preset full-2b --cases perf --out "$WORK/full-2b-perf"
        DIRS=(full-2b-perf)
        EXCL=(--exclude='*.safetensors')
        ;;
    *)
        say "unknown mode '$MODE' (tiny | full2b)"
        exit 2
        ;;
esac

# on-disk total vs unique content (git stores identical files once: tokenizer.json, shared images/pixels)
(cd "$WORK" && find "${DIRS[@]}" -type f ! -name '*.safetensors' -o -type f -name '*.safetensors' -size -200M \
    | sort | xargs sha256sum | awk -v w="$WORK" '{ cmd = "stat -c %s " w "/" $2; cmd | getline n; close(cmd);
        total += n; if (!($1 in seen)) { seen[$1] = 1; uniq += n } }
        END { printf "fixture bytes: %.1f MB on disk, %.1f MB unique content\n", total / 1e6, uniq / 1e6 }') \
    2>&1 | tee -a "$LOG" || true

NAME="fixtures-$MODE"
tar -C "$WORK" ${EXCL[@]+"${EXCL[@]}"} -czf "$WORK/$NAME.tar.gz" "${DIRS[@]}"
(cd "$WORK" && sha256sum "$NAME.tar.gz") > "$OUT/$NAME.sha256"
split -b 15M -d -a 2 "$WORK/$NAME.tar.gz" "$OUT/$NAME.tar.gz.part"
say "packed: $(du -h "$WORK/$NAME.tar.gz" | cut -f1) -> $(ls "$OUT"/"$NAME".tar.gz.part* | wc -l) part(s)"
ls -l "$OUT" | tee -a "$LOG"
NPARTS=$(ls "$OUT"/"$NAME".tar.gz.part* | wc -l)
if [ "$NPARTS" -gt 6 ]; then
    say "ERROR: $NPARTS parts; with the log and checksum that is more than 8 files to ship back"
    exit 3
fi
say "done"
