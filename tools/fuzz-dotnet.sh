#!/usr/bin/env bash
# Fuzzes the managed input paths (issue 12) with libFuzzer through SharpFuzz: the image decoder entry, the server's
# request parser with the prompt it builds, and the chat template with the tokenizer (tests/fuzz/dotnet/Qwen3VL.Fuzz).
#   1. builds the libFuzzer driver (tests/fuzz/dotnet/libfuzzer_dotnet.cpp, the fuzz preset, clang-14);
#   2. publishes the targets and instruments Qwen3VL.Native.dll and Qwen3VL.Server.dll with the sharpfuzz tool
#      (NuGet SharpFuzz.CommandLine, installed into build/tools);
#   3. replays the committed regression inputs (tests/fuzz/dotnet/regressions/<target>), then fuzzes each target for
#      QWEN3VL_DOTNET_FUZZ_SECONDS (default 60) from its seeds (tests/fuzz/dotnet/corpus/<target>) in a scratch corpus,
#      with its dictionary (tests/fuzz/dotnet/<target>.dict) where it has one.
# A finding (an exception the path does not document, a failed check, a crash of the process, a 10 s input) stops it
# with the input saved under build/fuzz-dotnet/findings/. Targets: all three, or those named as arguments.
# Needs tools/setup.sh (clang-14 + libclang-rt-14-dev, the tokenizer in the fixture checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${QWEN3VL_DOTNET_FUZZ_SECONDS:-60}
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(image request template)
out=build/fuzz-dotnet
model=$PWD/tests/fixtures/tiny-tied/model
[ -f "$model/tokenizer.json" ] || { echo "fuzz-dotnet: $model/tokenizer.json is missing; run tools/setup.sh" >&2; exit 1; }

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc 2>/dev/null || echo 2)" --target libfuzzer_dotnet >/dev/null
driver=$PWD/build/fuzz/fuzz/libfuzzer_dotnet

if [ ! -x build/tools/sharpfuzz ]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path build/tools >/dev/null
fi
# A fresh publish each time: the instrumentation rewrites the assemblies in place and refuses to run twice.
rm -rf "$out/bin"
dotnet publish tests/fuzz/dotnet/Qwen3VL.Fuzz/Qwen3VL.Fuzz.csproj -c Release -o "$out/bin" -nologo -v quiet
for dll in Qwen3VL.Native.dll Qwen3VL.Server.dll; do
  build/tools/sharpfuzz "$out/bin/$dll" >/dev/null
done
export QWEN3VL_FUZZ_MODEL=$model

mkdir -p "$out/findings"
# The harness must report a finding: the selftest target throws on "!" (given as its only seed).
selftest=$(mktemp -d); printf '!' > "$selftest/bang"
if "$driver" --target=dotnet --arg="$PWD/$out/bin/Qwen3VL.Fuzz.dll" --arg=selftest -runs=10 \
     -artifact_prefix="$selftest/" "$selftest" >"$selftest/log" 2>&1 || ! ls "$selftest"/crash-* >/dev/null 2>&1; then
  cat "$selftest/log" >&2
  echo "fuzz-dotnet: the harness did not report the selftest's finding; fuzzing with it would find nothing" >&2
  exit 1
fi
rm -rf "$selftest"
echo "fuzz-dotnet: selftest ok (a thrown exception is reported as a crash with its input saved)"
for t in "${targets[@]}"; do
  if [ -d "tests/fuzz/dotnet/regressions/$t" ]; then
    dotnet "$out/bin/Qwen3VL.Fuzz.dll" "$t" "tests/fuzz/dotnet/regressions/$t"
  fi
  scratch=$(mktemp -d)
  cp "tests/fuzz/dotnet/corpus/$t"/* "$scratch"/
  dict=""; [ -f "tests/fuzz/dotnet/$t.dict" ] && dict="tests/fuzz/dotnet/$t.dict"
  echo "fuzz-dotnet: $t for $seconds s"
  # -timeout: one input may take 10 s (the first ones pay the JIT). libFuzzer's default -rss_limit_mb (2 GB) bounds
  # only the driver; the .NET child is bounded by the targets' caps (1 Mpixel images, 1 MiB inputs).
  "$driver" --target=dotnet --arg="$PWD/$out/bin/Qwen3VL.Fuzz.dll" --arg="$t" \
    -max_total_time="$seconds" -timeout=10 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/findings/$t-" ${dict:+-dict="$dict"} "$scratch" 2>&1 | grep -v '^#[0-9]' | tail -n 20
  status=${PIPESTATUS[0]}
  rm -rf "$scratch"
  if [ "$status" != 0 ]; then
    echo "fuzz-dotnet: $t found an input it fails on (exit $status); it is under $out/findings/" >&2
    exit 1
  fi
done
