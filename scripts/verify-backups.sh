#!/usr/bin/env bash
# The guide's verify-backups.sh: check every backup (playbooks/verify.yml). Prints
# "All backups are healthy!" and exits 0 when all is well; exits 1 and lists each problem
# otherwise. Environment: BACKUP_DIR MAX_AGE_HOURS (and those of backup-production.sh).
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
if cclite_playbook verify "$@"; then
  echo "All backups are healthy!"
else
  exit 1
fi
