# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The history report: every host's catalogs and run reports turned into facts (nights, gaps,
size anomalies, recovery points, the newest complete set), then into one self-contained HTML
page with inline SVG charts and the facts as JSON for machines.

Only what the listings and run reports carry is rendered (names, times, sizes, states,
problems): neither holds a secret. Size anomalies are the run report's own size trend
(``_report.trend``), applied to each backup and the ones before it.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import re
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

NIGHT_RE = re.compile(r"_(\d{8})_\d{6}\.")
GOOD = "good"


@dataclasses.dataclass(frozen=True)
class Trend:
    """The size trend's settings (the report role's ``report_size_trend_*``)."""

    history: int = 7
    min_history: int = 3
    smaller_ratio: float = 0.5
    larger_ratio: float = 2.0


Facts = t.Dict[str, t.Any]


# facts -------------------------------------------------------------------------------------


def _moment(value: t.Any) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def _night_of_name(name: str) -> str | None:
    """The night a backup belongs to: the date in its name (the host's local time)."""
    match = NIGHT_RE.search(name)
    return None if match is None else datetime.datetime.strptime(match.group(1), "%Y%m%d").date().isoformat()


def _nights(first: str, last: str) -> list[str]:
    start, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    return [(start + datetime.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _backup(item: t.Mapping[str, t.Any], offsite: t.Container[str]) -> Facts:
    verification = item.get("verification") or {}
    return {
        "name": str(item.get("name")),
        "night": _night_of_name(str(item.get("name"))),
        "created": item.get("created"),
        "size": item.get("size") if isinstance(item.get("size"), int) else 0,
        "duration": item.get("duration") if isinstance(item.get("duration"), (int, float)) else None,
        "state": verification.get("state") or "unverified",
        "checks": dict(verification.get("checks") or {}),
        "problems": [str(p) for p in verification.get("problems") or []],
        "legacy": bool(item.get("legacy")),
        "offsite": item.get("name") in offsite,
        "anomaly": None,
    }


def mark_anomalies(backups: list[Facts], trend: Trend) -> None:
    """Each backup against the ones made before it (oldest first in, as Catalog.history sees them)."""
    for index, backup in enumerate(backups):
        history = [b["size"] for b in reversed(backups[:index])]
        record = {"size": backup["size"], "status": "ok"}
        found = _report.trend(record, history, trend.history, trend.min_history, trend.smaller_ratio, trend.larger_ratio)
        backup["median_ratio"] = found.get("median_ratio")
        backup["anomaly"] = found["warnings"][0] if found["warnings"] else None


def _failed_nights(runs: t.Sequence[t.Mapping[str, t.Any]], store: str, series: str) -> dict[str, str]:
    """Nights with a failed backup run of the store (and series), with the error."""
    failed: dict[str, str] = {}
    for run in runs:
        started = _moment(run.get("started"))
        if started is None:
            continue
        for record in run.get("results") or []:
            if record.get("store") != store or record.get("action") != "backup" or record.get("status") != "failed":
                continue
            if series and record.get("target") not in (series, "", None):
                continue
            failed.setdefault(started.date().isoformat(), str(record.get("error") or "the backup failed"))
    return failed


def gaps(backups: t.Sequence[Facts], failed: t.Mapping[str, str]) -> list[Facts]:
    """Nights from the first to the last one known with no backup: ``failed`` when a run failed
    that night, ``missed`` when nothing ran."""
    made = {b["night"] for b in backups if b["night"]}
    known = made | set(failed)
    if not known:
        return []
    out = []
    for night in _nights(min(known), max(known)):
        if night in made:
            continue
        if night in failed:
            out.append({"night": night, "kind": "failed", "error": failed[night]})
        else:
            out.append({"night": night, "kind": "missed", "error": None})
    return out


def store_facts(listing: t.Mapping[str, t.Any], store: str, offsite: t.Container[str],
                runs: t.Sequence[t.Mapping[str, t.Any]], trend: Trend, now: datetime.datetime) -> Facts:
    backups = sorted((_backup(item, offsite) for item in listing.get("backups") or []), key=lambda b: (b["night"] or "", b["name"]))
    mark_anomalies(backups, trend)
    series = next((str(item.get("series")) for item in listing.get("backups") or [] if item.get("series")), "")
    good = [b for b in backups if b["state"] == GOOD]
    newest = good[-1] if good else None
    created = _moment(newest["created"]) if newest else None
    return {
        "store": store,
        "series": series,
        "label": "%s/%s" % (store, series) if series else store,
        "directory": listing.get("directory"),
        "backups": backups,
        "gaps": gaps(backups, _failed_nights(runs, store, series)),
        "anomalies": [b["name"] for b in backups if b["anomaly"]],
        "newest_good": None if newest is None else {"name": newest["name"], "created": newest["created"]},
        "recovery_point_hours": None if created is None else round((now - created).total_seconds() / 3600.0, 1),
        "offsite_copies": sum(1 for b in backups if b["offsite"]),
    }


def complete_set(stores: t.Sequence[Facts]) -> Facts | None:
    """The newest night on which every store of the host has a good backup, and those backups."""
    if not stores:
        return None
    per_store = [{b["night"]: b for b in s["backups"] if b["state"] == GOOD and b["night"]} for s in stores]
    shared = set.intersection(*(set(nights) for nights in per_store))
    if not shared:
        return None
    night = max(shared)
    chosen = {s["label"]: nights[night] for s, nights in zip(stores, per_store)}
    return {
        "night": night,
        "time": max(str(b["created"]) for b in chosen.values()),
        "backups": {label: b["name"] for label, b in chosen.items()},
    }


def last_drill(runs: t.Sequence[t.Mapping[str, t.Any]]) -> Facts | None:
    """The newest successful restore drill among the run reports: a run whose drill records
    (``verify.yml -e verify_level=drill``) all passed, or a run of kind ``drill``."""
    for run in runs:
        drills = [r for r in run.get("results") or [] if isinstance(r, t.Mapping) and r.get("action") == "drill"]
        if (drills and all(r.get("status") == "ok" for r in drills)) or (run.get("playbook") == "drill" and run.get("status") == "ok"):
            return {"run_id": run.get("run_id"), "ended": run.get("ended")}
    return None


def _listings(catalog: t.Mapping[str, t.Any]) -> t.Iterator[tuple[str, t.Mapping[str, t.Any], set[str]]]:
    """Each local listing of the catalog with the names of its store's copies on S3."""
    for store in sorted(catalog):
        listings = [x for x in catalog[store] or [] if isinstance(x, t.Mapping)]
        remote = {str(b.get("name")) for x in listings if str(x.get("directory") or "").startswith("s3://") for b in x.get("backups") or []}
        for listing in listings:
            if not str(listing.get("directory") or "").startswith("s3://"):
                yield store, listing, remote


def host_facts(host: str, data: t.Mapping[str, t.Any], trend: Trend, now: datetime.datetime) -> Facts:
    runs = [r for r in data.get("runs") or [] if isinstance(r, t.Mapping)]
    stores = [store_facts(listing, store, remote, runs, trend, now) for store, listing, remote in _listings(data.get("catalog") or {})]
    return {
        "host": host,
        "stores": stores,
        "complete_set": complete_set(stores),
        "last_drill": last_drill(runs),
        "runs": [{k: r.get(k) for k in ("run_id", "playbook", "started", "status", "stores")} for r in runs[:20]],
    }


def build(hosts: t.Mapping[str, t.Mapping[str, t.Any]], trend: Trend, now: datetime.datetime | None = None) -> Facts:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        "schema": "cclite.backup/history-report",
        "version": 1,
        "generated": now.isoformat(timespec="seconds"),
        "hosts": [host_facts(host, hosts[host] or {}, trend, now) for host in sorted(hosts)],
    }


# charts ------------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 720, 150, 36


def _duration_text(seconds: t.Any) -> str:
    return "-" if not isinstance(seconds, (int, float)) else ("%.1f s" % seconds if seconds < 120 else "%.1f min" % (seconds / 60.0))


def chart(store: Facts, metric: str, title: str, fmt: t.Callable[[t.Any], str]) -> str:
    """One bar per night from the first to the last known one: bad backups, anomalies and gap
    nights marked (each mark carries its night or backup name as a data attribute)."""
    backups = {b["night"]: b for b in store["backups"] if b["night"]}
    gap = {g["night"]: g for g in store["gaps"]}
    known = sorted(set(backups) | set(gap))
    if not known:
        return '<p class="empty">no backup to chart</p>'
    nights = _nights(known[0], known[-1])
    top = max([b[metric] or 0 for b in backups.values()] + [1])
    slot = (WIDTH - PAD) / float(len(nights))
    plot = HEIGHT - 22
    parts = ['<svg class="chart" data-metric="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">'
             % (metric, WIDTH, HEIGHT, WIDTH, HEIGHT, html.escape(title)),
             '<text class="axis" x="0" y="12">%s (highest %s)</text>' % (html.escape(title), html.escape(fmt(top))),
             '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>' % (PAD, plot, WIDTH, plot)]
    for index, night in enumerate(nights):
        x = PAD + index * slot
        if night in gap:
            g = gap[night]
            parts.append('<rect class="gap %s" data-night="%s" x="%.1f" y="16" width="%.1f" height="%d"><title>%s: %s</title></rect>'
                         % (g["kind"], night, x, max(slot - 1, 1), plot - 16, night, html.escape(g["error"] or "no backup this night")))
        backup = backups.get(night)
        if backup is None or backup[metric] is None:
            continue
        height = max((plot - 16) * float(backup[metric]) / top, 1.0)
        kind = "anomaly" if backup["anomaly"] and metric == "size" else ("bad" if backup["state"] == "bad" else backup["state"])
        parts.append('<rect class="bar %s" data-backup="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %s%s</title></rect>'
                     % (kind, html.escape(backup["name"]), x, plot - height, max(slot - 1, 1), height, night, html.escape(title),
                        html.escape(fmt(backup[metric])), html.escape(" - " + backup["anomaly"]) if backup["anomaly"] else ""))
    parts.append('<text class="axis" x="%d" y="%d">%s</text>' % (PAD, HEIGHT - 4, nights[0]))
    parts.append('<text class="axis" x="%d" y="%d" text-anchor="end">%s</text>' % (WIDTH, HEIGHT - 4, nights[-1]))
    parts.append("</svg>")
    return "".join(parts)


# page --------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{border-bottom:2px solid #ccc;margin-top:2em}h3{margin-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.good{color:#1a7f37}.bad,.failed{color:#c62828}.unverified,.problems,.missed,.old{color:#b26a00}
svg.chart{display:block;margin:.3em 0}text.axis{font-size:11px;fill:#555}line.axis{stroke:#999}
rect.bar.good{fill:#4c9a5f}rect.bar.unverified{fill:#9e9e9e}rect.bar.bad{fill:#c62828}rect.bar.anomaly{fill:#e08a00}
rect.gap.failed{fill:#f6c1c1}rect.gap.missed{fill:#e8e8e8;stroke:#bbb;stroke-dasharray:2 2}
.legend span{display:inline-block;margin-right:1em}.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
td.note{max-width:40em;font-size:.9em}
"""
LEGEND = ('<p class="legend"><span><i class="swatch" style="background:#4c9a5f"></i>good</span>'
          '<span><i class="swatch" style="background:#9e9e9e"></i>unverified</span>'
          '<span><i class="swatch" style="background:#c62828"></i>bad</span>'
          '<span><i class="swatch" style="background:#e08a00"></i>size anomaly</span>'
          '<span><i class="swatch" style="background:#f6c1c1"></i>night with a failed run</span>'
          '<span><i class="swatch" style="background:#e8e8e8;border:1px dashed #bbb"></i>night with no backup</span></p>')


def _e(value: t.Any) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def _recovery_text(hours: t.Any, max_age_hours: float) -> str:
    if hours is None:
        return '<span class="bad">no good backup</span>'
    return '<span class="%s">%.1f h</span>' % ("old" if hours > max_age_hours else "good", hours)


def _summary(host: Facts, max_age_hours: float) -> str:
    rows = []
    for s in host["stores"]:
        newest = s["newest_good"]
        rows.append("<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>" % (
            _e(s["label"]), len(s["backups"]), _e(newest and newest["created"]), _recovery_text(s["recovery_point_hours"], max_age_hours),
            len(s["gaps"]), len(s["anomalies"]), s["offsite_copies"]))
    head = "<tr><th>store</th><th>backups</th><th>newest good</th><th>recovery point</th><th>nights without backup</th>" \
           "<th>size anomalies</th><th>on S3</th></tr>"
    return "<table>%s%s</table>" % (head, "".join(rows))


def _backup_rows(store: Facts) -> str:
    rows = []
    for b in reversed(store["backups"]):
        checks = ", ".join("%s %s" % (k, v) for k, v in sorted(b["checks"].items()))
        notes = "; ".join(b["problems"] + ([b["anomaly"]] if b["anomaly"] else []))
        rows.append('<tr data-backup="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class="%s">%s%s</td><td>%s</td>'
                    '<td class="note">%s</td></tr>' % (
                        _e(b["name"]), _e(b["night"]), _e(b["name"]), _report.human_size(b["size"]), _duration_text(b["duration"]),
                        _e(b["state"]), _e(b["state"]), " (legacy)" if b["legacy"] else "", _e(checks), _e(notes) if notes else ""))
    head = "<tr><th>night</th><th>backup</th><th>size</th><th>duration</th><th>state</th><th>checks</th><th>notes</th></tr>"
    return "<details><summary>%d backups</summary><table>%s%s</table></details>" % (len(store["backups"]), head, "".join(rows))


def _store(host: str, store: Facts) -> str:
    gaps_text = ", ".join("%s (%s)" % (g["night"], g["kind"]) for g in store["gaps"]) or "none"
    return ('<section class="store" data-host="%s" data-store="%s" data-backups="%d" data-gaps="%s" data-anomalies="%s">'
            '<h3>%s</h3><p>Nights without a backup: %s. Size anomalies: %s.</p>%s%s%s</section>') % (
        _e(host), _e(store["label"]), len(store["backups"]), _e(" ".join(g["night"] for g in store["gaps"])),
        _e(" ".join(store["anomalies"])), _e(store["label"]), _e(gaps_text), _e(", ".join(store["anomalies"]) or "none"),
        chart(store, "size", "size", _report.human_size), chart(store, "duration", "duration", _duration_text), _backup_rows(store))


def _runs(host: Facts) -> str:
    rows = "".join("<tr><td>%s</td><td>%s</td><td>%s</td><td class=\"%s\">%s</td></tr>" % (
        _e(r["started"]), _e(r["playbook"]), _e(", ".join(r["stores"] or [])), _e(r["status"]), _e(r["status"])) for r in host["runs"])
    if not rows:
        return "<p>No run reports in the logs directory.</p>"
    return "<details><summary>Recent runs</summary><table><tr><th>started</th><th>run</th><th>stores</th><th>status</th></tr>%s</table></details>" % rows


def _host(host: Facts, max_age_hours: float) -> str:
    full = host["complete_set"]
    full_text = _e("%s (every store good; newest at %s)" % (full["night"], full["time"])) if full else \
        '<span class="bad">none: no night has a good backup of every store</span>'
    drill = host["last_drill"]
    drill_text = _e("%s (run %s)" % (drill["ended"], drill["run_id"])) if drill else '<span class="missed">no drill recorded</span>'
    return ('<section class="host" data-host="%s"><h2>%s</h2><p>Newest complete set: %s<br>Last successful restore drill: %s</p>'
            '%s%s%s</section>') % (_e(host["host"]), _e(host["host"]), full_text, drill_text,
                                   _summary(host, max_age_hours), "".join(_store(host["host"], s) for s in host["stores"]), _runs(host))


def render(facts: Facts, title: str = "cc-lite backups", max_age_hours: float = 25.0) -> str:
    """The page: summary and charts per host and store, then the facts as JSON (id report-data)."""
    data = json.dumps(facts, sort_keys=True, default=str).replace("</", "<\\/")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>" % (_e(title), CSS),
        "<h1>%s</h1><p>Generated %s. A night is a calendar day of the host; a bar is the backup of that night.</p>%s"
        % (_e(title), _e(facts["generated"]), LEGEND),
        "".join(_host(h, max_age_hours) for h in facts["hosts"]) or "<p>No host in the report.</p>",
        '<script type="application/json" id="report-data">%s</script>' % data,
        "</body></html>\n",
    ])
