# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that turn registered module results into the run's result records."""

from __future__ import annotations

import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report


def _record(result: t.Mapping[str, t.Any], store: str, action: str) -> dict[str, t.Any]:
    artifact = result.get("artifact") or (result.get("restored_from") if action == "restore" else None) or {}
    item = result.get("item")
    record: dict[str, t.Any] = {
        "store": store,
        "action": action,
        "target": item if isinstance(item, str) else result.get("database", ""),
        "status": "failed" if result.get("failed") else "ok",
        "artifact": artifact.get("path"),
        "size": artifact.get("size"),
        "sha256": artifact.get("sha256"),
        "duration": artifact.get("duration"),
        "problems": list(result.get("problems") or []),
        "message": result.get("msg", ""),
    }
    if result.get("recovery_point_age_seconds") is not None:  # point-in-time recovery: the age of the newest archived WAL
        record["recovery_point_age_seconds"] = result["recovery_point_age_seconds"]
    own = result.get("restore") if action == "restore" else None
    if isinstance(own, t.Mapping):  # the restore's own figures, not the backup's it came from
        record["artifact_size"] = record["size"]  # the file's, beside its sha256 in the run log
        record["size"] = own.get("size")
        record["duration"] = own.get("duration")
    if isinstance(artifact.get("history"), list) and action == "backup":
        # the sizes before it, for the size trend (see the size_trend filter)
        record["created"] = artifact.get("created")
        record["history"] = artifact["history"]
    if action == "drill":
        record.update(drill_record(result.get("drill") or {}))
    if result.get("failed"):
        record["error"] = result.get("msg") or "failed"
    elif record["problems"]:
        record["status"] = "problems"
    return record


def drill_record(drill: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What a run record keeps of a drill: the measured restore time is its duration."""
    kept = {k: drill.get(k) for k in _report.DRILL_KEYS}
    return {"drill": kept, "duration": drill.get("restore_seconds")}


def run_results(registered: t.Mapping[str, t.Any], store: str, action: str) -> list[dict[str, t.Any]]:
    """One record per item of a (possibly looped, possibly failed) registered result."""
    items = registered.get("results")
    if isinstance(items, list):
        return [_record(r, store, action) for r in items if not r.get("skipped")]
    if registered.get("skipped"):
        return []
    return [_record(registered, store, action)]


def run_line(record: t.Mapping[str, t.Any]) -> str:
    """One readable line for a run record."""
    parts = [record.get("store", "?"), record.get("action", "?")]
    if record.get("target"):
        parts.append(record["target"])
    parts.append(str(record.get("status", "?")).upper())
    if record.get("artifact"):
        parts.append(str(record["artifact"]).rsplit("/", 1)[-1])
        parts.append(_report.human_size(record.get("size")))
    if record.get("duration") is not None:
        parts.append("%.1fs" % record["duration"])
    text = " | ".join(parts)
    if record.get("error"):
        text += " | " + record["error"]
    elif record.get("problems"):
        text += " | " + "; ".join(record["problems"])
    return text


def catalog_lines(catalog: t.Mapping[str, t.Any]) -> list[str]:
    """The listing of every store as lines: name, date, size, verification state."""
    lines = []
    for store, results in catalog.items():
        for result in results:
            backups = result.get("backups") or []
            lines.append("%s (%s): %d backup(s)" % (store, result.get("directory", "?"), len(backups)))
            for backup in backups:
                state = (backup.get("verification") or {}).get("state", "not checked")
                legacy = " legacy" if backup.get("legacy") else ""
                encrypted = " encrypted" if backup.get("encrypted") else ""
                size = _report.human_size(backup["size"])
                lines.append("  %s  %s  %s  %s%s%s" % (backup["name"], backup["created"][:19], size, state, legacy, encrypted))
            for note in result.get("notes") or []:
                lines.append("  %s" % note)
            for problem in result.get("problems") or []:
                lines.append("  problem: %s" % problem)
    return lines


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"run_results": run_results, "run_line": run_line, "catalog_lines": catalog_lines}
