#!/usr/bin/env bash
# Fill .collections/ansible_collections/ with the dependency collections taken from the
# `ansible` bundle wheel (Galaxy is unreachable), plus cclite/backup as a symlink to this
# checkout. Idempotent: does nothing when the same bundle and list are already in place.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bundle=${ANSIBLE_BUNDLE_VERSION:-12.3.0}
wanted=(community/docker amazon/aws community/general ansible/posix community/postgresql awx/awx)
dest=$root/.collections/ansible_collections
stamp=$root/.collections/.bundle
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

if [ "$(cat "$stamp" 2>/dev/null)" != "ansible==$bundle ${wanted[*]}" ]; then
  mkdir -p "$root/.cache/wheels"
  wheel=$root/.cache/wheels/ansible-$bundle-py3-none-any.whl
  [ -f "$wheel" ] || "$python" -m pip download -q --no-deps --only-binary=:all: \
    -d "$root/.cache/wheels" "ansible==$bundle"
  tmp=$(mktemp -d "$root/.cache/collections.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "collections: unpacking ${wanted[*]} from ansible $bundle"
  "$python" - "$wheel" "$tmp" "${wanted[@]}" <<'PY'
import sys, zipfile
wheel, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
prefixes = tuple(f"ansible_collections/{w}/" for w in wanted)
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefixes)]
    missing = [w for w in wanted if not any(n.startswith(f"ansible_collections/{w}/") for n in names)]
    if missing:
        sys.exit(f"collections: not in the bundle: {missing}")
    zf.extractall(out, names)
PY
  rm -rf "$root/.collections"
  mkdir -p "$root/.collections"
  mv "$tmp/ansible_collections" "$dest"
  echo "ansible==$bundle ${wanted[*]}" >"$stamp"
fi

mkdir -p "$dest/cclite"
ln -sfn ../../.. "$dest/cclite/backup"
echo "collections: ready in $dest"
