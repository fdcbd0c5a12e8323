# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that turn the run records of every host into a table, a run summary, a webhook
payload, and that take secrets out of any of them."""

from __future__ import annotations

import os
import re
import typing as t
import urllib.parse

from ansible.errors import AnsibleFilterError

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

MASK = "********"
MIN_SECRET_LENGTH = 3
EMOJI = {"ok": ":white_check_mark:", "problems": ":warning:", "failed": ":x:"}
COLORS = {"ok": "good", "problems": "warning", "failed": "danger"}
SHOWN = ("store", "action", "target", "status", "artifact", "size", "previous_size", "size_change",
         "size_change_percent", "median_size", "duration", "problems", "warnings", "error", "drill")


def run_table(hosts: t.Mapping[str, t.Sequence[t.Mapping[str, t.Any]]], unreachable: t.Sequence[str] | None = None) -> list[str]:
    """An aligned table, one row per host, store and target."""
    if not isinstance(hosts, t.Mapping):
        raise AnsibleFilterError("run_table expects a mapping of host name to run records")
    return _report.table(hosts, unreachable or [])


def size_trend(
    records: t.Sequence[t.Mapping[str, t.Any]],
    history: int = 7,
    min_history: int = 3,
    smaller_ratio: float = 0.5,
    larger_ratio: float = 2.0,
) -> list[dict[str, t.Any]]:
    """The records with their size trend, from the sizes the backup modules returned
    (``history``); records without them come back unchanged (with a ``warnings`` list)."""
    if not isinstance(records, t.Sequence) or isinstance(records, (str, bytes)):
        raise AnsibleFilterError("size_trend expects a list of run records")
    out = []
    for record in records:
        sizes = record.get("history")
        if record.get("action") == "backup" and isinstance(sizes, list):
            trimmed = {k: v for k, v in record.items() if k != "history"}
            out.append(_report.trend(trimmed, [int(s) for s in sizes], history, min_history, smaller_ratio, larger_ratio))
        else:
            out.append(dict(record, warnings=list(record.get("warnings") or [])))
    return out


def _where(host: str, record: t.Mapping[str, t.Any]) -> str:
    return " ".join(str(p) for p in (host, record.get("store"), record.get("action"), record.get("target")) if p)


def run_summary(
    hosts: t.Mapping[str, t.Sequence[t.Mapping[str, t.Any]]],
    run: t.Mapping[str, t.Any] | None = None,
    unreachable: t.Sequence[str] | None = None,
) -> dict[str, t.Any]:
    """The run as one document: overall status, per host and store results, errors, warnings."""
    run = run or {}
    unreachable = sorted(unreachable or [])
    out_hosts, errors, warnings = [], [], []
    counts = {"ok": 0, "problems": 0, "failed": 0}
    for host in sorted(hosts):
        records = list(hosts[host] or [])
        results = []
        for record in records:
            status = record.get("status") if record.get("status") in counts else "failed"
            counts[status] += 1
            shown = {k: record.get(k) for k in SHOWN}
            shown["status"] = status
            shown["artifact"] = os.path.basename(str(record["artifact"])) if record.get("artifact") else None
            shown["size_human"] = _report.human_size(record.get("size"))
            shown["size_change_human"] = _report.size_change_text(record)
            shown["problems"] = list(record.get("problems") or [])
            shown["warnings"] = list(record.get("warnings") or [])
            results.append(shown)
            if record.get("error"):
                errors.append("%s: %s" % (_where(host, record), record["error"]))
            errors.extend("%s: %s" % (_where(host, record), p) for p in shown["problems"])
            warnings.extend("%s: %s" % (_where(host, record), w) for w in shown["warnings"])
        out_hosts.append({"host": host, "status": _report.overall_status(results) if results else "failed", "results": results})
        if not results:
            errors.append("%s: no store was handled" % host)
    errors.extend("%s: the host failed or could not be reached" % host for host in unreachable)
    statuses = [h["status"] for h in out_hosts] + ["failed"] * len(unreachable)
    status = _report.overall_status({"status": s} for s in statuses) if statuses else "failed"
    kind = run.get("kind") or "run"
    parts = ["%d %s" % (n, name) for name, n in counts.items() if n]
    if unreachable:
        parts.append("%d host(s) unreachable" % len(unreachable))
    host_count = len(out_hosts) + len(unreachable)
    summary = "cclite.backup %s %s on %d host%s: %s" % (
        kind, status.upper(), host_count, "" if host_count == 1 else "s", ", ".join(parts) or "nothing was done")
    if run.get("id"):
        summary += " (run %s)" % run["id"]
    return {
        "source": "cclite.backup",
        "kind": kind,
        "run_id": run.get("id"),
        "started": run.get("started"),
        "ended": run.get("ended"),
        "status": status,
        "summary": summary,
        "counts": counts,
        "hosts": out_hosts,
        "unreachable": unreachable,
        "errors": errors,
        "warnings": warnings,
    }


def drill_words(drill: t.Mapping[str, t.Any]) -> str:
    """A drill in a few words: passed (restore time, what was compared), failed, or did not run."""
    if drill.get("passed"):
        compared = drill.get("compared") or {}
        counted = ", ".join("%d %s" % (len(v), k) for k, v in compared.items() if isinstance(v, (dict, list)) and k != "sample")
        return "passed: %s restored in %.1fs%s" % (drill.get("backup"), drill.get("restore_seconds") or 0, " (%s compared)" % counted if counted else "")
    if not drill.get("ran"):
        return "did not run: %s" % drill.get("why")
    return "FAILED: %s" % drill.get("why")


def _slack(summary: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    attachments = []
    for host in summary.get("hosts") or []:
        for result in host.get("results") or []:
            fields = [{"title": "Status", "value": str(result["status"]).upper(), "short": True}]
            if result.get("artifact"):
                fields.append({"title": "Artifact", "value": result["artifact"], "short": True})
            if result.get("size") is not None:
                fields.append({"title": "Size", "value": result["size_human"], "short": True})
            if result.get("size_change") is not None:
                fields.append({"title": "Change vs previous", "value": result["size_change_human"], "short": True})
            if result.get("duration") is not None:
                fields.append({"title": "Duration", "value": "%.1fs" % result["duration"], "short": True})
            drill = result.get("drill") or {}
            if drill:
                fields.append({"title": "Drill", "value": drill_words(drill), "short": False})
            notes = ([result["error"]] if result.get("error") else []) + result.get("problems", []) + result.get("warnings", [])
            attachments.append({
                "color": COLORS.get(result["status"], "danger") if result["status"] != "ok" or not result.get("warnings") else "warning",
                "title": " / ".join(str(p) for p in (host["host"], result.get("store"), result.get("target") or result.get("action")) if p),
                "text": "\n".join("• %s" % n for n in notes),
                "fields": fields,
            })
    for host in summary.get("unreachable") or []:
        attachments.append({"color": "danger", "title": host, "text": "• the host failed or could not be reached", "fields": []})
    if summary.get("errors"):
        attachments.append({"color": "danger", "title": "Errors", "text": "\n".join("• %s" % e for e in summary["errors"]), "fields": []})
    if summary.get("warnings"):
        attachments.append({"color": "warning", "title": "Warnings", "text": "\n".join("• %s" % w for w in summary["warnings"]), "fields": []})
    status = summary.get("status", "failed")
    return {
        "text": "%s %s" % (EMOJI.get(status, EMOJI["failed"]), summary.get("summary", "")),
        "attachments": attachments,
    }


def notification_payload(summary: t.Mapping[str, t.Any], fmt: str = "slack") -> dict[str, t.Any]:
    """The webhook body for a run summary: ``slack`` (text and attachments) or ``json`` (the summary)."""
    if fmt == "slack":
        return _slack(summary)
    if fmt == "json":
        return dict(summary, text=summary.get("summary", ""))
    raise AnsibleFilterError("notification format %r is not supported: use slack or json" % fmt)


def _variants(secret: str) -> list[str]:
    return sorted({secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}, key=len, reverse=True)


def redact(data: t.Any, secrets: t.Sequence[t.Any] | None = None) -> t.Any:
    """``data`` with every occurrence of each secret (and its URL-encoded forms) masked.

    Strings shorter than three characters are not masked: they would mangle every message
    without protecting anything.
    """
    values = sorted({str(s) for s in (secrets or []) if isinstance(s, (str, int)) and not isinstance(s, bool) and len(str(s)) >= MIN_SECRET_LENGTH},
                    key=len, reverse=True)
    patterns = [v for s in values for v in _variants(s)]

    def clean(value: t.Any) -> t.Any:
        if isinstance(value, str):
            for pattern in patterns:
                if pattern in value:
                    value = value.replace(pattern, MASK)
            return value
        if isinstance(value, t.Mapping):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(data)


def notification_outcome(result: t.Mapping[str, t.Any], channel: str) -> list[dict[str, t.Any]]:
    """What a registered ``uri`` result says about a notification: ``[]`` when it was skipped,
    else one record with ``channel``, ``status`` (ok or failed), ``http_status`` and ``message``."""
    if not isinstance(result, t.Mapping) or result.get("skipped"):
        return []
    code = result.get("status")
    ok = isinstance(code, int) and 200 <= code < 300 and not result.get("failed")
    if ok:
        message = "%s delivered (HTTP %s)" % (channel, code)
    else:
        message = "%s could not be delivered: %s" % (channel, result.get("msg") or "HTTP %s" % code)
    return [{"channel": channel, "status": "ok" if ok else "failed", "http_status": code, "message": message}]


def secret_values(hostvars: t.Mapping[str, t.Any], hosts: t.Sequence[str], pattern: str) -> list[str]:
    """The values of every variable of ``hosts`` whose name matches ``pattern`` (strings only).

    A variable that cannot be templated is skipped: no task could have put its value in a
    message either.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise AnsibleFilterError("secret name pattern %r is not a regular expression: %s" % (pattern, exc)) from exc
    found: set[str] = set()
    for host in hosts:
        try:
            variables = hostvars[host]
            names = [n for n in list(variables.keys()) if isinstance(n, str) and regex.search(n)]
        except Exception:  # pylint: disable=broad-except  # an unknown host has no secrets to hide
            continue
        for name in names:
            try:
                value = variables[name]
            except Exception:  # pylint: disable=broad-except  # see the docstring
                continue
            if isinstance(value, str) and value:
                found.add(str(value))
    return sorted(found)


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            "size_trend": size_trend,
            "run_table": run_table,
            "run_summary": run_summary,
            "notification_payload": notification_payload,
            "redact": redact,
            "secret_values": secret_values,
            "notification_outcome": notification_outcome,
        }
