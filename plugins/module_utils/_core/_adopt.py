# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Adoption: give the guide's legacy backups (no manifest) a manifest once they prove good.

For each legacy backup of a catalog, under the store's lock:

1. the guide's rules that need no read of the data (size floor, size drop; not the age rule:
   an old backup is not a bad one);
2. one read of the artifact: stream integrity, the engine's content check, sha256 of the
   stored bytes;
3. the engine's deep check on *that* backup (a scratch restore), which measures what the
   backup holds (rows per table, keys per database, points per collection);
4. the file is stat'ed again: a file that changed while it was checked is not adopted;
5. the manifest is written atomically beside it: kind ``adopted``, the sha256 read in step 2,
   the measured statistics as ``source``, so later verifies and restores compare against them.

The artifact itself is never written, moved or renamed. A backup that fails any check stays
legacy and is reported with its problems; it is not deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog, Entry, local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import ContentCheck, Report, Rules, check_data, check_rules

DeepCheck = t.Callable[[Entry, Report], None]
HEAD_BYTES = 64 * 1024


@dataclasses.dataclass
class AdoptSpec:
    """What one engine brings to adoption."""

    catalog: Catalog
    content: t.Callable[[], t.Optional[ContentCheck]]
    deep: DeepCheck  # must fill ``report.measured`` when it passes
    fmt: str  # the format the engine's own backups record
    versions: t.Callable[[bytes], dict[str, str]] = lambda head: {}  # read from the start of the content
    rules: Rules = dataclasses.field(default_factory=Rules)
    database: str = ""
    lock_timeout: float = 600.0
    file_mode: int = 0o600


def _fingerprint(path: str) -> tuple[int, int, int]:
    """Size, mtime and inode; of a directory backup, its files' total size and newest mtime."""
    info = os.stat(path)
    if not os.path.isdir(path):
        return info.st_size, info.st_mtime_ns, info.st_ino
    mtimes = [info.st_mtime_ns] + [os.stat(os.path.join(path, n)).st_mtime_ns for n in _tree.names(path)]
    return _tree.size(path), max(mtimes), info.st_ino


def read_head(path: str, limit: int = HEAD_BYTES) -> bytes:
    """The first ``limit`` decompressed bytes of an artifact (empty when unreadable)."""
    head = b""
    chunks = ArtifactReader(path).chunks()
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= limit:
                break
    except BackupError:
        pass
    finally:
        t.cast(t.Generator[bytes, None, None], chunks).close()
    return head[:limit]


def check(spec: AdoptSpec, entry: Entry, older: t.Sequence[Entry], now: datetime.datetime) -> Report:
    """Every check a backup must pass to be adopted; ``report.problems`` says why it was not."""
    report = Report(entry.name, entry.path)
    check_rules(report, entry, older, spec.rules, now, check_age=False)
    if report.problems:
        return report
    check_data(report, entry, spec.content())
    if report.problems:
        return report
    try:
        spec.deep(entry, report)
    except BackupError as exc:
        report.failed("deep", exc.msg)
    state = report.checks.get("deep")
    if state == "skipped":
        why = [n for n in report.notes if "deep not checked" in n]
        report.problems.append(
            "%s: the deep check could not run, so there is nothing to record as its contents (%s)"
            % (entry.name, "; ".join(why) or "skipped")
        )
    elif state == "ok" and not report.measured:
        report.failed("deep", "the deep check measured nothing to record")
    elif state is None and not report.problems:
        report.failed("deep", "no deep check ran")
    return report


def build_manifest(spec: AdoptSpec, entry: Entry, report: Report, mtime_ns: int, now: datetime.datetime) -> dict[str, t.Any]:
    ended = datetime.datetime.fromtimestamp(mtime_ns / 1e9, datetime.timezone.utc).astimezone(now.tzinfo)
    written = Written(entry.path, t.cast(int, report.size), t.cast(str, report.sha256), entry.stamp, ended, None, report.files)
    versions = spec.versions(read_head(entry.path))
    return _manifest.build(
        spec.catalog.layout.store,
        written,
        {"algorithm": entry.algorithm, "level": None, "program": None},
        fmt=_tree.ALGORITHM if entry.tree else spec.fmt,  # a directory dump among plain ones
        database=spec.database,
        series=spec.catalog.series,
        versions={k: v for k, v in versions.items() if v},
        source=report.measured,
        kind="adopted",
        adopted={
            "at": now.isoformat(),
            "checks": dict(report.checks),
            "notes": list(report.notes),
            "collection_version": _manifest.COLLECTION_VERSION,
        },
    )


