#!/usr/bin/env bash
# Run `ansible-test COMMAND --local --python 3.11 ARGS...` from a fresh collection tree in a
# temporary folder (see collection-tree.sh); its tests/output/ is copied back to the
# checkout. sanity.sh, units.sh and integration.sh call this.
# With no unit tests / integration targets yet, units and integration are skipped with a
# warning; REQUIRE_TESTS=1 turns that into a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command=$1
shift
[ -d "$root/.venv/bin" ] && PATH=$root/.venv/bin:$PATH
# ansible-test sets its own collection path; the checkout's symlinked one would confuse it.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

none=""
case $command in
  units) [ -n "$(find "$root/tests/unit" -name 'test_*.py' 2>/dev/null | head -n 1)" ] || none="unit tests under tests/unit" ;;
  integration) [ -n "$(find "$root/tests/integration/targets" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | head -n 1)" ] ||
    none="integration targets under tests/integration/targets" ;;
esac
if [ -n "$none" ]; then
  echo "WARNING: no $none yet: skipping ansible-test $command" >&2
  [ "${REQUIRE_TESTS:-0}" = 1 ] && exit 1
  exit 0
fi

# ansible-test bootstraps pip in its virtualenvs with get-pip.py from a host that cannot
# be reached here. It runs a cached copy when one exists: seed a stand-in that uses
# ensurepip, then installs the requested pip from the package index.
pip_version=$(python -c 'import ansible_test, os, re
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip=.([0-9.]+).", src).group(1))')
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -f "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip" <<'PY'
"""Offline stand-in for get-pip.py (written by cclite.backup tests/harness/ansible-test.sh)."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
fi

# Sanity runs build shared virtualenvs under ~/.ansible/test and trip over each other when
# run at the same time: one at a time per user.
if [ "$command" = sanity ]; then
  exec 9>"$(dirname "$get_pip")/cclite-sanity.lock"
  flock -n 9 || { echo "waiting for another ansible-test sanity run to finish" >&2 && flock 9; }
  # A race outside this lock can leave a venv marked complete but without python: drop it.
  for v in "$HOME"/.ansible/test/venv/*/*/*/; do
    if [ -e "$v/marker.txt" ] && [ ! -e "$v/bin/python" ]; then rm -rf "$v"; fi
  done
fi

tree=$(mktemp -d "${TMPDIR:-/tmp}/cclite-backup-ansible-test.XXXXXX")
trap 'rm -rf "$tree"' EXIT
coll=$("$here/collection-tree.sh" "$tree")
echo "+ ansible-test $command --local --python 3.11 $* (in $coll)" >&2
rc=0
(cd "$coll" && ansible-test "$command" --local --python 3.11 "$@") || rc=$?
# Keep the reports (junit, coverage, ...) in the checkout's ignored tests/output/.
if [ -d "$coll/tests/output" ]; then
  mkdir -p "$root/tests/output"
  cp -a "$coll/tests/output/." "$root/tests/output/"
fi
exit "$rc"
