# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manifests: one JSON sidecar per artifact, written atomically, read back by every check; and
the catalog journal, the record of every backup made or adopted here that outlives its manifest.

The journal is ``.catalog.jsonl`` in the store's directory: one JSON line per backup whose
manifest this collection wrote (``{"op": "add", "name", "size", "sha256", "created", "kind"}``),
appended and fsynced before the artifact is renamed into place, under the store's lock. It is
never rewritten; retention appends ``{"op": "remove", "name"}``. A backup the journal knows
whose manifest is gone is therefore not legacy: it is a problem, and its bytes are still checked
against the sha256 the journal recorded.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written, in_place
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError

SCHEMA = "cclite.backup/manifest"
VERSION = 1
SUFFIX = ".manifest.json"
COLLECTION_VERSION = "0.1.0"


def path_for(artifact: str) -> str:
    return artifact + SUFFIX


def build(
    store: str,
    written: Written,
    compression: Compression | t.Mapping[str, t.Any],
    *,
    fmt: str,
    database: str = "",
    series: str = "",
    host: str = "",
    versions: t.Mapping[str, str] | None = None,
    source: t.Mapping[str, t.Any] | None = None,
    kind: str = "scheduled",
    adopted: t.Mapping[str, t.Any] | None = None,
    run_id: str = "",
    encryption: t.Mapping[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    """The manifest of a freshly written artifact (or, with ``adopted``, of a legacy one whose
    compression is given as a mapping, since its level is not known). With ``run_id`` (the
    ``backup.yml`` run's id) it records ``run_id`` and ``host`` names the inventory host: the
    backups of one run form a set (see ``_sets``); without it ``host`` is the machine's name.

    ``encryption`` (``_crypto.describe``) says the artifact is encrypted at rest: it goes into
    ``artifact.encryption``, and ``artifact.size`` and ``sha256`` are those of the encrypted
    bytes on disk, so every check that needs no decryption works without the key. (The
    top-level ``encryption`` is the layer an off-site copy adds: ``null`` locally.)"""
    manifest = {
        "schema": SCHEMA,
        "version": VERSION,
        "kind": kind,
        "store": store,
        "host": host or socket.getfqdn(),
        "database": database,
        "series": series,
        "format": fmt,
        "compression": compression.describe() if isinstance(compression, Compression) else dict(compression),
        "artifact": {"name": os.path.basename(written.path), "size": written.size, "sha256": written.sha256},
        "started": written.started.isoformat(),
        "ended": written.ended.isoformat(),
        "duration_seconds": written.duration,
        "versions": dict(versions or {}, collection=COLLECTION_VERSION),
        "source": dict(source or {}),
        "encryption": None,
    }
    if run_id:
        manifest["run_id"] = run_id
    if encryption:
        manifest["artifact"]["encryption"] = dict(encryption)
    if written.files:
        manifest["artifact"]["files"] = [dict(f) for f in written.files]
    if adopted is not None:
        manifest["adopted"] = dict(adopted)
    return manifest


def owner(manifest: t.Mapping[str, t.Any] | None) -> str | None:
    """The inventory host a backup belongs to; ``None`` when its manifest predates run ids
    (its ``host`` is then the machine's name, not an inventory name) or it has none."""
    if not manifest or not manifest.get("run_id"):
        return None
    return manifest.get("host") or None


def write_text(path: str, text: str, mode: int = 0o600) -> None:
    """Write a small text file through a temp file in the same directory, fsync, then rename."""
    with in_place(path, mode, text=True) as partial:
        partial.file.write(text)


def write_json(path: str, data: t.Mapping[str, t.Any], mode: int = 0o600) -> None:
    """Write JSON to ``path`` through a temp file, fsync and rename."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def write(artifact: str, manifest: t.Mapping[str, t.Any], mode: int = 0o600) -> str:
    """Write the manifest, then record the backup in the directory's journal."""
    path = path_for(artifact)
    write_json(path, manifest, mode)
    Journal(os.path.dirname(os.path.abspath(artifact))).add(manifest, mode)
    return path


def read(artifact: str) -> dict[str, t.Any] | None:
    """The artifact's manifest, ``None`` when it has none (a legacy backup)."""
    path = path_for(artifact)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VerifyError("the manifest %s cannot be read (%s); the artifact cannot be checked against it" % (path, exc)) from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerifyError("%s is not a cclite.backup manifest" % path)
    return data


def ended(manifest: t.Mapping[str, t.Any]) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(manifest["ended"])
    except (KeyError, TypeError, ValueError):
        return None


JOURNAL = ".catalog.jsonl"


class Journal:
    """The append-only record of the backups of one directory (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, JOURNAL)

    def _append(self, record: t.Mapping[str, t.Any], mode: int = 0o600) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def add(self, manifest: t.Mapping[str, t.Any], mode: int = 0o600) -> None:
        artifact = manifest.get("artifact") or {}
        self._append(
            {
                "op": "add",
                "name": artifact.get("name"),
                "size": artifact.get("size"),
                "sha256": artifact.get("sha256"),
                "created": manifest.get("ended"),
                "kind": manifest.get("kind"),
            },
            mode,
        )

    def remove(self, name: str) -> None:
        """Retention deleted ``name`` (or its write never completed)."""
        if os.path.exists(self.path):
            self._append({"op": "remove", "name": name})

    def records(self) -> dict[str, dict[str, t.Any]]:
        """The backups the journal holds now, by name; the last line about a name wins. Lines
        that cannot be read (a torn last line after a crash) are skipped."""
        known: dict[str, dict[str, t.Any]] = {}
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
                        continue
                    if record.get("op") == "remove":
                        known.pop(record["name"], None)
                    elif record.get("op") == "add":
                        known[record["name"]] = record
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise VerifyError("the catalog journal %s cannot be read (%s)" % (self.path, exc.strerror or exc)) from exc
        return known
