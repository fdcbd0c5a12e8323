# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One run per store and host at a time.

An advisory ``flock`` on a file in the store's directory. The kernel drops the lock when the
holding process dies, so a killed run never blocks later ones. The holder writes who it is
into the file, so a run that gives up can name it.
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
