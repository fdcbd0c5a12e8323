#!/usr/bin/env bash
# The guide's backup-cron.sh: install | uninstall | status | test (playbooks/schedule.yml).
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
case ${1:-} in
  install|uninstall|status|test) cclite_playbook schedule -e "schedule_action=$1" || exit 1 ;;
  *) echo "Usage: backup-cron.sh install|uninstall|status|test" >&2; exit 2 ;;
esac
