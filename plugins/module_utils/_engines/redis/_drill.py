# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Redis brings to a restore drill (``_core._drill``): its restore engine on the drill server
(a container, a dedicated server, or in host mode a scratch redis-server from the server's own
binary), and the manifest's key sample (types, lengths, values, TTLs) compared with what was loaded."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._drill import DrillError, Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare, _scratch
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._restore import Restore, RestoreRequest


class HostScratch:
    """Host mode: a scratch redis-server (``_scratch.ScratchServer``) started from the production
    server's own binary (its ``INFO server`` executable, else ``redis-server`` on PATH) with an
    empty temp directory, reached on a Unix socket there only (no TCP port); the restore stops
    and starts it instead of the service; stopped and deleted afterwards, also on failure."""

    def __init__(self, conn: rd.Connection) -> None:
        self.conn = conn  # production: read once (INFO server), never changed
        self.server: _scratch.ScratchServer | None = None

    @staticmethod
    def cannot(why: str) -> DrillError:
        return DrillError("the redis drill cannot run: %s" % why, drill={"ran": False, "why": why})

    def binary(self) -> tuple[str, str]:
        """The production server's executable when this host has it, else redis-server on PATH; and its version."""
        with rd.Session(dataclasses.replace(self.conn, connect_timeout=5)) as session:
            info = session.info("server")
        version = info.get("redis_version", "?")
        executable = info.get("executable") or ""
        if executable and os.path.isabs(executable) and os.access(executable, os.X_OK):
            return executable, version
        found = shutil.which("redis-server")
        if found is None:
            raise self.cannot(
                "the server runs on the host (mode host) and redis-server is not installed on this host, to start a "
                "scratch server from (install redis-server, the same version as the server's, %s), or set redis_drill_target "
                "to a dedicated drill server (a drill never restores into the production server)" % version
            )
        return found, version

    def start(self) -> Where:
        binary, version = self.binary()
        try:
            self.server = _scratch.ScratchServer(None, binary=binary)
        except BackupError as exc:
            raise self.cannot("the scratch redis-server (%s) did not start: %s" % (binary, exc.msg)) from exc
        return Where("", self.server.socket, "a scratch redis-server %s (%s) in %s (socket only, no TCP port)" % (
            version, binary, self.server.dir))

    def logs(self) -> str:
        return self.server.log_tail() if self.server is not None else ""

    def remove(self) -> list[str]:
        if self.server is None:
            return []
        server, self.server = self.server, None
        proc = server.proc
        server.close()
        problems = []
        if proc is not None and proc.poll() is None:
            problems.append("the scratch redis-server (pid %d) in %s did not stop" % (proc.pid, server.dir))
        if os.path.exists(server.dir):
            problems.append("could not delete the scratch directory %s" % server.dir)
        return problems


@dataclasses.dataclass
class Drill:
    """The drill engine; ``kept`` is a dedicated drill server (a logical load, FLUSHALL afterwards);
    ``scratch`` the host-mode scratch server (the restore stops and starts it)."""

    request: RestoreRequest  # the production restore request, whose login the drill container shares
    kept: rd.Connection | None = None
    scratch: HostScratch | None = None

    def on(self, where: Where) -> rd.Connection:
        if self.kept is not None:
            return self.kept
        if not where.container:  # the scratch server on this host: its socket, no password
            return rd.Connection(mode="host", login_unix_socket=where.address, connect_timeout=self.request.conn.connect_timeout)
        return dataclasses.replace(self.request.conn, mode="docker", container=where.container, login_host="", login_unix_socket="")

    def ready(self, where: Where) -> None:
        with rd.Session(dataclasses.replace(self.on(where), connect_timeout=2)) as session:
            if session.info("persistence").get("loading") != "0":
                raise BackupError("Redis is still loading")

    def engine(self, where: Where) -> Restore:
        method = "logical" if self.kept is not None and self.request.method == "rdb" else self.request.method
        control = self.scratch.server if self.scratch is not None and self.kept is None and not where.container else None
        return Restore(dataclasses.replace(self.request, conn=self.on(where), method=method, replace_all=True, control=control))

    def sample(self, where: Where, entry: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, t.Any]]:
        manifest = self.request.spec.catalog.resolve(entry["name"]).manifest or {}
        sample = (manifest.get("source") or {}).get("sample") or []
        if not sample:
            return [], {"keys": 0, "note": "the manifest holds no key sample"}
        with rd.Session(self.on(where)) as session:
            problems, compared = _compare.check_sample(session, sample, int(time.time() * 1000))
        return problems, {"keys": compared}

    def cleanup(self, where: Where) -> list[str]:
        if self.kept is None:
            return []
        try:
            with rd.Session(self.kept) as session:
                session.call("FLUSHALL", timeout=600)
        except BackupError as exc:
            return ["could not empty the drill server: %s" % exc.msg]
        return []
