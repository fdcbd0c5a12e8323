# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One run per store and host at a time, and readers that never change the store.

An advisory ``flock`` on a file in the store's directory. The kernel drops the lock when the
holding process dies, so a killed run never blocks later ones. The holder writes who it is
into the file, so a run that gives up can name it.

Restore drills only read a store's backups (their target is throwaway): they hold
:class:`ReadersLock` shared instead, so a backup of the store never waits for a drill; the only
thing a reader must be kept from is retention deleting the backup it reads, so retention takes
that lock exclusively without waiting before it deletes, and defers to the next run when a
reader holds it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import LockTimeout

LOCK_NAME = ".cclite-backup.lock"


def process_alive(pid: int) -> bool:
    """Whether a process still runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class StoreLock:
    def __init__(self, directory: str, store: str, purpose: str, timeout: float = 600.0, poll: float = 0.2) -> None:
        self.path = os.path.join(directory, LOCK_NAME)
        self.store = store
        self.purpose = purpose
        self.timeout = timeout
        self.poll = poll
        self._fd = -1

    def holder(self) -> dict[str, t.Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> "StoreLock":
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(self._timeout_message())
                time.sleep(self.poll)
        self._fd = fd
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def _timeout_message(self) -> str:
        info = self.holder()
        who = "pid %s on %s, running %s since %s" % (
            info.get("pid", "?"),
            info.get("host", "?"),
            info.get("purpose", "?"),
            info.get("since", "?"),
        )
        return (
            "another cclite.backup run holds the %s lock %s (%s); gave up after %g seconds. "
            "Wait for it to finish, or raise the lock timeout." % (self.store, self.path, who, self.timeout)
        )

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class ReadersLock:
    """The readers' lock of a store's directory (a ``flock`` on the directory itself, so no file
    is added to it): shared (readers wait, up to ``timeout``, only while retention deletes), or
    with ``exclusive`` taken without waiting (:meth:`acquire` returns whether it was free)."""

    def __init__(self, directory: str, exclusive: bool = False, timeout: float = 600.0, poll: float = 0.2) -> None:
        self.path = directory
        self.exclusive = exclusive
        self.timeout = timeout
        self.poll = poll
        self._fd = -1

    def acquire(self) -> bool:
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except BlockingIOError:
                if self.exclusive:
                    os.close(fd)
                    return False
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        "retention held %s for more than %g seconds while deleting old backups; try again, or raise "
                        "the lock timeout" % (self.path, self.timeout)
                    ) from None
                time.sleep(self.poll)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
