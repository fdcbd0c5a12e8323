#!/usr/bin/env bash
# `make demo-clean`: remove what `make demo` made: the containers, network and volumes labelled
# cclite.demo=1, and the demo's folder ($CCLITE_DEMO_ROOT, /tmp/cclite-demo). --quiet: no summary.
# With CCLITE_STACK=NAME, what stack-up.sh made for that stack (labelled cclite.demo=NAME).
set -euo pipefail

# A stack of its own (CCLITE_STACK) has its own folder: its clean-up never removes the demo's.
demo_root=${CCLITE_DEMO_ROOT:-/tmp/cclite-demo}
[ -n "${CCLITE_DEMO_ROOT:-}" ] || [ "${CCLITE_STACK:-cc-lite}" = cc-lite ] || demo_root=/tmp/$CCLITE_STACK-demo
quiet=0
label=cclite.demo=1
[ "${CCLITE_STACK:-cc-lite}" = cc-lite ] || label=cclite.demo=$CCLITE_STACK
[ "${1:-}" != --quiet ] || quiet=1
say() { [ "$quiet" = 1 ] || echo "demo-clean: $*"; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  mapfile -t containers < <(docker ps -aq --filter "label=$label")
  [ ${#containers[@]} -eq 0 ] || { docker rm -f "${containers[@]}" >/dev/null; say "removed ${#containers[@]} containers"; }
  mapfile -t networks < <(docker network ls -q --filter "label=$label")
  [ ${#networks[@]} -eq 0 ] || { docker network rm "${networks[@]}" >/dev/null; say "removed the network"; }
  mapfile -t volumes < <(docker volume ls -q --filter "label=$label")
  [ ${#volumes[@]} -eq 0 ] || { docker volume rm "${volumes[@]}" >/dev/null; say "removed volumes ${volumes[*]}"; }
fi
if [ -d "$demo_root" ]; then rm -rf "$demo_root" && say "removed $demo_root"; fi
say "done"
