#!/usr/bin/env bash
# Make a Docker engine available: install docker.io if missing, start dockerd in its own
# session if no engine answers, wait until `docker info` works. Idempotent: never starts a
# second dockerd (a second one beside a live one can wreck the live one's docker0 bridge).
# Writes the PID of a dockerd it started to $DOCKERD_PIDFILE so the caller can stop it.
set -euo pipefail

log=${DOCKERD_LOG:-/tmp/cclite-dockerd.log}
pidfile=${DOCKERD_PIDFILE:-/tmp/cclite-dockerd.pid}
timeout=${DOCKER_UP_TIMEOUT:-90}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker-up: installing docker.io"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi

if docker info >/dev/null 2>&1; then
  echo "docker-up: engine already running ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

if pgrep -x dockerd >/dev/null 2>&1; then
  echo "docker-up: a dockerd process exists but does not answer yet; waiting for it"
else
  echo "docker-up: starting dockerd (log: $log)"
  # shellcheck disable=SC2024  # the log belongs to the caller, not to root
  $sudo setsid dockerd --storage-driver=overlay2 </dev/null >"$log" 2>&1 &
  echo $! >"$pidfile"
fi

for _ in $(seq "$timeout"); do
  if docker info >/dev/null 2>&1; then
    # dockerd's own record of its PID beats $! (a sudo or setsid in between).
    if [ -s "$pidfile" ] && [ -r /var/run/docker.pid ]; then cp /var/run/docker.pid "$pidfile"; fi
    echo "docker-up: engine ready ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "docker-up: ERROR: no Docker engine answered within ${timeout}s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
