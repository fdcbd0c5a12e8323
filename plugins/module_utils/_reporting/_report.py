# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a run leaves behind besides its artifacts: size trends, the summary table, the per-run
log and JSON report under ``<backup_root>/logs/``, and the node-exporter textfile metrics.

Pure functions (trend, table, metrics text) are kept apart from the few that write, so the
filters on the controller and the modules on the managed host share one implementation.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import statistics
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, QDRANT, REDIS, STAMP, Catalog, Layout
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock

LAYOUTS: dict[str, Layout] = {layout.store: layout for layout in (POSTGRESQL, REDIS, QDRANT)}
RUN_FILE_RE = re.compile(r"(?P<kind>[a-z][a-z0-9]*)_(?P<stamp>\d{8}_\d{6})(?:_\d+)?\.(?:log|json)")
METRICS_FILE = "cclite_backup.prom"
STATUS_ORDER = {"ok": 0, "problems": 1, "failed": 2}


# size trend --------------------------------------------------------------------------------


def _series_of(layout: Layout, name: str) -> str | None:
    """The series a backup file name belongs to, ``None`` when the name is not the layout's."""
    match = re.fullmatch(
        r"%s_(?:(?P<series>.+)_)?\d{8}_\d{6}%s\.[a-z0-9]+" % (re.escape(layout.prefix), re.escape(layout.content)), name
    )
    return None if match is None else (match.group("series") or "")


def size_history(artifact: str, store: str) -> tuple[str, list[int]] | None:
    """When ``artifact`` was made, and the sizes of the backups of its series made before it,
    newest first.

    ``None`` when the artifact is not in a catalog this collection knows (its history is
    unknown, which is not the same as empty).
    """
    layout = LAYOUTS.get(store)
    if not layout or not artifact:
        return None
    directory, name = os.path.split(artifact)
    series = _series_of(layout, name)
    if series is None or os.path.basename(directory) != layout.store:
        return None
    try:
        catalog = Catalog(os.path.dirname(directory), layout, series)
    except ConfigError:
        return None
    found = catalog.history(name)
    if found is None:
        return None
    return found[0].created.isoformat(), found[1]


def trend_argument_spec() -> dict[str, t.Any]:
    """The size trend's options (doc fragment ``cclite.backup.size_trend``)."""
    return {
        "history": {"type": "int", "default": 7},
        "min_history": {"type": "int", "default": 3},
        "smaller_ratio": {"type": "float", "default": 0.5},
        "larger_ratio": {"type": "float", "default": 2.0},
    }


def _percent(value: float) -> str:
    return "%+.1f%%" % value


def trend(
    record: t.Mapping[str, t.Any],
    history: list[int] | None,
    window: int = 7,
    min_history: int = 3,
    smaller_ratio: float = 0.5,
    larger_ratio: float = 2.0,
) -> dict[str, t.Any]:
    """The record with the size change against the previous backup and the recent median.

    Adds ``previous_size``, ``size_change``, ``size_change_percent``, ``median_size``,
    ``median_ratio`` and appends to ``warnings`` when the new size is below ``smaller_ratio``
    or above ``larger_ratio`` times the median of the ``window`` backups before it (with at
    least ``min_history`` of them, so that one odd backup is not a trend).
    """
    out = dict(record)
    out["warnings"] = list(record.get("warnings") or [])
    size = record.get("size")
    if history is None or not isinstance(size, int) or record.get("status") == "failed":
        return out
    recent = history[:window]
    if recent:
        previous = recent[0]
        out["previous_size"] = previous
        out["size_change"] = size - previous
        out["size_change_percent"] = round(100.0 * (size - previous) / previous, 1) if previous else None
    if len(recent) >= max(min_history, 1):
        median = statistics.median(recent)
        out["median_size"] = median
        ratio = size / median if median else None
        out["median_ratio"] = None if ratio is None else round(ratio, 3)
        if ratio is not None and (ratio < smaller_ratio or ratio > larger_ratio):
            out["warnings"].append(
                "size trend: %s is %s of the median of the previous %d backups (%s): %s"
                % (
                    human_size(size),
                    "%.0f%%" % (100.0 * ratio),
                    len(recent),
                    human_size(int(median)),
                    "much smaller, data may be missing" if ratio < smaller_ratio else "much larger than usual",
                )
            )
    return out


