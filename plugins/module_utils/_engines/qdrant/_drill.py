# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Qdrant brings to a restore drill (``_core._drill``): its restore engine on the drill server
(reached on the drill network, no published port), and a read of sampled points."""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._drill import Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant._engine import Restore, RestoreRequest

SAMPLE_POINTS = 3


@dataclasses.dataclass
class Drill:
    """The drill engine; ``kept`` is a dedicated drill server (its collections deleted afterwards)."""

    request: RestoreRequest
    port: int = 6333  # the API port inside the drill container
    kept: qd.Connection | None = None
    restored: list[str] = dataclasses.field(default_factory=list)

    def on(self, where: Where) -> qd.Connection:
        if self.kept is not None:
            return self.kept
        return dataclasses.replace(self.request.conn, url="http://%s:%d" % (where.address, self.port), ca_cert="")

    def ready(self, where: Where) -> None:
        qd.Client(dataclasses.replace(self.on(where), timeout=2)).collections()

    def engine(self, where: Where) -> Restore:
        return Restore(dataclasses.replace(self.request, conn=self.on(where)))

    def sample(self, where: Where, entry: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, t.Any]]:
        """Every restored collection answers a scroll of a few points, with vectors and payloads.

        The manifest holds no sample of points yet, so this proves the points are readable,
        not that their values equal the backup's (the counts are compared by the flow)."""
        client = qd.Client(self.on(where))
        problems = []
        read = 0
        for name in client.collections():
            self.restored.append(name)
            reply = client.call("POST", "/collections/%s/points/scroll" % qd.quote(name),
                                payload={"limit": SAMPLE_POINTS, "with_payload": True, "with_vector": True})
            points = (reply or {}).get("points") or []
            if client.count(name) and not points:
                problems.append("collection %s: no point could be read back" % name)
            for point in points:
                if point.get("vector") in (None, {}, []):
                    problems.append("collection %s: point %s came back without its vector" % (name, point.get("id")))
            read += len(points)
        return problems, {"points": read, "note": "points read back with vectors and payloads; the manifest holds no point sample to compare values with"}

    def cleanup(self, where: Where) -> list[str]:
        if self.kept is None:
            return []
        problems = []
        client = qd.Client(self.kept)
        for name in self.restored:
            try:
                client.call("DELETE", "/collections/%s" % qd.quote(name))
            except BackupError as exc:
                problems.append("could not delete collection %s on the drill server: %s" % (name, exc.msg))
        return problems
