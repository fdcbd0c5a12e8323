#!/usr/bin/env bash
# Make a real (not symlinked) DEST/ansible_collections/cclite/backup tree from this checkout,
# beside copies of the dependency collections from .collections/, as ansible-test and
# `ansible-galaxy collection build` want it. Copies the files git knows (tracked plus
# untracked but not ignored), never .venv/.collections/.cache. Prints the collection path.
# DEST must lie outside any git work tree: ansible-test would otherwise list files with the
# enclosing repository's git and find none. Callers use a fresh `mktemp -d` per run, so
# concurrent runs on one checkout do not pull the tree from under each other.
# Usage: collection-tree.sh DEST
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:?usage: collection-tree.sh DEST}
coll=$dest/ansible_collections/cclite/backup

[ -f "$root/.collections/.bundle" ] || "$root/tests/harness/collections.sh" >&2

mkdir -p "$coll"
for ns in "$root"/.collections/ansible_collections/*/; do
  [ "$(basename "$ns")" = cclite ] || cp -a "$ns" "$dest/ansible_collections/"
done

git -C "$root" ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do
    case $f in .venv/* | .collections/* | .cache/* | tests/output/* | dist/*) continue ;; esac
    if [ -e "$root/$f" ] || [ -L "$root/$f" ]; then printf '%s\0' "$f"; fi
  done |
  tar -C "$root" --null --no-recursion -T - -cf - | tar -C "$coll" -xf -
echo "$coll"
