#!/usr/bin/env bash
# The main job: set-up (first time), build, then the qwen3vl command-line tool with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
bash tools/build.sh >/dev/null
exec dotnet bindings/csharp/Qwen3VL.Cli/bin/Release/net10.0/qwen3vl.dll "$@"
