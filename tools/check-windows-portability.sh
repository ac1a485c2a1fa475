#!/usr/bin/env bash
# Compiles every native C++ source for Windows with mingw-w64 (compile only, no link): catches POSIX calls or
# headers that leaked outside native/core/platform.cpp and non-portable code before a Windows user does. The
# MSVC + CUDA build itself is not exercised here.
set -euo pipefail
cd "$(dirname "$0")/.."
cxx=$(command -v x86_64-w64-mingw32-g++-posix || command -v x86_64-w64-mingw32-g++ || true)
if [ -z "$cxx" ]; then echo "check-windows-portability: mingw-w64 not installed" >&2; exit 1; fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
n=0
for f in native/core/*.cpp native/cpu/*.cpp native/capi/*.cpp; do
  flags=(-std=c++17 -Wall -Wextra -Werror -DQWEN3VL_BUILD -Inative/capi -Inative/core -Inative/cpu -Inative/kernels)
  case "$f" in
    *_avx2.cpp) flags+=(-mavx2 -mfma -mf16c) ;;
    *_avx512.cpp) flags+=(-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni) ;;
  esac
  "$cxx" "${flags[@]}" -c "$f" -o "$out/$(basename "$f").o"
  n=$((n + 1))
done
echo "check-windows-portability: $n sources compile for x86_64-w64-mingw32"
