# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disaster recovery's figures and checks: each store's counts after a restore against its
manifest, the recovery time of every step and the recovery point, as run records.

The counts come from the store's restore result (the restore flow measures the live target right
after the swap, before the application is started again and may write); they are compared here
once more with the manifest the restore read, so the run's table and webhook show each check.
"""

from __future__ import annotations

import datetime
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._restore import Count, compare

Record = t.Dict[str, t.Any]


def _results(registered: t.Mapping[str, t.Any] | None) -> list[t.Mapping[str, t.Any]]:
    """The results of a registered (possibly looped) restore that ran."""
    if not registered:
        return []
    items = registered.get("results")
    items = items if isinstance(items, list) else [registered]
    return [r for r in items if not r.get("skipped")]


def _source(manifests: t.Mapping[str, t.Any], result: t.Mapping[str, t.Any]) -> t.Mapping[str, t.Any] | None:
    path = (result.get("restored_from") or {}).get("path")
    manifest = manifests.get(path) if path else None
    return (manifest or {}).get("source") if isinstance(manifest, dict) else None


def postgresql_counts(result: t.Mapping[str, t.Any], source: t.Mapping[str, t.Any]) -> tuple[str, list[Count], str]:
    actual = result.get("tables") or {}
    expected = source.get("tables")
    if not isinstance(expected, dict):
        return "", [], "the manifest records no row counts"
    counts = [Count("table %s" % n, "rows", actual.get(n), expected.get(n)) for n in sorted(set(expected) | set(actual))]
    summary = "%d tables, %d rows" % (len(actual), sum(v for v in actual.values() if isinstance(v, int)))
    return summary, counts, ""


def redis_counts(result: t.Mapping[str, t.Any], source: t.Mapping[str, t.Any]) -> tuple[str, list[Count], str]:
    actual = result.get("databases") or {}
    expected = source.get("databases")
    if not isinstance(expected, dict):
        return "", [], "the manifest records no key counts"
    counts = []
    for db in sorted(set(expected) | set(actual)):
        want, got = expected.get(db) or {}, actual.get(db)
        keys, expires = want.get("keys"), int(want.get("expires") or 0)
        low = keys - expires if isinstance(keys, int) else None
        counts.append(Count(db, "keys", (got or {}).get("keys") if got is not None else None, keys, low, "%d with a TTL" % expires))
    summary = "%d databases, %d keys" % (len(actual), sum(int((d or {}).get("keys") or 0) for d in actual.values()))
    return summary, counts, ""


def qdrant_counts(result: t.Mapping[str, t.Any], source: t.Mapping[str, t.Any]) -> tuple[str, list[Count], str]:
    actual = {c.get("name"): c.get("points_count") for c in result.get("collections") or []}
    expected = source.get("collections")
    if not isinstance(expected, dict):
        return "", [], "the manifest records no points counts"
    counts = []
    for name in sorted(actual):
        want = expected.get(name) or {}
        recorded = [want[k] for k in ("points_count", "points_count_after") if isinstance(want.get(k), int)]
        counts.append(
            Count(
                "collection %s" % name, "points", actual[name], max(recorded) if recorded else None,
                min(recorded) if recorded else None, "written to during the backup",
            )
        )
    summary = "%d collections, %d points" % (len(actual), sum(v for v in actual.values() if isinstance(v, int)))
    return summary, counts, ""


MEASURES: dict[str, tuple[str, t.Callable[[t.Mapping[str, t.Any], t.Mapping[str, t.Any]], tuple[str, list[Count], str]]]] = {
    "postgresql": ("rows per table", postgresql_counts),
    "redis": ("keys per database", redis_counts),
    "qdrant": ("points per collection", qdrant_counts),
}


def store_checks(store: str, registered: t.Mapping[str, t.Any] | None, manifests: t.Mapping[str, t.Any]) -> list[Record]:
    """One ``health`` run record per restored target of ``store``: its counts after the restore
    equal the manifest's (a failed restore gets no check: its own record says it failed)."""
    what, measure = MEASURES[store]
    records = []
    for result in _results(registered):
        if result.get("failed"):
            continue
        target = result.get("database") or result.get("item") or what
        record: Record = {"store": store, "action": "health", "target": target if isinstance(target, str) else what,
                          "status": "ok", "problems": [], "info": ""}
        source = _source(manifests, result)
        if source is None:
            name = (result.get("restored_from") or {}).get("name", "the backup")
            record.update(status="failed", error="%s: no manifest of %s to compare with" % (what, name))
        else:
            summary, counts, missing = measure(result, source)
            problems = compare(counts)
            if missing:
                record.update(status="failed", error="%s: %s, nothing to compare with" % (what, missing))
            elif problems:
                record.update(status="failed", error="%s differ from the manifest: %s" % (what, "; ".join(problems)))
            else:
                record["info"] = "%s equal the manifest (%s)" % (what, summary)
        records.append(record)
    return records


def parse_time(text: str) -> datetime.datetime:
    """An ISO time; a naive one is taken as UTC."""
    when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def human_seconds(seconds: float | None) -> str:
    """``45.2s``, ``3m 05s``, ``2h 03m``, ``3d 04h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1fs" % seconds
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%dd %02dh" % (days, hours)
    if hours:
        return "%dh %02dm" % (hours, minutes)
    return "%dm %02ds" % (minutes, secs)


def figures(steps: t.Sequence[t.Mapping[str, t.Any]], started: str, restored: t.Sequence[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """Recovery time (each step and the total, from the first step's start to the last one's
    end) and recovery point (the age of the oldest backup restored when the run started)."""
    timed = [
        {"step": s["step"], "seconds": round(float(s["end"]) - float(s["start"]), 1), "status": s.get("status", "ok"),
         "target": s.get("target", ""), "detail": s.get("detail", ""), "start": float(s["start"]), "end": float(s["end"])}
        for s in steps
    ]
    total = round(float(steps[-1]["end"]) - float(steps[0]["start"]), 1) if steps else 0.0
    created = [parse_time(r["created"]) for r in restored if r.get("created")]
    point = None
    point_text = "- (nothing restored)"
    if created:
        point = max(0.0, round((parse_time(started) - min(created)).total_seconds(), 1))
        point_text = "%s (the backups restored were made %s)" % (human_seconds(point), min(created).isoformat())
    return {
        "steps": timed,
        "recovery_time_seconds": total,
        "recovery_point_seconds": point,
        "restored_created": min(created).isoformat() if created else None,
        "text": "recovery time %s; recovery point %s" % (human_seconds(total), point_text),
    }


def step_records(figure: t.Mapping[str, t.Any]) -> list[Record]:
    """One ``dr`` run record per step and one for the whole recovery."""
    records = [
        {"store": "dr", "action": s["step"], "target": s.get("target") or "", "status": s["status"], "duration": s["seconds"],
         "problems": [], "error": s.get("detail", "") if s["status"] == "failed" else "", "info": "" if s["status"] == "failed" else s.get("detail", ""),
         "start": s["start"], "end": s["end"]}
        for s in figure["steps"]
    ]
    records.append({"store": "dr", "action": "recovery", "target": "total", "status": "ok", "duration": figure["recovery_time_seconds"],
                    "problems": [], "info": figure["text"]})
    return records


def step_line(step: t.Mapping[str, t.Any]) -> str:
    """``restore postgresql  12.3s  OK  restored from ...``."""
    name = " ".join(p for p in (step.get("step", "?"), step.get("target", "")) if p)
    line = "%-28s %8s  %-6s  %s" % (name, human_seconds(step.get("seconds")), str(step.get("status", "?")).upper(), step.get("detail", ""))
    return line.rstrip()
