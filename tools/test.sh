#!/usr/bin/env bash
# The project's test command (README and CI): set-up, native build + CTest, CUDA compile check (sm_61 and sm_90),
# sanitizer build + CTest, a bounded fuzz run, the .NET tests and a bounded fuzz run of the managed input paths.
# Exits non-zero on the first failure and prints one summary line at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
log() { printf '\n=== %s\n' "$*"; }

bash tools/setup.sh

log "native: CPU preset build + CTest"
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$jobs"
ctest --preset cpu -j "$jobs" 2>&1 | tee build/ctest-cpu.log

if command -v nvcc >/dev/null 2>&1; then
  log "native: CUDA compile check (sm_61 and sm_90 + PTX)"
  cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES="61-real;90" >/dev/null
  cmake --build --preset cuda -j "$jobs"
  log "native: CTest of the CUDA build (no GPU here: the CPU paths and the no-device errors)"
  ctest --preset cuda -j "$jobs" 2>&1 | tee build/ctest-cuda.log
else
  log "native: nvcc not found, CUDA compile check skipped (set-up installs it; QWEN3VL_SKIP_CUDA_TOOLKIT=1 was set?)"
fi

log "native: Windows portability compile check (mingw-w64)"
bash tools/check-windows-portability.sh

log "native: ASan + UBSan build + CTest"
cmake --preset debug-asan >/dev/null
cmake --build --preset debug-asan -j "$jobs"
ASAN_OPTIONS=allocator_may_return_null=1 ctest --preset debug-asan -j "$jobs" 2>&1 | tee build/ctest-asan.log

if [ -f tests/fuzz/CMakeLists.txt ]; then
  log "native: libFuzzer over the safetensors/JSON parsers (${QWEN3VL_FUZZ_SECONDS:-60} s)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs"
  corpus=$(mktemp -d)
  cp tests/fuzz/corpus/* "$corpus"/
  build/fuzz/fuzz/fuzz_safetensors -max_total_time="${QWEN3VL_FUZZ_SECONDS:-60}" -print_final_stats=1 "$corpus" 2>&1 | tail -n 15
  rm -rf "$corpus"
fi

log ".NET: build + tests"
dotnet build Qwen3VL.sln -c Release -nologo -v quiet
dotnet test --solution Qwen3VL.sln -c Release --no-build 2>&1 | tee build/dotnet-test.log

log ".NET: libFuzzer + SharpFuzz over the image decoder, the request parser and the chat template (${QWEN3VL_DOTNET_FUZZ_SECONDS:-60} s each)"
bash tools/fuzz-dotnet.sh

# --- NuGet package proof (issue 7; tools/package-test.sh owns the details) -------------------------------------------
# Packs Qwen3VL.Native (CPU build + the full-architecture CUDA build, sm_61..sm_90 + PTX: ~7 min on 2 cores the first
# time, in build/cuda-pack) into a local feed, then a throwaway console app adds the package, generates on CPU, and is
# published with NativeAOT and run again. Warm: ~40 s.
log "package: tools/package-test.sh (pack, dotnet add package from a local feed, run, NativeAOT publish + run)"
if command -v nvcc >/dev/null 2>&1; then bash tools/package-test.sh; else QWEN3VL_PACK_CPU_ONLY=1 bash tools/package-test.sh; fi
# --- end of the NuGet package proof -----------------------------------------------------------------------------------

log "main job: tools/run.sh (the README's first command: tiny shipped checkpoint + sample image)"
bash tools/run.sh > build/main-job.log 2>&1 || { cat build/main-job.log; echo "main job failed" >&2; exit 1; }
tail -n 6 build/main-job.log

# One closing line over every suite run above.
passed=0; failed=0
for f in build/ctest-cpu.log build/ctest-cuda.log build/ctest-asan.log; do
  [ -f "$f" ] || continue
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$f" | tail -n 1)
  total=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/'); bad=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests failed.*/\1/')
  skipped=$(grep -c '(Skipped)' "$f" || true)
  passed=$((passed + total - bad - skipped)); failed=$((failed + bad)); skipped_all=$((${skipped_all:-0} + skipped))
done
dn_total=$(grep -E 'total: *[0-9]+' build/dotnet-test.log | tail -n 1 | sed -E 's/.*total: *([0-9]+).*/\1/')
dn_failed=$(grep -E 'failed: *[0-9]+' build/dotnet-test.log | tail -n 1 | sed -E 's/.*failed: *([0-9]+).*/\1/')
passed=$((passed + ${dn_total:-0} - ${dn_failed:-0})); failed=$((failed + ${dn_failed:-0}))
echo
echo "${passed} passed, ${failed} failed, ${skipped_all:-0} skipped"
[ "$failed" = 0 ]
