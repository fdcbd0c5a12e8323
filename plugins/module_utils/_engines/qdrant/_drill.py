# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Qdrant brings to a restore drill (``_core._drill``): its restore engine on the drill server
(reached on the drill network, no published port), and the manifest's point sample (ids, sha256
of vectors and payloads) compared with the restored points."""

from __future__ import annotations

import dataclasses
import json
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._drill import Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant._engine import Restore, RestoreRequest

SAMPLE_POINTS = qd.SAMPLE_POINTS


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
        """The manifest's point sample of each collection (ids, sha256 of vectors and payloads,
        recorded at backup time) compared with the restored points; a collection whose manifest
        has no sample (made before samples were recorded) is read back for vectors only, and the
        drill says its values were not compared."""
        manifest = self.request.spec.catalog.resolve(entry["name"]).manifest or {}
        recorded = ((manifest.get("source") or {}).get("collections")) or {}
        client = qd.Client(self.on(where))
        problems: list[str] = []
        compared = read = 0
        unsampled = []
        for name in client.collections():
            self.restored.append(name)
            sample = (recorded.get(name) or {}).get("sample")
            if sample is None:
                unsampled.append(name)
                points = client.sample(name, SAMPLE_POINTS)
                if client.count(name) and not points:
                    problems.append("collection %s: no point could be read back" % name)
                read += len(points)
                continue
            got = client.points(name, [p["id"] for p in sample])
            for point in sample:
                restored = got.get(point["id"])
                compared += 1
                if restored is None:
                    problems.append("collection %s: point %s of the backup's sample is missing after the restore" % (name, json.dumps(point["id"])))
                    continue
                differ = [what for what in ("vector", "payload") if restored[what] != point[what]]
                if differ:
                    problems.append("collection %s: point %s: its %s differ%s from the backup's (sha256 %s recorded, %s restored)" % (
                        name, json.dumps(point["id"]), " and ".join(differ), "" if len(differ) > 1 else "s",
                        ", ".join(point[w][:12] for w in differ), ", ".join(restored[w][:12] for w in differ)))
        out: dict[str, t.Any] = {"points": compared}  # whose values were compared
        if unsampled:
            out["points_read"] = read
            out["note"] = ("values not compared for %s: the manifest holds no point sample (a backup made before samples were "
                           "recorded); %d point(s) read back with their vectors and payloads" % (", ".join(unsampled), read))
        return problems, out

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
