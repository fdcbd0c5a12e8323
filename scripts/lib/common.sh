# shellcheck shell=bash
# Shared by the guide's commands in scripts/: map the guide's environment variables to the
# collection's variables and run a playbook. No backup logic lives here.
#
#   BACKUP_DIR          -> backup_root               RETENTION_DAYS  -> backup_retention_days
#   MAX_AGE_HOURS       -> backup_max_age_hours      REDIS_PASSWORD  -> redis_backup_login_password
#   QDRANT_PORT         -> qdrant_backup_url         BACKUP_WEBHOOK_URL -> backup_webhook_url
#   AWS_S3_BUCKET       -> backup_s3_bucket          AWS_* credentials: read by boto3 itself
#   CCLITE_INVENTORY    inventory to use (default: this host, see inventories/localhost.yml)
#
# Secrets go into a 0600 vars file passed with -e @file, never onto a command line.

set -euo pipefail

CCLITE_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ -x "$CCLITE_HOME/.venv/bin/ansible-playbook" ] && PATH=$CCLITE_HOME/.venv/bin:$PATH
if [ -z "${ANSIBLE_COLLECTIONS_PATH:-}" ] && [ -d "$CCLITE_HOME/.collections" ]; then
  export ANSIBLE_COLLECTIONS_PATH=$CCLITE_HOME/.collections
fi

cclite_vars_file() {
  local file
  file=$(mktemp)
  chmod 0600 "$file"
  python3 - "$file" <<'PY'
import json, os, sys
env = os.environ
out = {}
def put(name, var, convert=str):
    if env.get(name):
        out[var] = convert(env[name])
put("BACKUP_DIR", "backup_root")
put("RETENTION_DAYS", "backup_retention_days", int)
put("MAX_AGE_HOURS", "backup_max_age_hours", float)
put("REDIS_PASSWORD", "redis_backup_login_password")
put("BACKUP_WEBHOOK_URL", "backup_webhook_url")
put("AWS_S3_BUCKET", "backup_s3_bucket")
if env.get("QDRANT_PORT"):
    out["qdrant_backup_url"] = "http://localhost:%d" % int(env["QDRANT_PORT"])
with open(sys.argv[1], "w") as handle:
    json.dump(out, handle)
PY
  echo "$file"
}

cclite_playbook() {
  local playbook=$1
  shift
  local vars status
  vars=$(cclite_vars_file)
  status=0
  ansible-playbook -i "${CCLITE_INVENTORY:-$CCLITE_HOME/inventories/localhost.yml}" \
    "cclite.backup.$playbook" -e "@$vars" "$@" || status=$?
  rm -f "$vars"
  return "$status"
}
