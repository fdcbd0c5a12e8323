#!/usr/bin/env bash
# Build the local test image cclite-backup-test:bookworm from a debootstrap of Debian
# bookworm (no registry is reachable, so nothing is pulled). Skipped when an image built
# from this same script exists, unless FORCE=1.
set -euo pipefail

tag=${IMAGE:-cclite-backup-test:bookworm}
recipe=$(sha256sum "$0" | cut -c1-12)
packages=(
  python3 python3-venv python3-psycopg2 sudo acl ca-certificates curl
  postgresql-15 postgresql-client-15 redis-server redis-tools
  gzip pigz zstd tar coreutils findutils procps iproute2 cron
  # systemd as PID 1 for the schedule scenario's timers (other scenarios run `sleep infinity`)
  systemd systemd-sysv dbus
)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

if [ "${FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{index .Config.Labels "cclite.recipe"}}' "$tag" 2>/dev/null)" = "$recipe" ]; then
  echo "build-image: $tag is up to date (FORCE=1 rebuilds)"
  exit 0
fi

# The host's own Debian mirror (deb822 first, then one-line format), else the public one.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
  grep -v security | head -n 1 || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || {
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

rootfs=$(mktemp -d /var/tmp/cclite-rootfs.XXXXXX)
trap '$sudo rm -rf "$rootfs"' EXIT
# A 0700 root would keep the postgres user out, and postgresql-15's postinst would then
# skip creating the 15/main cluster without an error.
chmod 0755 "$rootfs"

echo "build-image: debootstrap bookworm from $mirror"
$sudo env LANG=C.UTF-8 debootstrap --variant=minbase --components=main \
  --include="$(IFS=,; echo "${packages[*]}")" bookworm "$rootfs" "$mirror" >/tmp/cclite-debootstrap.log 2>&1 || {
  tail -n 30 /tmp/cclite-debootstrap.log >&2
  echo "build-image: ERROR: debootstrap failed, full log in /tmp/cclite-debootstrap.log" >&2
  exit 1
}

if [ ! -f "$rootfs/etc/postgresql/15/main/postgresql.conf" ] || [ ! -f "$rootfs/var/lib/postgresql/15/main/PG_VERSION" ]; then
  echo "build-image: ERROR: the PostgreSQL 15/main cluster was not created in the image" >&2
  exit 1
fi

# The chroot shares the host's network: with a PostgreSQL running on the host, the cluster
# got the next free port (5433). Tests expect the default port.
$sudo sed -i 's/^port = .*/port = 5432/' "$rootfs/etc/postgresql/15/main/postgresql.conf"

# Trim what tests never read: apt lists and caches, docs, man pages, translations.
$sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*

old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
echo "build-image: importing as $tag"
$sudo tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["sleep","infinity"]' --change 'ENV LANG=C.UTF-8' \
  --change "LABEL cclite.recipe=$recipe" - "$tag" >/dev/null

# Prove the image does what the scenarios rely on.
docker run --rm "$tag" bash -ec '
  pg_ctlcluster 15 main start
  su postgres -c "psql -p 5432 -XAtc \"select 1\"" | grep -qx 1
  redis-server --daemonize yes >/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do redis-cli ping 2>/dev/null | grep -q PONG && break; sleep 0.5; done
  redis-cli ping | grep -qx PONG
  python3 -c "import psycopg2, venv"
  test -x /lib/systemd/systemd'
new=$(docker image inspect -f '{{.Id}}' "$tag")
# Drop the image this build replaced, unless a container still uses it.
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
docker image ls "$tag"
