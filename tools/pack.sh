#!/usr/bin/env bash
# Builds the NuGet package Qwen3VL.Native.<version>.nupkg (+ .snupkg symbols) into a folder (default out/packages):
# the managed assembly with XML docs, README and MIT license, and runtimes/linux-x64/native/ with
#   libqwen3vl.so       the CPU build (cmake preset cpu)
#   libqwen3vl_cuda.so  the CUDA build for CUDA 11.x, every architecture the package promises: sm_61..sm_90 + PTX
#                       (preset cuda with its default architectures, in build/cuda-pack; library target only).
# The full-architecture CUDA build takes ~7 min on 2 cores (measured: 409 s), so it lives here and not in test.sh's
# quick CUDA compile check (sm_61 + sm_90 only). Without nvcc it stops, unless QWEN3VL_PACK_CPU_ONLY=1 (CPU-only package).
# Usage: tools/pack.sh [OUTPUT_DIR]; QWEN3VL_PACKAGE_VERSION=X.Y.Z overrides the version of Directory.Build.props.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-out/packages}")
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$out"

start=$(date +%s)
cmake --preset cpu >/dev/null
cmake --build --preset cpu --target qwen3vl -j "$jobs"
cuda_dir=""
if command -v nvcc >/dev/null 2>&1; then
  # Configure without tests: the package needs only the library; CMAKE_CUDA_ARCHITECTURES left to the project default.
  cmake -S . -B build/cuda-pack -DCMAKE_BUILD_TYPE=Release -DQWEN3VL_CUDA=ON -DQWEN3VL_BUILD_TESTS=OFF >/dev/null
  cmake --build build/cuda-pack --target qwen3vl -j "$jobs"
  cuda_dir=build/cuda-pack/lib/
  archs=$(grep -E '^CMAKE_CUDA_ARCHITECTURES' build/cuda-pack/CMakeCache.txt | cut -d= -f2)
  echo "pack: CUDA build for architectures ${archs}"
elif [ "${QWEN3VL_PACK_CPU_ONLY:-0}" = 1 ]; then
  echo "pack: nvcc not found: CPU-only package (QWEN3VL_PACK_CPU_ONLY=1)"
  cuda_dir=build/cuda-pack/none/
else
  echo "pack: nvcc not found; install the CUDA toolkit (tools/setup.sh) or set QWEN3VL_PACK_CPU_ONLY=1" >&2
  exit 1
fi
native_done=$(date +%s)

rm -f "$out"/Qwen3VL.Native.*.nupkg "$out"/Qwen3VL.Native.*.snupkg
dotnet pack bindings/csharp/Qwen3VL.Native -c Release -o "$out" -nologo -v quiet \
  -p:Qwen3VLCpuNativeDir="$PWD/build/cpu/lib/" -p:Qwen3VLCudaNativeDir="$PWD/$cuda_dir" \
  ${QWEN3VL_PACKAGE_VERSION:+-p:PackageVersion="$QWEN3VL_PACKAGE_VERSION"}

pkg=$(ls "$out"/Qwen3VL.Native.*.nupkg | grep -v '\.snupkg$' | head -n 1)
size=$(stat -c %s "$pkg")
echo "pack: $pkg ($((size / 1024)) KiB; native build $((native_done - start)) s, total $(( $(date +%s) - start )) s)"
python3 - "$pkg" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in z.infolist():
        if not i.filename.endswith(('.rels', '.psmdcp', '[Content_Types].xml')):
            print(f"  {i.file_size:>10}  {i.filename}")
    names = set(z.namelist())
need = ["lib/net10.0/Qwen3VL.Native.dll", "lib/net10.0/Qwen3VL.Native.xml", "README.md", "runtimes/linux-x64/native/libqwen3vl.so"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"pack: the package lacks {missing}")
PY
# nuget.org refuses packages above 250 MB.
if [ "$size" -ge $((250 * 1000 * 1000)) ]; then echo "pack: $pkg is above NuGet's 250 MB limit" >&2; exit 1; fi
