#!/usr/bin/env bash
# The guide's restore-db.sh, over playbooks/restore.yml and list.yml.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

usage() {
  cat <<'TXT'
Usage: restore-db.sh [OPTIONS]

Multi-database restore with safety prompts.

  -p, --postgres <file>    Restore PostgreSQL from <file> (or latest.sql.gz)
  -r, --redis <file>       Restore Redis from <file> (or latest.rdb.gz)
  -q, --qdrant <file>      Restore Qdrant from <file> (or latest.tar.gz)
  -a, --all                Restore all from latest
  -l, --list               List available backups
  -y, --yes                Answer the safety prompt (for automation)
  -h, --help               Show help
  -- ARGS                  Pass ARGS to ansible-playbook (for example -e @vars.yml)

Environment: BACKUP_DIR, REDIS_PASSWORD, QDRANT_PORT (see backup-production.sh).
TXT
}

extra=()
stores=()
yes=false
action=""
while [ $# -gt 0 ]; do
  case $1 in
    -p|--postgres) [ $# -ge 2 ] || { usage >&2; exit 2; }; extra+=(-e "restore_postgresql_file=$2"); stores+=(postgresql); action=restore; shift 2 ;;
    -r|--redis) [ $# -ge 2 ] || { usage >&2; exit 2; }; extra+=(-e "restore_redis_file=$2"); stores+=(redis); action=restore; shift 2 ;;
    -q|--qdrant) [ $# -ge 2 ] || { usage >&2; exit 2; }; extra+=(-e "restore_qdrant_file=$2"); stores+=(qdrant); action=restore; shift 2 ;;
    -a|--all) action=restore; shift ;;
    -l|--list) action=list; shift ;;
    -y|--yes) yes=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra+=("$@"); break ;;
    *) echo "restore-db.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

case $action in
  list) cclite_playbook list "${extra[@]}" || exit 1 ;;
  restore)
    what=${stores[*]:-all stores from latest}
    if [ "$yes" != true ]; then
      echo "WARNING: this replaces the current data of: $what"
      echo "A safety backup of the current data is taken first."
      read -r -p "Type 'yes' to continue: " answer
      [ "$answer" = yes ] || { echo "Restore cancelled."; exit 1; }
    fi
    cclite_playbook restore -e restore_confirm=true "${extra[@]}" || exit 1 ;;
  *) usage; exit 2 ;;
esac
