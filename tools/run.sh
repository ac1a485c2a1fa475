#!/usr/bin/env bash
# The main job: set-up (first time), build, then the qwen3vl command-line tool. With no arguments it runs
# `qwen3vl run`, which uses the tiny checkpoint and sample image shipped in tests/fixtures; any arguments are passed
# to qwen3vl as they are, e.g. tools/run.sh run --model /path/to/Qwen3-VL-2B-Instruct --image photo.jpg --prompt "...".
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
bash tools/build.sh >/dev/null
if [ $# -eq 0 ]; then set -- run; fi
exec dotnet bindings/csharp/Qwen3VL.Cli/bin/Release/net10.0/qwen3vl.dll "$@"
