#!/usr/bin/env bash
# Build cc-lite-stack:bookworm, the image of the guide's stack (tests/stack/: PostgreSQL, Redis,
# the Qdrant test server, a tiny backend), on the local test image (build-image.sh makes it),
# with the qdrant-edge-py wheel downloaded by the host into the build context: no registry and
# no index is needed. Skipped when the same inputs built the image already, unless FORCE=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
base=${IMAGE:-cclite-backup-test:bookworm}
tag=${STACK_IMAGE:-cc-lite-stack:bookworm}
wheel_spec=qdrant-edge-py==0.9.0
wheels=$root/.cache/wheels/qdrant-edge
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

IMAGE=$base "$root/tests/harness/build-image.sh"

shopt -s nullglob
wheel=("$wheels"/qdrant_edge_py-0.9.0-*manylinux*x86_64.whl)
if [ ${#wheel[@]} -eq 0 ]; then
  echo "build-stack-images: downloading the $wheel_spec wheel for the image's Python 3.11"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --platform=manylinux_2_28_x86_64 \
    --python-version=3.11 --dest="$wheels" "$wheel_spec"
  wheel=("$wheels"/qdrant_edge_py-0.9.0-*manylinux*x86_64.whl)
fi
[ ${#wheel[@]} -gt 0 ] || { echo "build-stack-images: ERROR: no $wheel_spec wheel in $wheels" >&2; exit 1; }

# The recipe: the base image, this script, the stack's files, the Qdrant server, the wheel.
recipe=$({
  docker image inspect -f '{{.Id}}' "$base"
  # Contents, not paths: the same checkout anywhere gives the same recipe.
  sha256sum <"$0"
  sha256sum <"${wheel[0]}"
  cd "$root/tests" && find stack qdrant_server -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12)
if [ "${FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{index .Config.Labels "cclite.recipe"}}' "$tag" 2>/dev/null)" = "$recipe" ]; then
  echo "build-stack-images: $tag is up to date (FORCE=1 rebuilds)"
  exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -r "$root/tests/stack/." "$ctx/"
mkdir -p "$ctx/wheels"
cp "${wheel[0]}" "$ctx/wheels/"
cp -r "$root/tests/qdrant_server" "$ctx/qdrant_server"
find "$ctx/qdrant_server" -name __pycache__ -prune -exec rm -rf {} +

old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
echo "build-stack-images: building $tag on $base"
# The classic builder: Debian's docker.io has no buildx, and the base is a local image.
DOCKER_BUILDKIT=0 docker build --quiet --pull=false --build-arg "BASE=$base" \
  --label "cclite.recipe=$recipe" -t "$tag" "$ctx" >/dev/null
new=$(docker image inspect -f '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
docker image ls "$tag"
