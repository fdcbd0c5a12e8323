#!/usr/bin/env bash
# Install the Debian packages listed in tests/harness/system-packages.txt that are missing, and
# say which; does nothing (no apt-get update) when every one is installed already.
set -euo pipefail

list=${SYSTEM_PACKAGES_LIST:-$(dirname "$0")/system-packages.txt}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
missing=()
for p in "${wanted[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-packages: all ${#wanted[@]} packages of $list are installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: ERROR: missing ${missing[*]}, and there is no apt-get (this needs Debian 12);" \
    "install them by hand" >&2
  exit 1
fi
if [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; then
  echo "system-packages: ERROR: missing ${missing[*]}; run as root (or install sudo)" >&2
  exit 1
fi
echo "system-packages: installing ${missing[*]}"
$sudo apt-get -q -o DPkg::Lock::Timeout=600 update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install "${missing[@]}"
echo "system-packages: installed ${missing[*]}"
