#!/usr/bin/env bash
# `make ee`: run the shipped backup, verify and restore playbooks INSIDE the execution
# environment cclite-backup-ee:test (build-ee.sh) the way AWX does, with ansible-runner's
# process isolation in a container, against the guide's stack (stack-up.sh) filled with sample
# data; lose the data, restore, and compare every row, key (with its TTL) and point with before.
# The EE reaches the datastore containers through the Docker socket (connection
# community.docker.docker_api); the modules run inside them, in host mode.
# Fixed container names (cc-lite-*): run it under flock /tmp/cclite-docker-tests.lock beside other tests.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$root/.venv/bin:$PATH
image=${EE_IMAGE:-cclite-backup-ee:test}
export CCLITE_DEMO_ROOT=${CCLITE_DEMO_ROOT:-/tmp/cclite-ee}
export CCLITE_DEMO_QDRANT_PORT=${CCLITE_DEMO_QDRANT_PORT:-16337} CCLITE_DEMO_BACKEND_PORT=${CCLITE_DEMO_BACKEND_PORT:-18000}
pdd=$CCLITE_DEMO_ROOT/runner
start=$SECONDS

"$root/tests/harness/stack-up.sh"
cleanup() { "$root/tests/harness/demo-clean.sh" --quiet || true; }
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT

stack_secret() { sed -n "s/^$1=//p" "$CCLITE_DEMO_ROOT/stack.env"; }
CCLITE_DEMO_QDRANT_KEY=$(stack_secret QDRANT_API_KEY)
export CCLITE_DEMO_QDRANT_KEY CCLITE_DEMO_QDRANT_URL=http://127.0.0.1:$CCLITE_DEMO_QDRANT_PORT
python3 "$root/tests/harness/demo_data.py" seed
python3 "$root/tests/harness/demo_data.py" snapshot "$CCLITE_DEMO_ROOT/before.json" >/dev/null
snapshot_at=$SECONDS

# ansible-runner's private data directory, as AWX lays it out for a job.
mkdir -p "$pdd/project" "$pdd/inventory" "$pdd/env"
for p in backup verify restore; do
  printf -- '---\n- name: The shipped %s playbook\n  ansible.builtin.import_playbook: cclite.backup.%s\n' "$p" "$p" >"$pdd/project/$p.yml"
done
cat >"$pdd/inventory/hosts.yml" <<'YAML'
---
# The stack's containers as managed hosts, reached through the Docker socket mounted into the EE.
cclite_backup:
  vars:
    ansible_connection: community.docker.docker_api
    ansible_python_interpreter: /usr/bin/python3
    backup_root: /var/backups/cc-lite
    backup_metrics_dir: ""
  hosts:
    cc-lite-postgres:
      backup_stores: [postgresql, qdrant]
      postgresql_backup_mode: host
      postgresql_backup_login_host: 127.0.0.1
      qdrant_backup_url: http://cc-lite-qdrant:6333
    cc-lite-redis:
      backup_stores: [redis]
      redis_backup_mode: host
      # An RDB restore restarts the server, which is this container's main process.
      redis_backup_method: logical
YAML
extravars() {
  (umask 077 && cat >"$pdd/env/extravars" <<YAML
postgresql_backup_login_password: "$(stack_secret POSTGRES_PASSWORD)"
redis_backup_login_password: "$(stack_secret REDIS_PASSWORD)"
qdrant_backup_api_key: "$CCLITE_DEMO_QDRANT_KEY"
$*
YAML
  )
}
# The EE's user (1000) reads the job's files and writes its artifacts, as in AWX.
sock_gid=$(stat -c %g /var/run/docker.sock)

job() {
  local playbook=$1 rc
  echo "== ansible-runner run --process-isolation --container-image $image -p $playbook ($((SECONDS - start))s)"
  chown -R 1000 "$pdd"
  set +e
  ansible-runner run "$pdd" -p "$playbook" --ident "${playbook%.yml}" --rotate-artifacts 0 \
    --process-isolation --process-isolation-executable docker --container-image "$image" \
    --container-volume-mount /var/run/docker.sock:/var/run/docker.sock \
    --container-option="--group-add=$sock_gid" --container-option=--network=cc-lite-demo \
    >"$CCLITE_DEMO_ROOT/$playbook.out" 2>&1 </dev/null
  rc=$?
  set -e
  tr -d '\r' <"$CCLITE_DEMO_ROOT/$playbook.out" | sed 's/\x1b\[[0-9;]*m//g' |
    sed -n '/TASK \[cclite.backup.report : Show the summary table\]/,/^}/p' | sed -n 's/^ *"\(.*\)",\{0,1\}$/  \1/p'
  if [ "$rc" != 0 ]; then
    tail -n 60 "$CCLITE_DEMO_ROOT/$playbook.out" >&2
    echo "ee: ERROR: $playbook failed in the execution environment (exit status $rc); output in $CCLITE_DEMO_ROOT/$playbook.out" >&2
    exit 1
  fi
  # The job really ran inside the EE: ansible-runner wrote the container's command line.
  grep -q "$image" "$pdd/artifacts/${playbook%.yml}/command" ||
    { echo "ee: ERROR: $playbook did not run in $image" >&2; exit 1; }
}

extravars
job backup.yml
job verify.yml
grep -q 'All backups are healthy!' "$CCLITE_DEMO_ROOT/verify.yml.out" ||
  { echo "ee: ERROR: verify.yml did not say 'All backups are healthy!'" >&2; exit 1; }
echo "== The disaster"
python3 "$root/tests/harness/demo_data.py" lose
extravars "restore_confirm: true"
job restore.yml
echo "== The data, checked back"
python3 "$root/tests/harness/demo_data.py" check "$CCLITE_DEMO_ROOT/before.json" $((SECONDS - snapshot_at + 1))
echo "== ee: backup, verify and restore passed inside $image in $((SECONDS - start))s"
