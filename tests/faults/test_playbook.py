# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A whole ansible-playbook run killed (SIGKILL to its process group, as a terminal's or cron's
kill does) during a PostgreSQL backup: ansible-core's worker calls setsid() and survives, so the
module must notice its run ended; nothing may be published after the kill, and nothing of the run
may live on (issue 18.5). Twice: the module called by the playbook, and the role as backup.yml
runs it, where the cclite.backup.backup_job action runs the module in the background
(async_wrapper daemonizes it) and only the action's heartbeat tells it the run ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t

from tests.faults.conftest import PG_PASSWORD, Postgres
from tests.faults.harness import FIGURES, RANDOM, TREE, TRIALS, _state, descendants, files, partials

PLAYBOOK = """\
- name: Back up one database
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Back up the database
      cclite.backup.postgresql_backup:
        database: app
        mode: host
        login_host: 127.0.0.1
        login_port: "{{ port }}"
        login_password: "{{ lookup('ansible.builtin.env', 'FAULTS_PG_PASSWORD') }}"
        backup_root: "{{ root }}"
"""

ROLE_PLAYBOOK = """\
- name: Back up one database through the role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Back up the database
      ansible.builtin.include_role:
        name: cclite.backup.postgresql_backup
      vars:
        postgresql_backup_databases: [app]
        postgresql_backup_mode: host
        postgresql_backup_login_host: 127.0.0.1
        postgresql_backup_login_port: "{{ port }}"
        postgresql_backup_login_password: "{{ lookup('ansible.builtin.env', 'FAULTS_PG_PASSWORD') }}"
        postgresql_backup_root: "{{ root }}"

    - name: Fail when the backup failed (the role records failures instead)
      ansible.builtin.assert:
        that: backup_run_results | selectattr('status', 'eq', 'failed') | list | length == 0
        fail_msg: "{{ backup_run_results | to_json }}"
"""


def _start(tmp: str, postgres: Postgres, root: str, text: str = PLAYBOOK) -> subprocess.Popen:
    playbook = os.path.join(tmp, "backup.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(text)
    # the run's own temp and async folders: its background processes name them on their command line
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=TREE, FAULTS_PG_PASSWORD=PG_PASSWORD, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_REMOTE_TMP=os.path.join(tmp, "remote-tmp"), ANSIBLE_ASYNC_DIR=os.path.join(tmp, "async"))
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return subprocess.Popen(
        [ansible_playbook, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-e", "port=%d" % postgres.port, "-e", "root=%s" % root, playbook],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp, env=env,
    )


def _published(root: str) -> dict[str, str]:
    return files(os.path.join(root, "postgresql"))


def _background(marker: str) -> list[tuple[int, str]]:
    """The run's processes outside its process tree (async_wrapper's daemon, the module and what
    it runs): those whose command line names ``marker``, the run's temp folder, and theirs."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                named = marker.encode() in handle.read()
            if named and _state(int(name)) not in ("Z", "X", ""):
                with open("/proc/%s/comm" % name, encoding="utf-8") as handle:
                    found += [(int(name), handle.read().strip())] + descendants(int(name))
        except (OSError, ValueError):
            continue
    return sorted(set(found))


def _run_processes(proc: subprocess.Popen, tmp: str) -> list[tuple[int, str]]:
    """Every process of the run: its tree (worker, sh, the module, pg_dump, the compressor) and
    what it started in the background."""
    return sorted(set(descendants(proc.pid) + _background(os.path.join(tmp, "remote-tmp"))))


def _wait_for(proc: subprocess.Popen, tmp: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(comm == what for _pid, comm in _run_processes(proc, tmp)):
            return
        time.sleep(0.01)
    raise AssertionError("the backup never started: %s" % (proc.communicate()[0] or b"").decode(errors="replace")[-2000:])


def test_killed_playbook_publishes_nothing_and_leaves_nothing_running(postgres: Postgres, tmp_path: t.Any) -> None:
    _kill_trials(postgres, str(tmp_path), PLAYBOOK, "playbook killed")


def test_killed_playbook_through_the_role_publishes_nothing_and_leaves_nothing_running(postgres: Postgres, tmp_path: t.Any) -> None:
    _kill_trials(postgres, str(tmp_path), ROLE_PLAYBOOK, "playbook killed through the role (module in the background)")


def _kill_trials(postgres: Postgres, tmp: str, text: str, label: str) -> None:
    root = os.path.join(tmp, "root")
    first = _start(tmp, postgres, root, text)
    out = first.communicate(timeout=300)[0].decode(errors="replace")
    assert first.returncode == 0, out[-3000:]
    started = time.monotonic()
    for trial in range(TRIALS):
        run = _start(tmp, postgres, root, text)
        _wait_for(run, tmp, "pg_dump")
        if trial == 0:
            started = time.monotonic()
        time.sleep(RANDOM.uniform(0, 0.3))
        tree = _run_processes(run, tmp)
        at_kill = _published(root)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert run.returncode == -9
        # a backup renamed before the run exited is no fault (ansible-playbook on a busy machine
        # can take a few tenths of a second to die once killed; the module checked while it ran)
        before = _published(root)
        if [n for n in set(before) - set(at_kill) if not n.startswith("latest")]:
            FIGURES.add("%s: trials whose backup was renamed between the kill and the run's exit" % label)
        # the module checks every 0.2 s (in the background: the worker removes its heartbeat within
        # 0.1 s) and kills its pipeline; ansible-core's worker ends once its module has returned
        # (on a busy machine that can take a second more), async_wrapper's timer within 5 s of its start
        killed = time.monotonic()
        survivors = tree
        while survivors and time.monotonic() - killed < 5.0:
            time.sleep(0.05)
            survivors = [(pid, comm) for pid, comm in tree if _state(pid) not in ("Z", "X", "")]
        ended = time.monotonic() - killed
        if not survivors and ended > 1.0:
            FIGURES.add("%s: trials whose processes took 1-5 s to end" % label)
        time.sleep(max(0.0, 3.0 - ended))  # an unwatched module finishes a backup of this size in about a second
        late = sorted(set(_published(root)) - set(before))
        FIGURES.add("%s (SIGKILL to its process group): processes of the run alive 5 s later" % label, len(survivors))
        FIGURES.add("%s: backups published after the run exited -9" % label, len([n for n in late if not n.startswith("latest")]))
        for pid, _comm in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        now = _published(root)
        backups = {n: v for n, v in now.items() if not n.startswith("latest")}
        # latest may follow a backup renamed before the run exited (it moves right after the rename)
        assert late == [] and backups == {n: v for n, v in before.items() if not n.startswith("latest")}, \
            "published after the run was killed: %s" % late
        assert all(v[3:] in before for n, v in now.items() if n.startswith("latest")), now
        assert survivors == [], "processes of the killed run still alive: %s" % survivors
        if text == ROLE_PLAYBOOK:
            assert os.listdir(os.path.join(root, ".progress")) == []  # status file and heartbeat removed
    FIGURES.add("%s: trials" % label, TRIALS)
    assert time.monotonic() - started < 600
    # what the killed runs left behind is removed by the next run, which succeeds
    again = _start(tmp, postgres, root, text)
    out = again.communicate(timeout=300)[0].decode(errors="replace")
    assert again.returncode == 0, out[-3000:]
    assert partials(os.path.join(root, "postgresql")) == []
    assert PG_PASSWORD not in out