def adopt(spec: AdoptSpec, check_mode: bool, now: datetime.datetime | None = None) -> dict[str, t.Any]:
    """Check every legacy backup of the catalog and write a manifest for each that passes.

    In check mode everything is checked (scratch restores included) and nothing is written.
    Returns ``adopted``, ``failed_adoption``, ``not_legacy`` (backups with a manifest, left alone) and
    ``problems``; ``changed`` when a manifest was (or, in check mode, would be) written.
    """
    catalog = spec.catalog
    now = now or local_now()
    out: dict[str, t.Any] = {"directory": catalog.directory, "adopted": [], "failed_adoption": [], "not_legacy": [], "problems": []}
    locked = os.path.isdir(catalog.directory) and not check_mode
    lock = StoreLock(catalog.directory, catalog.layout.store, "%s adopt" % catalog.layout.store, spec.lock_timeout) if locked else None
    with lock or contextlib.nullcontext():
        entries = catalog.entries()
        for index, entry in enumerate(entries):
            if entry.manifest_error:
                out["not_legacy"].append({"name": entry.name, "path": entry.path, "reason": entry.manifest_error})
                continue
            if entry.manifest is not None:
                out["not_legacy"].append({"name": entry.name, "path": entry.path, "reason": "has a manifest (%s)" % entry.manifest.get("kind")})
                continue
            before = _fingerprint(entry.path)
            report = check(spec, entry, entries[index + 1:], now)
            if not report.problems:
                try:
                    after: tuple[int, int, int] | None = _fingerprint(entry.path)
                except FileNotFoundError:
                    after = None
                if after != before or report.size != before[0]:
                    report.problems.append("%s: the file changed while it was checked; run again once nothing writes it" % entry.name)
            if report.problems:
                out["failed_adoption"].append(
                    {"name": entry.name, "path": entry.path, "problems": report.problems, "checks": report.checks, "notes": report.notes}
                )
                out["problems"].extend(report.problems)
                continue
            manifest = build_manifest(spec, entry, report, before[1], now)
            if not check_mode:
                try:
                    _manifest.write(entry.path, manifest, spec.file_mode)
                except OSError as exc:
                    raise VerifyError(
                        "cannot write the manifest of %s (%s); nothing else was changed" % (entry.name, exc.strerror or exc), **out
                    ) from exc
            out["adopted"].append(
                {
                    "name": entry.name,
                    "path": entry.path,
                    "manifest": _manifest.path_for(entry.path),
                    "size": manifest["artifact"]["size"],
                    "sha256": manifest["artifact"]["sha256"],
                    "started": manifest["started"],
                    "ended": manifest["ended"],
                    "versions": manifest["versions"],
                    "source": manifest["source"],
                    "checks": report.checks,
                    "notes": report.notes,
                }
            )
    out["changed"] = bool(out["adopted"])
    return out


def result(out: dict[str, t.Any], check_mode: bool, fail_on_problems: bool) -> dict[str, t.Any]:
    """A module's result: a summary ``msg``; fails listing every problem when asked to."""
    verb = "would adopt" if check_mode else "adopted"
    msg = "%s %d legacy backup(s)" % (verb, len(out["adopted"]))
    if out["failed_adoption"]:
        msg += "; %d did not pass and stay legacy: %s" % (len(out["failed_adoption"]), "; ".join(out["problems"]))
    if out["not_legacy"]:
        msg += "; %d skipped (not legacy: they have a manifest, or one that cannot be read)" % len(out["not_legacy"])
    out["msg"] = msg
    if fail_on_problems and out["failed_adoption"]:
        raise VerifyError(msg, **{k: v for k, v in out.items() if k != "msg"})
    return out
