#!/usr/bin/env bash
# ansible-test units from a copy of the checkout; arguments go to ansible-test.
set -euo pipefail
exec "$(dirname "$0")/ansible-test.sh" units "$@"
