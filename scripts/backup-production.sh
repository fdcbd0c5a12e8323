#!/usr/bin/env bash
# The guide's backup-production.sh: back up PostgreSQL, Redis and Qdrant (playbooks/backup.yml).
# Environment: BACKUP_DIR RETENTION_DAYS REDIS_PASSWORD QDRANT_PORT BACKUP_WEBHOOK_URL AWS_S3_BUCKET
# Exit status: 0 when every backup succeeded, 1 otherwise.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cclite_playbook backup "$@" || exit 1
