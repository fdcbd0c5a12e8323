# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway redis-server instances for deep checks and host-mode drills: a socket in a temp directory, gone afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, start, tail
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._client import Connection, Session, command_line


class ScratchServer:
    """A throwaway redis-server on a Unix socket in a private temp dir (no TCP port at all).

    With ``chunks`` it starts from that RDB; it never saves, and everything goes at ``close``.
    It holds the whole dataset in memory, like the server the backup came from.
    """

    def __init__(self, chunks: t.Iterable[bytes] | None = None, timeout: float = 600.0, binary: str = "redis-server") -> None:
        self.binary = shutil.which(binary)
        if not self.binary:
            raise ConfigError("redis-server is not installed on this host (needed for a throwaway server)")
        self.dir = tempfile.mkdtemp(prefix="cclite-redis-scratch-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.log = os.path.join(self.dir, "redis.log")
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.session: Session | None = None
        self.conn = Connection(mode="host", login_unix_socket=self.socket, connect_timeout=2)
        try:
            if chunks is not None:
                with open(os.path.join(self.dir, "dump.rdb"), "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Start the server on ``dump.rdb`` of its directory (if there is one) and wait for its load."""
        argv = [
            t.cast(str, self.binary), "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
            "--dir", self.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", self.log, "--databases", "256",
        ]
        self.proc = start(Command(tuple(argv), stage="redis-server"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).proc
        self.session = self._wait(self.proc, time.monotonic() + self.timeout)

    def _shutdown(self) -> None:
        if self.session is not None:
            try:
                self.session.exchange([command_line(["SHUTDOWN", "NOSAVE"])], timeout=10)
            except StageError:
                pass  # the connection ends with the server: that is the expected outcome
            self.session.close()
            self.session = None

    def stop(self) -> None:
        """Stop the server without saving (a restore then puts its RDB in place and starts it)."""
        self._shutdown()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def log_tail(self) -> str:
        try:
            with open(self.log, "rb") as handle:
                return tail(handle.read(), 1500)
        except OSError:
            return ""

    def _wait(self, proc: subprocess.Popen, deadline: float) -> Session:
        while True:
            if proc.poll() is not None:
                raise StageError("the throwaway redis-server stopped: %s" % (self.log_tail() or "no log"))
            if os.path.exists(self.socket):
                try:
                    session = Session(self.conn, timeout=600)
                except StageError:
                    session = None
                if session is not None:
                    if session.info("persistence").get("loading") == "0":
                        return session
                    session.close()
            if time.monotonic() > deadline:
                raise StageError("the throwaway redis-server did not finish loading in time")
            time.sleep(0.1)

    def close(self) -> None:
        self._shutdown()
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ScratchServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
