#!/usr/bin/env bash
# Reassemble the parts written by run_on_device.sh and unpack them into tests/fixtures/ (or DEST).
#   tools/reference/unpack.sh DIR_WITH_PARTS [DEST]
# Each fixture directory in the archive replaces DEST/<name> wholesale.
set -euo pipefail
SRC="${1:?usage: unpack.sh DIR_WITH_PARTS [DEST]}"
DEST="${2:-tests/fixtures}"
shopt -s nullglob
found=0
for first in "$SRC"/fixtures-*.tar.gz.part00; do
    base="${first%.part00}"
    name="$(basename "$base" .tar.gz)"
    tmp="$(mktemp "${TMPDIR:-/tmp}/$name.XXXXXX.tar.gz")"
    cat "$base".part?? > "$tmp"
    if [ -f "$SRC/$name.sha256" ]; then
        want="$(awk '{print $1}' "$SRC/$name.sha256")"
        got="$(sha256sum "$tmp" | awk '{print $1}')"
        if [ "$want" != "$got" ]; then
            echo "checksum mismatch for $name: $got != $want" >&2
            rm -f "$tmp"
            exit 1
        fi
        echo "$name: checksum OK"
    else
        echo "$name: no .sha256 next to the parts, not verified" >&2
    fi
    mkdir -p "$DEST"
    for d in $(tar -tzf "$tmp" | cut -d/ -f1 | sort -u); do
        case "$d" in ""|.|..) continue ;; esac
        rm -rf "${DEST:?}/$d"
        echo "  -> $DEST/$d"
    done
    tar -xzf "$tmp" -C "$DEST"
    rm -f "$tmp"
    found=1
done
if [ "$found" = 0 ]; then
    echo "no fixtures-*.tar.gz.part00 in $SRC" >&2
    exit 1
fi
