#!/usr/bin/env bash
# Build the AWX execution environment cclite-backup-ee:test with ansible-builder from
# execution-environment.yml, offline: a local base image (tests/ee/Dockerfile.base: the test
# image plus a wheelhouse the host downloads), the dependency collections of .collections/ and
# the tarball of `make build` (tests/ee/local-ee.py writes the local definition). Skipped when
# the same inputs built the image already, unless FORCE=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$root/.venv/bin:$PATH
base=${IMAGE:-cclite-backup-test:bookworm}
ee_base=cclite-ee-base:bookworm
tag=${EE_IMAGE:-cclite-backup-ee:test}
wheels=$root/.cache/wheels/ee
tarball=$root/dist/cclite-backup-$(sed -n 's/^version: *//p' "$root/galaxy.yml").tar.gz
# What the generated Containerfile pip-installs, with their dependencies: ansible_core,
# ansible_runner and python of the definition; what the collections ask for (`ansible-builder
# introspect`: amazon.aws boto3, awx.awx pytz python-dateutil awxkit, community.docker docker
# urllib3 requests paramiko); the builder's own bindep, pyyaml, packaging, dumb-init.
reqs=(ansible-core==2.19.14 ansible-runner==2.4.3 'boto3>=1.34' jmespath requests
  pytz 'python-dateutil>=2.7.0' awxkit docker urllib3 paramiko
  bindep pyyaml packaging dumb-init==1.2.5)

IMAGE=$base "$root/tests/harness/build-image.sh"

stamp=$wheels/.requirements
if [ "$(cat "$stamp" 2>/dev/null)" != "${reqs[*]}" ]; then
  echo "build-ee: downloading the wheels of ${reqs[*]} (with dependencies) into $wheels"
  rm -rf "$wheels"
  mkdir -p "$wheels"
  python -m pip download --quiet --only-binary=:all: -d "$wheels" "${reqs[@]}" 2>&1 | grep -v 'is ignored' >&2 || true
  for r in ansible_core ansible_runner bindep dumb_init; do
    ls "$wheels/$r"-*.whl >/dev/null || { echo "build-ee: ERROR: no $r wheel was downloaded" >&2; exit 1; }
  done
  echo "${reqs[*]}" >"$stamp"
fi

echo "build-ee: the collection tarball (make build)"
make -C "$root" --no-print-directory build >/dev/null

recipe=$({
  docker image inspect -f '{{.Id}}' "$base"
  cat "$0" "$root/execution-environment.yml" "$root/tests/ee/local-ee.py" "$root/tests/ee/Dockerfile.base" | sha256sum
  cat "$stamp"
  # The collection tarball's bytes change with every build; its FILES.json lists the content's sums.
  tar -xOzf "$tarball" FILES.json | sha256sum
} | sha256sum | cut -c1-12)
if [ "${FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{index .Config.Labels "cclite.recipe"}}' "$tag" 2>/dev/null)" = "$recipe" ]; then
  echo "build-ee: $tag is up to date (FORCE=1 rebuilds)"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base" "$work/def/dist"
cp -r "$wheels" "$work/base/wheels"
cp "$root/tests/ee/Dockerfile.base" "$work/base/Dockerfile"
echo "build-ee: building the base image $ee_base on $base"
DOCKER_BUILDKIT=0 docker build --quiet --pull=false --build-arg "BASE=$base" -t "$ee_base" "$work/base" >"$work/base.log" 2>&1 ||
  { cat "$work/base.log" >&2; echo "build-ee: ERROR: the base image did not build" >&2; exit 1; }

python "$root/tests/ee/local-ee.py" "$root/execution-environment.yml" "$work/def" "$root/.collections/ansible_collections"
cp "$tarball" "$work/def/dist/"
echo "build-ee: ansible-builder build -t $tag (log: /tmp/cclite-ee-build.log)"
start=$SECONDS
if ! DOCKER_BUILDKIT=0 ansible-builder build -f "$work/def/execution-environment.yml" --context "$work/context" \
  --container-runtime docker -t "$tag" --extra-build-cli-args "--label cclite.recipe=$recipe" -v 2 \
  >/tmp/cclite-ee-build.log 2>&1; then
  tail -n 40 /tmp/cclite-ee-build.log >&2
  echo "build-ee: ERROR: ansible-builder build failed; full log in /tmp/cclite-ee-build.log" >&2
  exit 1
fi
echo "build-ee: built in $((SECONDS - start))s"
docker run --rm "$tag" ansible-galaxy collection list 2>/dev/null | grep -E '^(cclite\.backup|community\.docker|amazon\.aws|awx\.awx) '
docker image ls "$tag"
