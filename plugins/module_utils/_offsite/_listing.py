# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The remote catalog as the playbooks see it: list and check the copies, resolve a name to copies."""

from __future__ import annotations

import datetime
import random
import re
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _manifest, _sets
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._offsite._checks import apply_stream, check_object, check_stream, download, new_report
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import Remote, RemoteEntry, layout_for


def inspect(
    remote: Remote,
    store: str,
    level: str,
    max_age_hours: float,
    key: _crypto.Key | None,
    sample: int = 1,
    now: datetime.datetime | None = None,
    rng: random.Random | None = None,
) -> dict[str, t.Any]:
    """List a store's copies on S3 and check them at ``level`` (none, quick, full)."""
    now = now or local_now()
    entries = remote.entries(store, load_manifests=level != "none")
    backups = []
    problems: list[str] = []
    if not entries and level != "none":
        problems.append("no %s copy on %s" % (store, remote.conn.url(store)))
    newest: dict[str, RemoteEntry] = {}
    for entry in entries:
        newest.setdefault(entry.series, entry)
    downloads: set[str] = set()
    if level == "full" and sample > 0:
        # the newest copy of each series always, then others at random up to ``sample``
        downloads = {e.name for e in newest.values() if e.manifest or e.legacy}
        others = [e.name for e in entries if (e.manifest or e.legacy) and e.name not in downloads]
        (rng or random.Random()).shuffle(others)
        downloads.update(others[: max(0, sample - len(downloads))])
    for entry in entries:
        item = entry.as_dict(remote.conn)
        if level != "none":
            report = new_report(entry)
            if newest.get(entry.series) is entry:
                age = (now - entry.created).total_seconds() / 3600.0
                if age > max_age_hours:
                    report.failed(
                        "age",
                        "the newest copy on S3 is %.1f hours old (limit %g): off-site copies are not being made" % (age, max_age_hours),
                    )
                else:
                    report.passed("age")
            check_object(remote, entry, report)
            enc = entry.encryption or entry.at_rest  # the copy's layer, or the backup's own at rest
            if enc and not report.problems:
                if key is None or key.key_id != enc.get("key_id"):
                    report.failed(
                        "key",
                        "encrypted with key id %s, which the configured key (%s) cannot decrypt: a restore would fail"
                        % (enc.get("key_id"), key.key_id if key else "none"),
                    )
                else:
                    report.passed("key")
            if entry.name in downloads and not report.problems and entry.legacy:
                if entry.stream is None:
                    check_stream(remote, entry)
                apply_stream(entry, report)
            elif entry.name in downloads and not report.problems:
                try:
                    download(remote, entry, key, None)
                    report.passed("download")
                except BackupError as exc:
                    report.failed("download", exc.msg)
            elif entry.legacy and level == "full" and not report.problems:
                report.skipped("stream", "not in this run's download sample")
            item["verification"] = report.as_dict()
            problems.extend(report.problems)
        backups.append(item)
    return {
        "store": store,
        "directory": remote.conn.url(store),
        "backups": backups,
        "latest": backups[0] if backups else None,
        "problems": problems,
        "healthy": not problems,
    }


# Download into the local catalog ------------------------------------------------------------


def is_latest(name: str) -> bool:
    return name == "latest" or bool(re.fullmatch(r"latest(_.+)?\.[a-z]+(\.gz|\.zst)?", name))


def resolve(remote: Remote, store: str, name: str, series: t.Sequence[str]) -> list[list[RemoteEntry]]:
    """What to download: for ``latest``, the candidates of each series newest first - legacy
    copies that pass the cheap checks, ending with the newest good copy that has a manifest
    (the first one whose stream checks out is taken); or the one named copy."""
    if not name:
        raise ConfigError("no backup name given: use a file name from the list, or 'latest'")
    if "/" in name or name in (".", ".."):
        raise ConfigError("%r is not a backup file name: give a name from the list, without directories" % name)
    entries = remote.entries(store)
    if is_latest(name):
        named = re.fullmatch(r"latest_(.+?)\.[a-z]+(?:\.gz|\.zst)?", name)
        if named and not series:
            series = [named.group(1)]  # latest_<series>.sql.gz names one series
        chosen = []
        by_series: dict[str, list[RemoteEntry]] = {}
        for entry in entries:
            by_series.setdefault(entry.series, []).append(entry)
        wanted = list(series) or sorted(by_series)
        for one in wanted:
            candidates = []
            for entry in by_series.get(one, []):
                report = new_report(entry)
                check_object(remote, entry, report)
                if report.problems:
                    continue
                candidates.append(entry)
                if not entry.legacy and report.state == "good":
                    break
            if not candidates:
                raise ConfigError(
                    "no good %s copy%s on %s: list.yml shows what is there"
                    % (store, " of series %s" % one if one else "", remote.conn.url(store))
                )
            chosen.append(candidates)
        if not chosen:
            raise ConfigError("there is no %s copy on %s" % (store, remote.conn.url(store)))
        return chosen
    found = next((e for e in entries if e.name == name), None)
    if found is None:
        if not layout_for(store).pattern().fullmatch(name):
            raise ConfigError("%r is not a %s backup name" % (name, store))
        raise ConfigError("%s is not on %s: list.yml shows what is there" % (name, remote.conn.url(store)))
    report = new_report(found)
    check_object(remote, found, report)
    if report.problems:
        raise VerifyError("refusing to download %s: %s" % (name, "; ".join(report.problems)))
    return [[found]]


def set_members(remote: Remote, store: str) -> list[_sets.Member]:
    """The copies of a store on S3 (of the connection's host) as backup set members, each
    checked without a download (manifest, size, S3's checksum). Sets hold the default series
    (the guide's names) only, as the local catalog's."""
    members = []
    for entry in remote.entries(store):
        if entry.series:
            continue
        report = new_report(entry)
        check_object(remote, entry, report)
        if entry.legacy:
            status, problem = "legacy", "no manifest on S3: adopt it (adopt.yml) to make it part of a set"
        elif entry.incomplete:
            status, problem = "incomplete", "the upload did not finish"
        elif report.problems:
            status, problem = "bad", "; ".join(report.problems)
        else:
            status, problem = _sets.GOOD, ""
        run_id = (entry.manifest or {}).get("run_id") or None
        members.append(_sets.Member(store, entry.name, entry.stamp, run_id, _manifest.owner(entry.manifest), status, problem))
    return members
