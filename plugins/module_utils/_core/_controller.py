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
  module runs on the controller (local connection, ``delegate_to: localhost``) and synchronously.
- the *reader* of this module's stdout (the worker, or sshd's session): when stdout is a pipe
  whose reader is gone (``poll`` reports ``POLLERR``), nobody will ever read the result. Over
  SSH this fires when the session closes; a worker that outlives its ansible-playbook keeps an
  SSH session open, so on a remote host the run's end is seen only once the worker ends.
- the *heartbeat* (:class:`Heartbeat`): a module run in the background (``async``, as the
  ``cclite.backup.backup_job`` action runs every backup and restore of the roles) is detached
  (a ``nohup`` shell in the background) and has neither sign above. The action creates ``<progress_file>.alive``
  (0600) before it starts the module and touches it at each poll; its own worker, which survives
  the kill like any, watches its ansible-playbook (its parent) and removes the file once that
  ended. The module watches the file when it existed at its start: gone means the run ended;
  not touched for :data:`HEARTBEAT_TIMEOUT` seconds means its controller vanished (a machine
  that went down, a worker killed too) and counts as ended as well. The file names the
  ansible-playbook process (its PID, its start, its machine's boot and PID namespace): a module
  on the controller's own machine and namespace watches that process itself, as closely as a
  synchronous one; elsewhere the run's end is seen once the worker removed the file (within
  about a second of the kill: a backup whose last check came before that is published). A run that merely started a
  job (a consistent set's ``mode: start``) and is killed before a task polls it again is seen
  only by that timeout.

:class:`Watch` checks both every :data:`INTERVAL` seconds in a thread; once the run is gone it
kills this process's children (the dump stops at once) and :meth:`Watch.check`, called right
before the rename and before ``latest`` moves, raises :class:`RunGone`. A restore checks the
same way right before its swap (the load is killed, the staging undone, nothing changed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import stat
import threading
import time

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError

INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 120.0  # seconds without a touch after which the run counts as gone


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


def machine() -> dict[str, str]:
    """This machine's boot and PID namespace: a PID means the same process only where both match."""
    out = {}
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            out["boot_id"] = handle.read().strip()
        out["pid_ns"] = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return out


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """The ``.alive`` file the backup_job action keeps touching while its run lives;
    ``controller`` (PID, start): its ansible-playbook, when it runs where this module does."""

    path: str
    timeout: float = HEARTBEAT_TIMEOUT
    controller: tuple[int, int] | None = None

    def gone(self) -> str | None:
        """Why the run counts as ended, or ``None`` while the file is there and fresh."""
        if self.controller is not None:
            own = proc_stat(self.controller[0])
            if own is None or own.state in ("Z", "X") or own.started != self.controller[1]:
                return "its ansible-playbook process (pid %d) ended" % self.controller[0]
        try:
            touched = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return "its backup_job task removed the heartbeat %s: its ansible-playbook process ended" % self.path
        except OSError:
            return None  # unreadable for a moment: not a sign either way
        if time.time() - touched > self.timeout:
            return "nothing touched the heartbeat %s for %d s: its controller is gone" % (self.path, self.timeout)
        return None


def heartbeat_of(path: str | None, timeout: float = HEARTBEAT_TIMEOUT) -> Heartbeat | None:
    """The heartbeat at ``path`` (``_progress.alive_file()``: there when the module started), or
    ``None``; with the controller it names when that runs on this machine, in this namespace."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            said = json.load(handle)
        here = machine()
        same = bool(here) and all(said.get(k) == v for k, v in here.items())
        controller = (int(said["pid"]), int(said["started"])) if same and said.get("pid") else None
        seen = proc_stat(controller[0]) if controller else None
        if seen is None or controller is None or seen.started != controller[1]:
            controller = None  # not visible from here (hidepid, another user): the file alone
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        controller = None  # an empty or older heartbeat: the file alone
    return Heartbeat(path, timeout, controller)


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

    def __init__(
        self, interval: float = INTERVAL, controller: Controller | None = None, stdout: int = 1, heartbeat: Heartbeat | None = None,
    ) -> None:
        self.interval = interval
        self.controller = controller
        self.stdout = stdout
        self.heartbeat = heartbeat
        self.reason: str | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def gone(self) -> str | None:
        if self.reason is None:
            if reader_gone(self.stdout):
                self.reason = "nobody reads its result any more (the ansible-playbook run or its connection ended)"
            else:
                beat = self.heartbeat.gone() if self.heartbeat is not None else None
                self.reason = beat or (self.controller.gone() if self.controller is not None else None)
        return self.reason

    def check(self, what: str, job: str = "backup", outcome: str = "nothing was published") -> None:
        """Raise :class:`RunGone` if the run ended: ``what`` would have happened next."""
        reason = self.gone()
        if reason is not None:
            raise RunGone("the Ansible run that started this %s ended (%s); %s was not done and %s" % (job, reason, what, outcome))

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
