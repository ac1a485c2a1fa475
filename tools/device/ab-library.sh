#!/usr/bin/env bash
# On the GPU machine, after gpu-run.sh has built build/cuda (carry .devcarry for the NativeAOT tools): the same `qwen3vl bench`
# commands against two native libraries, interleaved (A B A B ...) so that drift on the machine hits both alike.
# A is this tree's build/cuda; B is built here from .devcarry/before.tar.gz (`git archive REV native CMakeLists.txt
# CMakePresets.json`, made where the repository is), which must keep the same C ABI as the binding in .devcarry/aot.
# Usage: tools/device/ab-library.sh [rounds]. Log in $OUT/ab-library.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/lib.sh
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
rounds="${1:-3}"
aot=$(devcarry_aot)
before=/tmp/qwen3vl-before
rm -rf "$before" && mkdir -p "$before" && tar xzf .devcarry/before.tar.gz -C "$before"
archs=()
[ -n "${QWEN3VL_CUDA_ARCHS:-}" ] && archs=(-DCMAKE_CUDA_ARCHITECTURES="$QWEN3VL_CUDA_ARCHS")
(cmake -S "$before" -B "$before/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQWEN3VL_CUDA=ON -DQWEN3VL_BUILD_TESTS=OFF \
   "${archs[@]}" && cmake --build "$before/build" -j "$(nproc)") > "$OUT/ab-library-build.log" 2>&1 ||
  { echo "building the B library failed (see ab-library-build.log)"; exit 1; }
lib_a="$PWD/build/cuda/lib/libqwen3vl_cuda.so" lib_b="$before/build/lib/libqwen3vl_cuda.so"
ckpt=/tmp/qwen3vl-2b-random
[ -f "$ckpt/config.json" ] || { mkdir -p "$ckpt" && build/cuda/tests/qwen3vl_make_random_checkpoint "$ckpt" > /dev/null; }
for i in $(seq "$rounds"); do
  for side in A B; do
    lib=$lib_a; [ "$side" = B ] && lib=$lib_b
    for args in "--prompt-tokens 512 --new-tokens 128 --image-size 448" "--prompt-tokens 2048 --new-tokens 0 --image-size 1024"; do
      echo "== $side round $i: qwen3vl bench --device cuda $args"
      # shellcheck disable=SC2086
      QWEN3VL_NATIVE_LIBRARY="$lib" "$aot/qwen3vl" bench --model "$ckpt" --device cuda $args --repeat 2 2>&1
    done
  done
done | tee "$OUT/ab-library.log"
