#!/usr/bin/env bash
# The shipped library exports exactly the functions its public header declares (no test oracle, no engine symbol
# with C linkage), and the test build exports the header's plus qwen3vl_testing.h's.
# Usage: tools/check-exports.sh LIBRARY HEADER [HEADER ...]   (CTest runs it on both libraries; Linux, nm)
set -euo pipefail
lib=$1
shift
declared=$(grep -h '^QWEN3VL_API' "$@" | sed -E 's/.*[ *](qwen3vl_[a-z0-9_]+)\(.*/\1/' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^qwen3vl_/ {print $3}' | sort -u)
if [ "$declared" != "$exported" ]; then
  echo "check-exports: $lib does not export what $* declare:"
  diff <(echo "$declared") <(echo "$exported") | sed -n 's/^< /  declared, not exported: /p; s/^> /  exported, not declared: /p'
  exit 1
fi
echo "check-exports: $lib exports the $(echo "$declared" | wc -l) functions of $*"
