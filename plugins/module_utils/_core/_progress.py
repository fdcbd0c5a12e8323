# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress of a long backup or restore: a small status file the module rewrites as its bytes go by.

The ``backup_job`` action runs a backup or restore module asynchronously and reads this file
while the module works, to show a line per store and host (bytes so far, the expected size, the
rate, the time left). A consistent set waits for ``point_fixed`` in it: the moment the store's
point in time is fixed (pg_dump's snapshot taken, BGSAVE forked, Qdrant's snapshots made).

A consistent set also starts the modules with a hold file (``<progress_file>.hold``) beside it:
a module then prepares everything, says ``held`` and waits (:func:`hold`) right before fixing its
point until the file is gone, so the application is paused only for the instant of the fix.

When the action runs the module in the background it also keeps a heartbeat beside the file
(``<progress_file>.alive``, see ``_controller.Heartbeat``): :func:`alive_file` names it when it
was there at the start; a held module stops waiting once it is gone, and the module removes it
when it ends.

The file holds numbers and names only, never a secret. It is written 0600 through a temp file
and a rename (a reader never sees half a file), at most once per ``interval``, and removed when
the module ends. Writing it never fails the work: an error is remembered and the file left alone.

The writers of the data call the module-level functions (:func:`advance`, :func:`phase`,
:func:`point_fixed`), which do nothing unless the module activated a :class:`Progress`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
import typing as t

SCHEMA = 1
HOLD_TIMEOUT = 300.0  # seconds a held module waits for its release at most
ALIVE = ".alive"  # the backup_job action's heartbeat beside the file (_controller.Heartbeat)


class Progress:
    """The status of one module run, written to ``path``."""

    def __init__(
        self, path: str, store: str, action: str, target: str = "", interval: float = 1.0,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.store = store
        self.action = action
        self.target = target
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.phase_name = "starting"
        self.phase_started = self.started
        self.expected: int | None = None
        self.done = 0
        self.fixed_at: float | None = None  # epoch seconds
        self.fix_on_output = False
        self.hold_file: str | None = None  # a consistent set's: wait for its removal before the fix
        self.alive_file: str | None = None  # the backup_job action's heartbeat, when it made one
        self.held = False
        self.error: str | None = None
        self._written = float("-inf")
        self._lock = threading.Lock()

    def status(self) -> dict[str, t.Any]:
        now = self.clock()
        elapsed = max(now - self.phase_started, 0.0)
        rate = self.done / elapsed if elapsed > 0 else None
        left = None
        if rate and self.expected and self.done < self.expected:
            left = round((self.expected - self.done) / rate, 1)
        return {
            "schema": SCHEMA,
            "pid": os.getpid(),
            "store": self.store,
            "action": self.action,
            "target": self.target,
            "phase": self.phase_name,
            "bytes_done": self.done,
            "bytes_expected": self.expected,
            "rate_bytes_per_second": round(rate, 1) if rate is not None else None,
            "seconds_left": left,
            "phase_seconds": round(elapsed, 1),
            "seconds": round(now - self.started, 1),
            "held": self.held,
            "point_fixed": self.fixed_at is not None,
            "point_fixed_at": self.fixed_at,
            "updated": time.time(),
        }

    def set_phase(self, name: str, expected: int | None) -> None:
        with self._lock:
            self.phase_name = name
            self.expected = expected
            self.done = 0
            self.phase_started = self.clock()
            self._write()

    def advance(self, count: int) -> None:
        with self._lock:
            if self.fix_on_output and self.fixed_at is None:
                self.fixed_at = time.time()
                self._written = float("-inf")
            self.done += count
            if self.clock() - self._written >= self.interval:
                self._write()

    def point_fixed(self) -> None:
        with self._lock:
            if self.fixed_at is None:
                self.fixed_at = time.time()
                self._write()

    def hold(self, timeout: float = HOLD_TIMEOUT) -> None:
        """Say ``held``, then wait until the hold file is gone (at most ``timeout`` seconds: a
        playbook that died must not leave the backup waiting for ever; once the heartbeat is gone
        its run has ended and the module stops waiting)."""
        if not self.hold_file:
            return
        with self._lock:
            self.held = True
            self._write()
        deadline = self.clock() + timeout
        while os.path.lexists(self.hold_file) and self.clock() < deadline and not (self.alive_file and not os.path.lexists(self.alive_file)):
            time.sleep(0.01)
        with self._lock:
            self.held = False
            self.hold_file = None

    def _write(self) -> None:
        if self.error is not None:
            return
        self._written = self.clock()
        directory = os.path.dirname(self.path) or "."
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(self.path), suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: 0600 already
                    json.dump(self.status(), handle, sort_keys=True)
                os.rename(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            self.error = "cannot write the progress file %s: %s" % (self.path, exc.strerror or exc)

    def remove(self) -> None:
        for path in (self.path, self.alive_file):
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)


_ACTIVE: Progress | None = None
_METERS: list[list[int]] = []


def ensure_directory(path: str) -> None:
    """The status file's directory, made 0700 when missing (it may sit beside private data)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)


@contextlib.contextmanager
def reporting(path: str | None, store: str, action: str, target: str = "", interval: float = 1.0) -> t.Iterator[Progress | None]:
    """Activate a :class:`Progress` writing ``path`` for the duration of the block (``None``: no
    file, the hooks do nothing); the file is removed at the end, whatever happens."""
    global _ACTIVE  # pylint: disable=global-statement  # one module run, one status file
    if not path:
        yield None
        return
    progress = Progress(path, store, action, target, interval)
    if os.path.lexists(path + ".hold"):
        progress.hold_file = path + ".hold"
    if os.path.lexists(path + ALIVE):
        progress.alive_file = path + ALIVE
    try:
        ensure_directory(path)
    except OSError as exc:
        progress.error = "cannot make the directory of the progress file %s: %s" % (path, exc.strerror or exc)
    previous, _ACTIVE = _ACTIVE, progress
    try:
        progress.set_phase("starting", None)
        yield progress
    finally:
        _ACTIVE = previous
        progress.remove()


def alive_file() -> str | None:
    """The heartbeat the action keeps beside the status file, when there was one at the start."""
    return _ACTIVE.alive_file if _ACTIVE is not None else None


def advance(count: int) -> None:
    if _ACTIVE is not None:
        _ACTIVE.advance(count)


def phase(name: str, expected: int | None = None) -> None:
    if _ACTIVE is not None:
        _ACTIVE.set_phase(name, expected)


def holding() -> bool:
    """Whether a consistent set holds this module before its point is fixed."""
    return _ACTIVE is not None and bool(_ACTIVE.hold_file)


def hold() -> None:
    """Right before fixing the point: wait while a consistent set holds the module."""
    if _ACTIVE is not None:
        _ACTIVE.hold()


def point_fixed() -> None:
    """The store's point in time is fixed: what the backup holds no longer changes."""
    if _ACTIVE is not None:
        _ACTIVE.point_fixed()


def fixed_on_first_output() -> None:
    """The point is fixed once the producer's first byte arrives (pg_dump writes only after its
    snapshot is taken)."""
    if _ACTIVE is not None:
        _ACTIVE.fix_on_output = True


@contextlib.contextmanager
def metering() -> t.Iterator[list[int]]:
    """Count the decompressed bytes read from artifacts during the block (``[count]``): how
    much data a restore loaded. Works whether or not a status file is kept."""
    meter = [0]
    _METERS.append(meter)
    try:
        yield meter
    finally:
        _METERS.remove(meter)


def content(count: int) -> None:
    for meter in _METERS:
        meter[0] += count