# readable text -----------------------------------------------------------------------------


def human_size(size: t.Any) -> str:
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % size  # pragma: no cover


def seconds_text(seconds: t.Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %02d s" % divmod(seconds, 60)
    return "%d h %02d min" % (seconds // 3600, seconds % 3600 // 60)


def progress_line(host: str, status: t.Mapping[str, t.Any]) -> str:
    """One line of a running backup or restore, from its status file (see ``_core._progress``):
    ``[host] postgresql backup app: backup 1.2 GiB of ~3.4 GiB (35%), 48.0 MiB/s, 47 s left``."""
    who = " ".join(str(status.get(k)) for k in ("store", "action", "target") if status.get(k))
    done, expected = status.get("bytes_done"), status.get("bytes_expected")
    text = "%s %s" % (status.get("phase", "?"), human_size(done))
    if isinstance(expected, int) and expected > 0 and isinstance(done, int):
        text += " of ~%s (%d%%)" % (human_size(expected), min(99, int(100 * done / expected)))
    rate = status.get("rate_bytes_per_second")
    if isinstance(rate, (int, float)) and rate > 0:
        text += ", %s/s" % human_size(rate)
    if status.get("seconds_left") is not None:
        text += ", %s left" % seconds_text(status["seconds_left"])
    elif isinstance(expected, int) and isinstance(done, int) and done >= expected > 0:
        text += ", past the expected size"
    return "[%s] %s: %s (%s running)" % (host, who, text, seconds_text(status.get("seconds")))


def size_change_text(record: t.Mapping[str, t.Any]) -> str:
    change = record.get("size_change")
    if not isinstance(change, int):
        return "-"
    sign = "+" if change >= 0 else "-"
    text = sign + human_size(abs(change))
    if isinstance(record.get("size_change_percent"), (int, float)):
        text += " (%s)" % _percent(record["size_change_percent"])
    return text


def note(record: t.Mapping[str, t.Any]) -> str:
    parts = []
    if record.get("error"):
        parts.append(str(record["error"]))
    parts.extend(str(p) for p in record.get("problems") or [])
    parts.extend(str(w) for w in record.get("warnings") or [])
    if record.get("info"):  # what an ok record has to say, e.g. a disaster recovery's figures
        parts.append(str(record["info"]))
    return "; ".join(parts)


COLUMNS = ("HOST", "STORE", "ACTION", "TARGET", "STATUS", "ARTIFACT", "SIZE", "CHANGE", "DURATION", "NOTE")


def table_rows(hosts: t.Mapping[str, t.Sequence[t.Mapping[str, t.Any]]]) -> list[list[str]]:
    rows = []
    for host in sorted(hosts):
        records = hosts[host] or []
        if not records:
            rows.append([host, "-", "-", "-", "NOTHING", "-", "-", "-", "-", "no store was handled on this host"])
        for record in records:
            duration = record.get("duration")
            rows.append(
                [
                    host,
                    str(record.get("store") or "-"),
                    str(record.get("action") or "-"),
                    str(record.get("target") or "-"),
                    str(record.get("status") or "?").upper(),
                    os.path.basename(str(record["artifact"])) if record.get("artifact") else "-",
                    human_size(record.get("size")),
                    size_change_text(record),
                    "%.1fs" % duration if isinstance(duration, (int, float)) else "-",
                    note(record) or "",
                ]
            )
    return rows


def table(hosts: t.Mapping[str, t.Sequence[t.Mapping[str, t.Any]]], unreachable: t.Sequence[str] = ()) -> list[str]:
    """An aligned text table: one row per host, store and target (the NOTE column is not padded)."""
    rows = table_rows(hosts)
    for host in sorted(unreachable):
        rows.append([host, "-", "-", "-", "UNREACHABLE", "-", "-", "-", "-", "the host failed or could not be reached"])
    widths = [max([len(COLUMNS[i])] + [len(r[i]) for r in rows]) for i in range(len(COLUMNS) - 1)]

    def line(cells: t.Sequence[str]) -> str:
        return ("  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]).rstrip()

    return [line(COLUMNS), line(["-" * w for w in widths] + ["-" * len(COLUMNS[-1])])] + [line(r) for r in rows]


def overall_status(records: t.Iterable[t.Mapping[str, t.Any]]) -> str:
    worst = "ok"
    for record in records:
        status = record.get("status", "failed")
        if STATUS_ORDER.get(status, 2) > STATUS_ORDER[worst]:
            worst = status if status in STATUS_ORDER else "failed"
    return worst


# per-run log and JSON report ---------------------------------------------------------------


def run_stamp(run: t.Mapping[str, t.Any]) -> str:
    started = run.get("started")
    try:
        moment = datetime.datetime.fromisoformat(str(started)).astimezone()
    except ValueError:
        moment = datetime.datetime.now().astimezone()
    return moment.strftime(STAMP)


def run_paths(logs_dir: str, kind: str, stamp: str) -> tuple[str, str]:
    """Free ``<kind>_<stamp>.log`` / ``.json`` names (a suffix when a run of the same second exists)."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", kind):
        raise ConfigError("run kind %r cannot name a log file: use lower-case letters and digits" % kind)
    base = "%s_%s" % (kind, stamp)
    for attempt in range(1, 100):
        name = base if attempt == 1 else "%s_%d" % (base, attempt)
        log, report = os.path.join(logs_dir, name + ".log"), os.path.join(logs_dir, name + ".json")
        if not os.path.lexists(log) and not os.path.lexists(report):
            return log, report
    raise ConfigError("no free run log name for %s in %s" % (base, logs_dir))


def build_report(run: t.Mapping[str, t.Any], host: str, records: t.Sequence[t.Mapping[str, t.Any]],
                 notifications: t.Sequence[t.Mapping[str, t.Any]] = ()) -> dict[str, t.Any]:
    stores = sorted({str(r.get("store")) for r in records if r.get("store")})
    return {
        "schema": "cclite.backup/run-report",
        "version": 1,
        "run_id": run.get("id"),
        "playbook": run.get("kind"),
        "started": run.get("started"),
        "ended": run.get("ended"),
        "hosts": [host],
        "host": host,
        "status": overall_status(records),
        "stores": stores,
        "results": [dict(r) for r in records],
        "artifacts": [
            {k: r.get(k) for k in ("store", "target", "artifact", "size", "sha256", "duration", "previous_size", "size_change")}
            for r in records
            if r.get("artifact")
        ],
        "verification": [
            {k: r.get(k) for k in ("store", "target", "status", "problems", "error")}
            for r in records
            if r.get("action") == "verify"
        ],
        "drills": [
            dict({k: r.get(k) for k in ("store", "target", "status", "error")}, **(r.get("drill") or {}))
            for r in records
            if r.get("action") == "drill"
        ],
        "notifications": [dict(n) for n in notifications],
    }


def render_log(report: t.Mapping[str, t.Any]) -> str:
    lines = [
        "cclite.backup %s run %s on %s" % (report.get("playbook"), report.get("run_id"), report.get("host")),
        "started %s, ended %s" % (report.get("started"), report.get("ended")),
        "status: %s" % str(report.get("status")).upper(),
        "",
    ]
    lines.extend(table({str(report.get("host")): report.get("results") or []}))
    for record in report.get("results") or []:
        where = "%s %s %s" % (record.get("store"), record.get("action"), record.get("target") or "")
        if record.get("error"):
            lines.append("ERROR   %s: %s" % (where.strip(), record["error"]))
        for problem in record.get("problems") or []:
            lines.append("PROBLEM %s: %s" % (where.strip(), problem))
        for warning in record.get("warnings") or []:
            lines.append("WARNING %s: %s" % (where.strip(), warning))
        if record.get("artifact"):  # the file's size and sha256; a restore's own size is the data it loaded
            restored = "artifact_size" in record
            lines.append("ARTIFACT %s size=%s sha256=%s%s" % (
                record["artifact"], record["artifact_size"] if restored else record.get("size"), record.get("sha256"),
                " restored=%s" % record.get("size") if restored else ""))
    for sent in report.get("notifications") or []:
        lines.append("NOTIFY  %s: %s%s" % (sent.get("channel"), sent.get("status"), (" (%s)" % sent["error"]) if sent.get("error") else ""))
    return "\n".join(lines) + "\n"


def prune_runs(logs_dir: str, retention_days: int, now: datetime.datetime | None = None, dry_run: bool = False) -> list[str]:
    """Delete run logs and reports older than ``retention_days`` (by the stamp in their name).

    Only ``<kind>_YYYYMMDD_HHMMSS.log|json`` files are touched (the closed ``cron_…log`` files of
    :func:`rotate_cron_log` among them): ``cron.log`` and anything else in the directory stays.
    """
    now = now or datetime.datetime.now()
    cutoff = now - datetime.timedelta(days=retention_days)
    deleted = []
    try:
        names = sorted(os.listdir(logs_dir))
    except FileNotFoundError:
        return []
    for name in names:
        match = RUN_FILE_RE.fullmatch(name)
        path = os.path.join(logs_dir, name)
        if not match or os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            stamp = datetime.datetime.strptime(match.group("stamp"), STAMP)
        except ValueError:
            continue
        if stamp < cutoff:
            deleted.append(path)
            if not dry_run:
                os.unlink(path)
    return deleted


CRON_LOG = "cron.log"


def rotate_cron_log(logs_dir: str, now: datetime.datetime | None = None, dry_run: bool = False) -> str | None:
    """Close ``cron.log`` (what the schedule's jobs append to) once it holds a line of an earlier
    day: rename it to ``cron_YYYYMMDD_HHMMSS.log``, stamped with the time it was closed, so that
    :func:`prune_runs` deletes it with the run logs once every line in it is past the retention.
    The job running now keeps writing its last lines into the renamed file (its open file);
    the next job starts a new ``cron.log``. Returns the new path (in a dry run: the path it
    would get), or ``None`` when nothing is due."""
    now = now or datetime.datetime.now()
    path = os.path.join(logs_dir, CRON_LOG)
    if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    with open(path, "rb") as handle:
        first = handle.readline(64).decode("ascii", errors="replace")
    try:
        began = datetime.datetime.strptime(first[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:  # not a line of the schedule's wrapper: the file's own age decides
        began = datetime.datetime.fromtimestamp(os.stat(path).st_mtime)
    if began.date() >= now.date():
        return None
    stem, suffix = "cron_%s" % now.strftime(STAMP), 1
    target = os.path.join(logs_dir, stem + ".log")
    while os.path.lexists(target):
        suffix += 1
        target = os.path.join(logs_dir, "%s_%d.log" % (stem, suffix))
    if not dry_run:
        os.rename(path, target)
    return target


def unwritable_sentence(where: str, exc: OSError) -> str:
    """Why the run log could not be kept, and the fix."""
    if exc.errno == errno.EROFS:
        fix = "the file system is mounted read-only: remount it read-write, or set backup_root to a writable directory"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "permission denied: run as the user that owns backup_root (become: true), or fix its owner and mode"
    elif exc.errno == errno.ENOSPC:
        fix = "no space left on the device: free some space there"
    else:
        fix = exc.strerror or str(exc)
    return "could not write the run log and report at %s: %s" % (where, fix)


def write_run(logs_dir: str, report: t.Mapping[str, t.Any], stamp: str, mode: int = 0o600) -> tuple[str, str]:
    os.makedirs(logs_dir, mode=0o700, exist_ok=True)
    log, path = run_paths(logs_dir, str(report.get("playbook") or "run"), stamp)
    _manifest.write_text(path, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n", mode)
    _manifest.write_text(log, render_log(report), mode)
    return log, path


RUN_KEYS = ("run_id", "playbook", "host", "started", "ended", "status", "stores")
RECORD_KEYS = ("store", "action", "target", "status", "artifact", "size", "duration", "median_ratio", "problems", "warnings", "error",
               "recovery_point_age_seconds", "drill")


def read_runs(logs_dir: str, kinds: t.Sequence[str] = ()) -> list[dict[str, t.Any]]:
    """The JSON run reports under ``logs_dir``, newest first (by the stamp in their name),
    cut to the run and its records; files that are not run reports are skipped."""
    try:
        names = os.listdir(logs_dir)
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        match = RUN_FILE_RE.fullmatch(name)
        if not match or not name.endswith(".json") or (kinds and match.group("kind") not in kinds):
            continue
        try:
            with open(os.path.join(logs_dir, name), encoding="utf-8") as handle:
                report = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or report.get("schema") != "cclite.backup/run-report":
            continue
        run = {k: report.get(k) for k in RUN_KEYS}
        run["file"] = name
        run["results"] = [{k: r.get(k) for k in RECORD_KEYS} for r in report.get("results") or [] if isinstance(r, dict)]
        runs.append((match.group("stamp"), name, run))
    return [run for _stamp, _name, run in sorted(runs, key=lambda x: (x[0], x[1]), reverse=True)]


# node-exporter textfile metrics ------------------------------------------------------------

METRICS: dict[str, tuple[str, str]] = {
    "cclite_backup_last_run_timestamp_seconds": ("gauge", "When the last run of the action ended (Unix time)."),
    "cclite_backup_last_run_status": ("gauge", "1 when the last run of the action was ok, 0 otherwise."),
    "cclite_backup_last_success_timestamp_seconds": ("gauge", "When the last good backup ended (Unix time)."),
    "cclite_backup_last_duration_seconds": ("gauge", "Seconds the last good backup took."),
    "cclite_backup_last_size_bytes": ("gauge", "Size of the last good backup."),
    "cclite_backup_size_median_ratio": ("gauge", "Last backup size divided by the median of the backups before it."),
    "cclite_backup_last_verification_timestamp_seconds": ("gauge", "When the backups were last verified (Unix time)."),
    "cclite_backup_last_verification_status": ("gauge", "1 when the last verification found no problem, 0 otherwise."),
    "cclite_backup_recovery_point_timestamp_seconds": (
        "gauge", "PostgreSQL point-in-time recovery: when the newest archived WAL segment was stored (Unix time)."),
    "cclite_backup_drill_last_success_timestamp_seconds": ("gauge", "When the last restore drill that passed ended (Unix time)."),
    "cclite_backup_drill_duration_seconds": ("gauge", "Seconds the restore of the last drill that passed took (the measured restore time)."),
    "cclite_backup_drill_last_status": ("gauge", "1 when the last restore drill ran and passed, 0 when it failed or could not run."),
}
# what a run record and the JSON report keep of a drill (see the restore modules' drill return)
DRILL_KEYS = ("set", "backup", "server", "ran", "passed", "started", "finished", "duration_seconds", "restore_seconds",
              "compared", "problems", "why")
SAMPLE_RE = re.compile(r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
LABEL_RE = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')

Key = t.Tuple[str, t.Tuple[t.Tuple[str, str], ...]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_metrics(text: str) -> dict[Key, float]:
    """Samples of a textfile this module wrote (comments and unknown metrics are dropped)."""
    samples: dict[Key, float] = {}
    for line in text.splitlines():
        match = SAMPLE_RE.fullmatch(line.strip())
        if not match or match.group("name") not in METRICS:
            continue
        labels = tuple(sorted((m.group("key"), _unescape(m.group("value"))) for m in LABEL_RE.finditer(match.group("labels"))))
        try:
            samples[(match.group("name"), labels)] = float(match.group("value"))
        except ValueError:
            continue
    return samples


def render_metrics(samples: t.Mapping[Key, float]) -> str:
    lines = []
    for name, (kind, help_text) in METRICS.items():
        mine = sorted((labels, value) for (metric, labels), value in samples.items() if metric == name)
        if not mine:
            continue
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in mine:
            rendered = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
            lines.append("%s{%s} %s" % (name, rendered, repr(float(value)) if value != int(value) else str(int(value))))
    return "\n".join(lines) + ("\n" if lines else "")


def epoch(value: t.Any, default: float) -> float:
    if value:
        try:
            return datetime.datetime.fromisoformat(str(value)).timestamp()
        except ValueError:
            pass
    return default


def update_metrics(samples: dict[Key, float], records: t.Iterable[t.Mapping[str, t.Any]], ended: float) -> dict[Key, float]:
    """The samples after a run: each (store, target) the run touched is updated, others kept."""
    out = dict(samples)
    for record in records:
        store, target, action = str(record.get("store") or ""), str(record.get("target") or ""), str(record.get("action") or "")
        if not store or not action:
            continue
        base = (("store", store), ("target", target))
        ok = record.get("status") == "ok"
        out[("cclite_backup_last_run_timestamp_seconds", tuple(sorted(base + (("action", action),))))] = ended
        out[("cclite_backup_last_run_status", tuple(sorted(base + (("action", action),))))] = 1.0 if ok else 0.0
        labels = tuple(sorted(base))
        if action == "backup" and ok and record.get("artifact"):
            out[("cclite_backup_last_success_timestamp_seconds", labels)] = epoch(record.get("created"), ended)
            if isinstance(record.get("duration"), (int, float)):
                out[("cclite_backup_last_duration_seconds", labels)] = float(record["duration"])
            if isinstance(record.get("size"), int):
                out[("cclite_backup_last_size_bytes", labels)] = float(record["size"])
            if isinstance(record.get("median_ratio"), (int, float)):
                out[("cclite_backup_size_median_ratio", labels)] = float(record["median_ratio"])
        if isinstance(record.get("recovery_point_age_seconds"), (int, float)):
            out[("cclite_backup_recovery_point_timestamp_seconds", labels)] = ended - float(record["recovery_point_age_seconds"])
        if action == "drill":
            drill = record.get("drill") or {}
            passed = ok and bool(drill.get("passed"))
            out[("cclite_backup_drill_last_status", labels)] = 1.0 if passed else 0.0
            if passed:
                out[("cclite_backup_drill_last_success_timestamp_seconds", labels)] = float(drill.get("finished") or ended)
                if isinstance(drill.get("restore_seconds"), (int, float)):
                    out[("cclite_backup_drill_duration_seconds", labels)] = float(drill["restore_seconds"])
        elif action == "verify":
            out[("cclite_backup_last_verification_timestamp_seconds", labels)] = ended
            out[("cclite_backup_last_verification_status", labels)] = 1.0 if ok else 0.0
    return out


def write_metrics(directory: str, records: t.Sequence[t.Mapping[str, t.Any]], ended: float,
                  name: str = METRICS_FILE) -> str:
    """Update the textfile atomically (node-exporter never sees half a file), one run at a time."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, name)
    with StoreLock(directory, "metrics", "metrics update", 60.0):
        try:
            with open(path, encoding="utf-8") as handle:
                current = parse_metrics(handle.read())
        except FileNotFoundError:
            current = {}
        _manifest.write_text(path, render_metrics(update_metrics(current, records, ended)), 0o644)
    return path
