# Shared by the scripts of tools/device (sourced from the repository root): what they take from the carried
# .devcarry folder, and the CUDA library they run.

# The NativeAOT tools (qwen3vl, qwen3vl-parity) of .devcarry/aot.tar.gz (tools/device/publish-aot.sh), unpacked into
# .devcarry/aot unless they are there already (carried paths are replaced on every call). Prints the folder, which
# holds no tools when nothing was carried.
devcarry_aot() {
  local aot=.devcarry/aot
  if [ ! -x "$aot/qwen3vl" ] && [ -f "$aot.tar.gz" ]; then mkdir -p "$aot" && tar xzf "$aot.tar.gz" -C "$aot"; fi
  echo "$aot"
}

# The Qwen tokenizer.json: .deps/tokenizer (tools/fetch-tokenizer.sh) or the smaller carried
# .devcarry/tokenizer.json.gz (for the 64 MiB tree limit), unpacked to /tmp. Prints its path.
devcarry_tokenizer() {
  local tokenizer=.deps/tokenizer/tokenizer.json
  if [ ! -f "$tokenizer" ] && [ -f .devcarry/tokenizer.json.gz ]; then
    tokenizer=/tmp/tokenizer.json; gunzip -c .devcarry/tokenizer.json.gz > "$tokenizer"
  fi
  echo "$tokenizer"
}

# build/cuda/lib/libqwen3vl_cuda.so, built (library only, QWEN3VL_CUDA_ARCHS if set) when gpu-run.sh has not built it;
# the build log goes to $1. Fails with the log's tail.
ensure_cuda_library() {
  [ -f build/cuda/lib/libqwen3vl_cuda.so ] && return 0
  { cmake --preset cuda -G Ninja -DQWEN3VL_BUILD_TESTS=OFF \
      ${QWEN3VL_CUDA_ARCHS:+-DCMAKE_CUDA_ARCHITECTURES=$QWEN3VL_CUDA_ARCHS} &&
    cmake --build --preset cuda -j "$(nproc)" --target qwen3vl; } > "$1" 2>&1 || { tail -30 "$1"; return 1; }
}
