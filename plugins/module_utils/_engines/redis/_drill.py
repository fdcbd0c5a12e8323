# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Redis brings to a restore drill (``_core._drill``): its restore engine on the drill server,
and the manifest's key sample (types, lengths, values, TTLs) compared with what was loaded."""

from __future__ import annotations

import dataclasses
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._drill import Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._restore import Restore, RestoreRequest


@dataclasses.dataclass
class Drill:
    """The drill engine; ``kept`` is a dedicated drill server (a logical load, FLUSHALL afterwards)."""

    request: RestoreRequest  # the production restore request, whose login the drill container shares
    kept: rd.Connection | None = None

    def on(self, where: Where) -> rd.Connection:
        if self.kept is not None:
            return self.kept
        return dataclasses.replace(self.request.conn, mode="docker", container=where.container, login_host="", login_unix_socket="")

    def ready(self, where: Where) -> None:
        with rd.Session(dataclasses.replace(self.on(where), connect_timeout=2)) as session:
            if session.info("persistence").get("loading") != "0":
                raise BackupError("Redis is still loading")

    def engine(self, where: Where) -> Restore:
        method = "logical" if self.kept is not None and self.request.method == "rdb" else self.request.method
        return Restore(dataclasses.replace(self.request, conn=self.on(where), method=method, replace_all=True))

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
