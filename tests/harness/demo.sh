#!/usr/bin/env bash
# `make demo`: the guide's stack on the local Docker engine (cc-lite-postgres, cc-lite-redis,
# cc-lite-qdrant, cc-lite-backend from the local image cc-lite-stack:bookworm) with sample data,
# then the operator's starter examples/workstation/: backup, verify, list, a disaster, the
# recovery with dr.yml, the data checked back, /health, the backup tree. `make demo-clean`
# removes what it made. CCLITE_STACK=NAME (with its own ports) runs the demo
# on a stack of its own (NAME-postgres ..., see stack-up.sh) instead of the guide's names.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$root/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$root/.collections
# A stack of its own (CCLITE_STACK) has its own folder: its clean-up never removes the demo's.
demo_root=${CCLITE_DEMO_ROOT:-/tmp/cclite-demo}
[ -n "${CCLITE_DEMO_ROOT:-}" ] || [ "${CCLITE_STACK:-cc-lite}" = cc-lite ] || demo_root=/tmp/$CCLITE_STACK-demo
qdrant_port=${CCLITE_DEMO_QDRANT_PORT:-6337}
backend_port=${CCLITE_DEMO_BACKEND_PORT:-8000}
stack=${CCLITE_STACK:-cc-lite}
start=$SECONDS
bold='' plain=''
if [ -t 1 ]; then bold=$(printf '\033[1m') plain=$(printf '\033[0m'); fi
phase() { printf '\n%s== %s%s (%ss)\n' "$bold" "$*" "$plain" $((SECONDS - start)); }

phase "Starting the guide's stack on Docker"
"$root/tests/harness/stack-up.sh"
stack_secret() { sed -n "s/^$1=//p" "$demo_root/stack.env"; }
pg_password=$(stack_secret POSTGRES_PASSWORD) redis_password=$(stack_secret REDIS_PASSWORD)
CCLITE_DEMO_QDRANT_KEY=$(stack_secret QDRANT_API_KEY)
export CCLITE_DEMO_QDRANT_KEY CCLITE_DEMO_QDRANT_URL=http://127.0.0.1:$qdrant_port

phase "Sample data"
python3 "$root/tests/harness/demo_data.py" seed
python3 "$root/tests/harness/demo_data.py" snapshot "$demo_root/before.json" >/dev/null
snapshot_at=$SECONDS
health() {
  echo "  GET http://127.0.0.1:$backend_port/health:"
  curl -sS "http://127.0.0.1:$backend_port/health" | python3 -c 'import json,sys; print("  " + json.dumps(json.load(sys.stdin)))'
}
health

# The operator's directory, as typed there; the demo's settings and secrets come as extra vars
# from a 0600 file (they win over the starter's vault placeholders).
vars=$demo_root/demo-vars.yml
(umask 077 && cat >"$vars" <<VARS
backup_root: $demo_root/backups
backup_metrics_dir: ""
qdrant_backup_url: $CCLITE_DEMO_QDRANT_URL
vault_postgresql_password: "$pg_password"
vault_redis_password: "$redis_password"
vault_qdrant_api_key: "$CCLITE_DEMO_QDRANT_KEY"
dr_health_url: http://127.0.0.1:$backend_port/health
VARS
)
if [ "$stack" != cc-lite ]; then
  cat >>"$vars" <<VARS
postgresql_backup_container: $stack-postgres
redis_backup_container: $stack-redis
dr_datastore_containers: {postgresql: $stack-postgres, redis: $stack-redis, qdrant: $stack-qdrant}
dr_app_containers: [$stack-backend]
VARS
fi
export ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ANSIBLE_DISPLAY_SKIPPED_HOSTS=false \
  ANSIBLE_DISPLAY_OK_HOSTS=false ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-0} ANSIBLE_DEPRECATION_WARNINGS=false
# One phase per playbook: its warnings and failures, then its summary table (from the run log
# the report role writes; the callback hides ok tasks). list.yml writes no log: its listing is
# the one task shown. dr.yml's own short summary (each step, the recovery time and point) comes
# last: the table's lines are wide.
run_kind() {
  local kind=$1 rc log task=''
  shift
  case $kind in
    list) task='Show the backups' ;;
    dr) task='cclite.backup.dr : Show the recovery' ;;
  esac
  set +e
  (
    cd "$root/examples/workstation"
    [ -z "$task" ] || export ANSIBLE_DISPLAY_OK_HOSTS=true
    ansible-playbook "$kind.yml" -e "@$vars" "$@"
  ) >"$demo_root/$kind.out" 2>&1
  rc=$?
  set -e
  phase "cd examples/workstation && ansible-playbook $kind.yml${*:+ $*}  (exit status $rc)"
  if [ "$kind" != list ]; then
    # Without the ok tasks' results (shown only for the one task below).
    awk '/^ok: \[.*\{$/ { skip = 1 } skip { if (/^}$/) skip = 0; next } !/^ok: \[/' "$demo_root/$kind.out" |
      grep -v -e '^$' -e '^PLAY \[' -e '^TASK \[' -e '^PLAY RECAP' -e '^localhost *: ok=' -e '^included: ' \
        -e '^changed: \[' | sed 's/^/  /' || true
    log=$(find "$demo_root/backups/logs" -name "${kind}_*.log" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)
    [ -z "$log" ] || sed 's/^/  /' "$log"
  fi
  if [ -n "$task" ]; then
    [ "$kind" = list ] || echo
    sed -n "/^TASK \[$task\]/,/^}/p" "$demo_root/$kind.out" | sed -n 's/^ *"\(.*\)",\{0,1\}$/  \1/p'
  fi
  if [ "$rc" != 0 ]; then
    echo "demo: ERROR: ansible-playbook $kind.yml failed; full output in $demo_root/$kind.out" >&2
    exit "$rc"
  fi
}
run_kind backup
run_kind verify
run_kind list

phase "A disaster: the data is dropped in all three stores"
python3 "$root/tests/harness/demo_data.py" lose
health || true

# The guide's Scenario 1 (complete loss): the newest complete backup set, the application
# stopped around the restores, health checked, recovery time and point measured.
run_kind dr -e restore_confirm=true

phase "The data, checked back against before the disaster"
python3 "$root/tests/harness/demo_data.py" check "$demo_root/before.json" $((SECONDS - snapshot_at + 1))
health
curl -fsS -o /dev/null "http://127.0.0.1:$backend_port/health" || { echo "demo: ERROR: /health is not OK" >&2; exit 1; }

phase "The backup tree ($demo_root/backups)"
find "$demo_root/backups" -mindepth 1 \( -type l -printf '%M %10s  %p -> %l\n' \) -o -printf '%M %10s  %p\n' |
  sed "s|$demo_root/backups/||" | sort -k3
phase "Demo done in $((SECONDS - start))s. The stack keeps running: curl http://127.0.0.1:$backend_port/health; make demo-clean removes it"
