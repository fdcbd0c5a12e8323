# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checking RDB files: redis-check-rdb over a stream or a file, and the counts it reports."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import typing as t
import weakref

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Child, Command, start
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._client import Connection, RDB_EOF, container_running, rdb_version


def checker_command(conn: Connection) -> tuple[Command | None, str]:
    """redis-check-rdb reading stdin: in the container when it runs (same version as the server),
    else on this host. Returns the command (or ``None``) and where it runs."""
    if conn.mode == "docker" and container_running(conn):
        return conn.tool(["redis-check-rdb", "/dev/stdin"], stage="redis-check-rdb"), "container %s" % conn.container
    if shutil.which("redis-check-rdb"):
        return Command(("redis-check-rdb", "/dev/stdin"), stage="redis-check-rdb"), "this host"
    where = "the container %s is not running and " % conn.container if conn.mode == "docker" else ""
    return None, "%sredis-check-rdb is not installed on this host (install redis-tools)" % where


class RdbCheck:
    """Content check: the RDB header and end marker, and redis-check-rdb on the whole stream.

    The decompressed RDB is fed to ``redis-check-rdb /dev/stdin`` as it is read: no temp copy.
    ``keys``, ``expires`` and ``already_expired`` hold what the tool counted. Without a checker
    (``None``) only the header and end marker are checked: a backup's read-back, whose source
    RDB went through redis-check-rdb while it was copied (:class:`SourceCheck`).
    """

    def __init__(self, checker: tuple[Command | None, str] | None = None) -> None:
        self.structure_only = checker is None
        self.command, self.where = checker if checker is not None else (None, "")
        self.head = b""
        self.tail = b""
        self.size = 0
        self.child: Child | None = None
        self.out: t.Any = None
        self.broken = False
        self.keys: int | None = None
        self.expires: int | None = None
        self.already_expired: int | None = None
        self.version: int | None = None

    def _start(self, command: Command) -> None:
        self.out = tempfile.TemporaryFile()
        try:
            self.child = start(command, stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT)
        except ConfigError:
            self.command = None
            self.where = "redis-check-rdb could not be started"
            return
        weakref.finalize(self, self.child.kill)

    def begin(self) -> None:
        """Start redis-check-rdb now (else at the first chunk): from the thread whose end may end
        it (``_process``), when the chunks come from another one."""
        if self.command is not None and self.child is None:
            self._start(self.command)

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 9:
            self.head = (self.head + chunk[:9])[:9]
        self.tail = (self.tail + chunk[-9:])[-9:]
        self.size += len(chunk)
        if self.command is not None and self.child is None:
            self._start(self.command)
        if self.child is not None and not self.broken:
            try:
                t.cast(t.BinaryIO, self.child.stdin).write(chunk)
            except BrokenPipeError:
                self.broken = True  # it stopped reading: its exit status says why

    def _tool_result(self) -> str | None:
        if self.structure_only:
            return None
        if self.command is None or self.child is None:
            return "redis-check-rdb cannot run: %s" % self.where
        try:
            t.cast(t.BinaryIO, self.child.stdin).close()
        except BrokenPipeError:
            pass
        self.child.wait()
        self.out.seek(0)
        text = self.out.read().decode("utf-8", errors="replace")
        self.out.close()
        for attr, value in parse_check_counts(text).items():
            setattr(self, attr, value)
        if self.child.returncode == 0:
            return None
        return describe_check_failure(text, self.where)

    def result(self) -> str | None:
        self.version = rdb_version(self.head)
        if self.version is None:
            problem: str | None = "not an RDB file (it starts with %r, not REDIS00nn)" % self.head
        elif self.version >= 5 and (len(self.tail) < 9 or self.tail[0] != RDB_EOF):
            problem = "the RDB does not end with its EOF marker and checksum: it was cut short"
        else:
            problem = None
        tool = self._tool_result()
        return "; ".join(p for p in (problem, tool) if p) or None


def parse_check_counts(text: str) -> dict[str, int]:
    """What redis-check-rdb counted: keys, expires, already_expired."""
    counts = {}
    for name, key in (("keys read", "keys"), ("expires", "expires"), ("already expired", "already_expired")):
        found = re.search(r"\[info\] (\d+) %s" % name, text)
        if found:
            counts[key] = int(found.group(1))
    return counts


class SourceCheck:
    """redis-check-rdb on the RDB file where the server wrote it, running while it is copied.

    The copy is checked afterwards for stream integrity (gzip's CRC covers every byte) and the
    RDB's header and end marker; the tool's reading of the source then stands for the copy.
    """

    def __init__(self, conn: Connection, path: str, local: bool) -> None:
        self.path = path
        self.out = tempfile.TemporaryFile()
        if local:
            cmd = Command(("redis-check-rdb", path), stage="redis-check-rdb") if shutil.which("redis-check-rdb") else None
        else:
            cmd = conn.tool(["redis-check-rdb", path], stage="redis-check-rdb")
        self.child: Child | None = None
        if cmd is not None:
            try:
                self.child = start(cmd, stdout=self.out, stderr=subprocess.STDOUT)
            except ConfigError:
                self.child = None

    def result(self, timeout: float) -> tuple[dict[str, int] | None, str | None]:
        """The tool's counts (``None`` when it could not run) and its problem, if any."""
        if self.child is None:
            return None, None
        try:
            self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            return None, "redis-check-rdb did not finish within %g seconds" % timeout
        self.out.seek(0)
        text = self.out.read().decode("utf-8", errors="replace")
        if self.child.returncode != 0:
            return parse_check_counts(text), describe_check_failure(text, "on %s" % self.path)
        return parse_check_counts(text), None

    def close(self) -> None:
        if self.child is not None:
            self.child.close()
        self.out.close()


def describe_check_failure(text: str, where: str) -> str:
    """redis-check-rdb's verdict as one sentence."""
    version = re.search(r"Can't handle RDB format version (\d+)", text)
    if version:
        return (
            "redis-check-rdb (%s) cannot read RDB format version %s: it is older than the server that wrote the "
            "backup; use the server's own tools (docker mode) or a newer redis-tools" % (where, version.group(1))
        )
    lines = text.splitlines()
    detail = ""
    for index, line in enumerate(lines):
        if "RDB ERROR DETECTED" in line and index + 1 < len(lines):
            detail = re.sub(r"^\[offset \d+\]\s*", "", lines[index + 1]).strip()
            break
    detail = detail or (lines[-1] if lines else "no output")
    if "Unexpected EOF" in detail:
        detail += " (the RDB is truncated)"
    return "redis-check-rdb found a problem: %s" % detail
