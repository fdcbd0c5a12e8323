#!/usr/bin/env bash
# Start the guide's stack on the local Docker engine from cc-lite-stack:bookworm
# (build-stack-images.sh): cc-lite-postgres (with an empty operator_demo database),
# cc-lite-redis, cc-lite-qdrant and cc-lite-backend on the network cc-lite-demo, with volumes,
# all labelled cclite.demo=1 (demo-clean.sh removes them). Secrets are random, in
# $CCLITE_DEMO_ROOT/stack.env (0600). Used by `make demo` and the execution-environment test.
# Fixed container names: run it under flock /tmp/cclite-docker-tests.lock beside other tests.
# CCLITE_STACK=NAME (a test's own stack) names the containers NAME-postgres ... with the guide's
# names as their aliases on their own network NAME-demo, labelled cclite.demo=NAME: no lock needed.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# A stack of its own (CCLITE_STACK) has its own folder: its clean-up never removes the demo's.
demo_root=${CCLITE_DEMO_ROOT:-/tmp/cclite-demo}
[ -n "${CCLITE_DEMO_ROOT:-}" ] || [ "${CCLITE_STACK:-cc-lite}" = cc-lite ] || demo_root=/tmp/$CCLITE_STACK-demo
qdrant_port=${CCLITE_DEMO_QDRANT_PORT:-6337}
backend_port=${CCLITE_DEMO_BACKEND_PORT:-8000}
image=${STACK_IMAGE:-cc-lite-stack:bookworm}
stack=${CCLITE_STACK:-cc-lite}
net=$stack-demo
label=cclite.demo=1
[ "$stack" = cc-lite ] || label=cclite.demo=$stack

# Never touch a real CC-Lite stack: containers with these names must be the demo's own.
for c in "$stack-postgres" "$stack-redis" "$stack-qdrant" "$stack-backend"; do
  if docker container inspect "$c" >/dev/null 2>&1 &&
    [ "$(docker container inspect -f '{{index .Config.Labels "cclite.demo"}}' "$c")" != "${label#cclite.demo=}" ]; then
    echo "stack-up: ERROR: a container named $c exists and is not the demo's; the demo uses that name." \
      "Run the demo on a stack of its own (CCLITE_STACK=NAME, e.g. CCLITE_STACK=cclite-try make demo)," \
      "on another Docker host, or rename that container." >&2
    exit 1
  fi
done
"$root/tests/harness/demo-clean.sh" --quiet

# Busy for 5 s in a row (a docker-proxy of a container just removed takes a moment to go;
# SO_REUSEADDR as servers use: connections in TIME_WAIT do not make a port busy).
port_busy() {
  for _ in 1 2 3 4 5; do
    python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null && return 1
    sleep 1
  done
}
for pv in "$qdrant_port:CCLITE_DEMO_QDRANT_PORT:Qdrant's API (the guide's QDRANT_PORT)" "$backend_port:CCLITE_DEMO_BACKEND_PORT:the backend's /health"; do
  IFS=: read -r port var what <<<"$pv"
  if port_busy "$port"; then
    echo "stack-up: ERROR: port $port on 127.0.0.1 ($what) is in use; free it or pick another with" \
      "$var=PORT" >&2
    exit 1
  fi
done

echo "stack-up: starting the guide's stack on Docker (image $image, network $net)"
mkdir -p "$demo_root"
chmod 0700 "$demo_root"
secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
# Secrets reach the containers through an env file (mode 0600), not argv; callers read it too.
envfile=$demo_root/stack.env
(umask 077 && printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\nQDRANT_API_KEY=%s\n' "$(secret)" "$(secret)" "$(secret)" >"$envfile")
docker network create --label "$label" "$net" >/dev/null
for v in postgres redis qdrant; do docker volume create --label "$label" "$stack-demo-$v" >/dev/null; done
run() {
  local role=$1
  shift
  docker run -d --name "$stack-$role" --hostname "cc-lite-$role" --network "$net" --network-alias "cc-lite-$role" \
    --label "$label" --env-file "$envfile" "$@" >/dev/null
  echo "  $stack-$role started"
}
run postgres -v "$stack-demo-postgres:/var/lib/postgresql" "$image" postgres
run redis -v "$stack-demo-redis:/data" "$image" redis
run qdrant -v "$stack-demo-qdrant:/qdrant/storage" -p "127.0.0.1:$qdrant_port:6333" "$image" qdrant
run backend -p "127.0.0.1:$backend_port:8000" "$image" backend

wait_for() {
  local what=$1
  shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "stack-up: ERROR: $what did not come up in 60s; see docker logs ${what%% *}" >&2
  exit 1
}
wait_for "$stack-postgres (PostgreSQL)" docker exec "$stack-postgres" pg_isready -q
# shellcheck disable=SC2016  # expanded in the container, where the password is
wait_for "$stack-redis (Redis)" docker exec "$stack-redis" sh -c 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning ping | grep -q PONG'
wait_for "$stack-qdrant (Qdrant API on 127.0.0.1:$qdrant_port)" curl -fsS "http://127.0.0.1:$qdrant_port/healthz"
wait_for "$stack-backend (http://127.0.0.1:$backend_port)" curl -sS -o /dev/null "http://127.0.0.1:$backend_port/health"
docker exec "$stack-postgres" runuser -u postgres -- psql -XAtqc 'CREATE DATABASE operator_demo'
echo "stack-up: ready; Qdrant on 127.0.0.1:$qdrant_port, the backend on http://127.0.0.1:$backend_port/health"

