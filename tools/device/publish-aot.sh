#!/usr/bin/env bash
# Here (not on the GPU machine): NativeAOT-publish qwen3vl-parity and the qwen3vl CLI into .devcarry/aot.tar.gz,
# the form in which they travel to the GPU machine (carry ".devcarry"), where no .NET runtime is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
dotnet publish tests/csharp/Qwen3VL.Parity -c Release -r linux-x64 -p:PublishAot=true -o "$out/aot" -nologo -v quiet
dotnet publish bindings/csharp/Qwen3VL.Cli -c Release -r linux-x64 -p:PublishAot=true -o "$out/aot" -nologo -v quiet
rm -f "$out"/aot/*.dbg "$out"/aot/*.pdb "$out"/aot/*.xml
rm -rf "$out/aot/runtimes"  # the native library is built on the GPU machine
mkdir -p .devcarry && tar czf .devcarry/aot.tar.gz -C "$out/aot" .
ls -la .devcarry/aot.tar.gz
