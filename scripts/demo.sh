#!/usr/bin/env bash
# The built-in example: minimize bash, ls, cat and find from this machine's root into a tar,
# unpack it and run the programs chrooted in the result. Needs root (for chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/minicon-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

set -x
.venv/bin/minicon --list -t "$work/demo.tar" bash ls cat find > "$work/kept.txt"
mkdir "$work/root"
tar -xpf "$work/demo.tar" -C "$work/root"
chroot "$work/root" /bin/bash -c 'echo "hello from a minimized root"; ls /; find /usr/bin -type f'
{ set +x; } 2>/dev/null
echo
echo "kept $(wc -l < "$work/kept.txt") paths ($(du -sh "$work/root" | cut -f1) on disk); the files and why:"
grep -v -e '	parent directory$' -e '	mount point' "$work/kept.txt"
