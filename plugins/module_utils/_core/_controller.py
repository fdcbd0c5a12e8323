# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether the Ansible run that started this module is still there, so that a backup is never
published after its run died (issue 18.5).

ansible-core runs each task in a worker process forked from ``ansible-playbook`` that calls
``setsid()`` (``WorkerProcess._detach``); the worker starts ``/bin/sh -c 'python AnsiballZ_x.py'``
(local connection) or ``ssh`` (remote). A SIGKILL to ansible-playbook's process group therefore
misses the worker and this module: without a check the module finishes, renames its backup into
place and moves ``latest`` after the run exited -9. Two signs tell that the run is gone:

- the *controller*: walking up from this process, a session leader running an Ansible command
  whose command line is its parent's is an ansible-core worker, and that parent is
  ansible-playbook (past ``sudo``, which ``become`` puts between them); such a worker whose
  parent is something else was reparented: its ansible-playbook ended before the module looked. When it has
  exited (gone, a zombie, or the worker was reparented) the run is over. Found only when the
  module runs on the controller (local connection, ``delegate_to: localhost``); an ``async``
  task (daemonized on purpose) has no such ancestor and is not watched.
- the *reader* of this module's stdout (the worker, or sshd's session): when stdout is a pipe
  whose reader is gone (``poll`` reports ``POLLERR``), nobody will ever read the result. Over
  SSH this fires when the session closes; a worker that outlives its ansible-playbook keeps an
  SSH session open, so on a remote host the run's end is seen only once the worker ends.

:class:`Watch` checks both every :data:`INTERVAL` seconds in a thread; once the run is gone it
kills this process's children (the dump stops at once) and :meth:`Watch.check`, called right
before the rename and before ``latest`` moves, raises :class:`RunGone`.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import stat
import threading

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError

INTERVAL = 0.2


class RunGone(BackupError):
    """The Ansible run that started this module ended; nothing is published."""


@dataclasses.dataclass(frozen=True)
class ProcStat:
    ppid: int
    sid: int
    state: str
    started: int  # clock ticks after boot: a reused PID is another process


def proc_stat(pid: int) -> ProcStat | None:
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return ProcStat(int(fields[1]), int(fields[3]), fields[0], int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _is_ansible(cmdline: bytes) -> bool:
    """An Ansible command line: ``ansible-playbook ...`` or ``python .../ansible-playbook ...``
    (not a ``sudo`` whose later arguments name an AnsiballZ file)."""
    return any(os.path.basename(arg).startswith(b"ansible") for arg in cmdline.split(b"\0")[:2])


@dataclasses.dataclass(frozen=True)
class Controller:
    """The ansible-playbook process (``pid``, ``started``) and its task worker (``worker``)."""

    pid: int
    started: int
    worker: int

    def gone(self) -> str | None:
        """Why the controller counts as ended, or ``None`` while it runs."""
        own = proc_stat(self.pid)
        worker = proc_stat(self.worker)
        if own is None or own.state in ("Z", "X") or own.started != self.started or worker is None or worker.ppid != self.pid:
            return "its ansible-playbook process (pid %d) ended" % self.pid if self.pid else "its ansible-playbook process ended"
        return None


def find_controller(pid: int | None = None, depth: int = 64) -> Controller | None:
    """The controller above ``pid`` (default: this process), or ``None`` when there is none."""
    current = os.getpid() if pid is None else pid
    for _level in range(depth):
        here = proc_stat(current)
        if here is None or here.ppid < 1:
            return None
        if here.sid == current and current != os.getpid() and _is_ansible(_cmdline(current)):
            parent = proc_stat(here.ppid)
            if parent is not None and _cmdline(here.ppid) == _cmdline(current):
                return Controller(here.ppid, parent.started, current)
            return Controller(0, 0, current)  # a worker reparented: its ansible-playbook already ended
        if here.ppid == 1:
            return None
        current = here.ppid
    return None


def reader_gone(fd: int = 1) -> bool:
    """Whether ``fd`` is a pipe nobody reads any more (Linux reports ``POLLERR`` on its write end)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, 0)
        return any(events & (select.POLLERR | select.POLLNVAL) for _fd, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def kill_children() -> int:
    """SIGKILL every child of this process (the stages of a running pipeline); how many."""
    me, killed = os.getpid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = proc_stat(int(name))
            if found is not None and found.ppid == me and found.state not in ("Z", "X"):
                try:
                    os.kill(int(name), signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
    return killed


class Watch:
    """Watches the run from a thread while a backup is made; see the module docstring."""

    def __init__(self, interval: float = INTERVAL, controller: Controller | None = None, stdout: int = 1) -> None:
        self.interval = interval
        self.controller = controller
        self.stdout = stdout
        self.reason: str | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def gone(self) -> str | None:
        if self.reason is None:
            if reader_gone(self.stdout):
                self.reason = "nobody reads its result any more (the ansible-playbook run or its connection ended)"
            elif self.controller is not None:
                self.reason = self.controller.gone()
        return self.reason

    def check(self, what: str) -> None:
        """Raise :class:`RunGone` if the run ended: ``what`` would have happened next."""
        reason = self.gone()
        if reason is not None:
            raise RunGone("the Ansible run that started this backup ended (%s); %s was not done and nothing was published" % (reason, what))

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            if self.gone() is not None:
                kill_children()
                return

    def __enter__(self) -> "Watch":
        if self.controller is None:
            self.controller = find_controller()
        self._thread = threading.Thread(target=self._run, name="cclite-run-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
