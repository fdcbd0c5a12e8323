# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup flows every store shares: make a backup, inspect the catalog (restore: ``_restore``).

An engine supplies a :class:`Producer` (what to stream, and the statistics to record) and a
content check; the order of the steps, which is what makes a backup trustworthy, lives here:

1. check the store's directory is writable and has room for the backup (the previous
   backup's size plus a margin, or the engine's estimate for the first one); take the store's
   lock; remove the temp files of killed runs; record backups older than the journal in it;
2. stream the producer into a temp file (every stage's exit status checked), encrypted on
   the way when the spec has a key (``backup_local_encryption``, see ``_crypto``);
3. check the data as it is written (the stream decompresses, the engine's content check
   passes), then finish the producer (source statistics);
4. write the manifest and its line in the catalog journal, then rename the artifact into place;
5. only then move ``latest``, and apply retention (never deleting the newest good backup).

All along, ``_controller.Watch`` watches the Ansible run that started the module: once it has
ended, the pipeline is killed and nothing is renamed into place (a backup renamed before the
run ended is complete: ``latest`` follows it as usual). A module run in the background by the
``backup_job`` action is watched through the action's heartbeat beside its progress file.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _controller, _crypto, _manifest, _progress
from ansible_collections.cclite.backup.plugins.module_utils._core import _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Source, StreamChecked, Written, write_artifact
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog, Entry, local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._retention import Keep
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import ContentCheck, Report, Rules, check_data, verify

ContentFactory = t.Callable[[], t.Optional[ContentCheck]]


class Producer(t.Protocol):
    def start(self) -> Source: ...

    def finish(self) -> dict[str, t.Any]: ...

    def close(self) -> None: ...


class TreeWriter(t.Protocol):
    """Writes a backup that is a directory (see ``_tree``) instead of streaming a file:
    ``write(dest, commit)`` fills a temp directory, checks it, calls ``commit(temp, written)``
    and renames it onto ``dest``, or raises and leaves nothing there."""

    def write(self, dest: str, commit: t.Callable[[str, Written], None]) -> Written: ...


@dataclasses.dataclass
class BackupSpec:
    catalog: Catalog
    compression: Compression
    fmt: str
    content: ContentFactory
    database: str = ""
    kind: str = "scheduled"
    move_latest: bool = True
    retention_days: int | None = None
    retention_keep: Keep | None = None  # generations kept beyond the days (_retention)
    verify_after: bool = True
    content_stats: bool = False  # the content check's stats() are the source statistics
    lock_timeout: float = 600.0
    file_mode: int = 0o600
    # the engine's cheap estimate of the data's size in bytes (None: it cannot tell), used
    # by the free-space check of a first backup
    estimate: t.Callable[[], int | None] | None = None
    # the backup.yml run this backup is part of (its set) and the inventory host; empty: none
    run_id: str = ""
    host: str = ""
    # encrypt the artifact at rest with this key (backup_local_encryption); None: plaintext
    encryption: _crypto.Key | None = None


def artifact_result(written: Written, spec: BackupSpec, versions: t.Mapping[str, str]) -> dict[str, t.Any]:
    return {
        "path": written.path,
        "name": os.path.basename(written.path),
        "size": written.size,
        "sha256": written.sha256,
        "format": spec.fmt,
        "compression": spec.compression.algorithm,
        "encrypted": spec.encryption is not None,
        "created": written.ended.isoformat(),
        "duration": written.duration,
        "versions": dict(versions),
    }


def checked_problems(checked: StreamChecked) -> list[str]:
    """The read-back check, made on the bytes as they were written (see ``_artifact``): the
    stream decompresses to the end, is not empty, and passes the engine's content check."""
    if checked.stream:
        return [checked.stream]
    if checked.content_size == 0:
        return ["the backup is empty once decompressed"]
    return [checked.content] if checked.content else []


def is_good(entry: Entry, content: ContentFactory) -> bool:
    """Whether a backup verifies as good: its data reads back and matches its manifest (a
    backup whose manifest is gone or disagrees with the journal never is)."""
    if entry.manifest_error:
        return False
    report = Report(entry.name, entry.path)
    check_data(report, entry, content())
    return report.state == "good"


def refuse_encrypted_tree(spec: BackupSpec, tree: bool) -> None:
    """A directory backup is many files read by pg_restore itself: not encrypted at rest yet."""
    if spec.encryption is not None and tree:
        raise ConfigError(
            "backup_local_encryption is on and postgresql_backup_format is directory: directory-format backups "
            "cannot be encrypted at rest yet; set postgresql_backup_format: plain, or turn backup_local_encryption off"
        )


def make_backup(
    spec: BackupSpec, producer: Producer, versions: t.Mapping[str, str], tree: TreeWriter | None = None,
) -> dict[str, t.Any]:
    """The backup flow (module docstring); with ``tree``, the backup is a directory it writes."""
    refuse_encrypted_tree(spec, tree is not None or spec.fmt == _tree.ALGORITHM)
    catalog = spec.catalog
    catalog.writable()
    catalog.ensure()
    catalog.preflight()
    result: dict[str, t.Any] = {}
    watching = _controller.Watch(heartbeat=_controller.heartbeat_of(_progress.alive_file()))  # an async job: its action's heartbeat
    with watching as watch, StoreLock(catalog.directory, catalog.layout.store, "%s backup" % catalog.layout.store, spec.lock_timeout):
        removed = catalog.remove_stale_partials()
        record_unjournaled(catalog)
        needed = catalog.expected_size(spec.estimate, spec.compression.algorithm != "none")
        space = catalog.free_space(*needed)
        path = catalog.new_path(_tree.SUFFIX if tree is not None else spec.compression.extension)
        manifest_path = _manifest.path_for(path)

        content = spec.content() if (spec.verify_after or spec.content_stats) and tree is None else None

        def commit(tmp: str, written: Written) -> None:
            stats = producer.finish()
            if spec.content_stats and content is not None:
                stats = dict(stats, **getattr(content, "stats")())
            if written.checked is not None:
                problems = checked_problems(written.checked)
                if problems:
                    raise VerifyError("the new backup failed its read-back check: %s" % "; ".join(problems))
            manifest = _manifest.build(
                catalog.layout.store,
                written,
                getattr(tree, "compression", None) or spec.compression,  # a tree says how its files are compressed
                fmt=spec.fmt,
                database=spec.database,
                series=catalog.series,
                versions=versions,
                source=stats,
                kind=spec.kind,
                host=spec.host,
                run_id=spec.run_id,
                encryption=_crypto.describe(spec.encryption) if spec.encryption is not None else None,
            )
            _manifest.write(path, manifest, spec.file_mode)
            result["manifest"] = manifest
            watch.check("renaming %s into place" % os.path.basename(path))

        check: t.Any = content if content is not None else (True if spec.verify_after else None)
        _progress.phase("safety backup" if spec.kind == "safety" else "backup", expected_bytes(catalog, needed[0]))
        try:
            try:
                if tree is not None:
                    written = tree.write(path, commit)
                else:
                    written = write_artifact(producer.start(), path, spec.compression, spec.file_mode, commit, check, spec.encryption)
            finally:
                producer.close()
            _progress.point_fixed()  # at the latest: the data is all written
            _progress.phase("finishing")
        except BaseException:
            if os.path.exists(manifest_path) and not os.path.exists(path):
                os.unlink(manifest_path)
                catalog.journal.remove(os.path.basename(path))
            watch.check("the backup")  # a pipeline killed because the run ended: say so
            raise
        out: dict[str, t.Any] = {
            "artifact": artifact_result(written, spec, versions),
            "manifest": manifest_path,
            "source": result["manifest"]["source"],
            "latest": None,
            "retention": None,
            "preflight": space,
            "removed_partials": removed,
        }
        if spec.move_latest:
            out["latest"] = catalog.point_latest(written.path)
        if spec.retention_days is not None:
            pruned = catalog.prune(
                spec.retention_days, lambda e: e.path == written.path or is_good(e, spec.content), keep=spec.retention_keep
            )
            out["retention"] = dataclasses.asdict(pruned)
        # the sizes before it, once retention is done: what the report's size trend compares
        found = catalog.history(os.path.basename(written.path))
        out["artifact"]["history"] = found[1][:HISTORY] if found else []
    return out


HISTORY = 30


def expected_bytes(catalog: Catalog, first: int | None) -> int | None:
    """What the new backup's size is expected to be, for progress: the newest backup's size,
    else ``first``, what the free-space check expects of a first backup (None: unknown)."""
    for entry in catalog.entries():
        if entry.size:
            return entry.size
    return first


def record_unjournaled(catalog: Catalog) -> None:
    """Give the journal a line for each backup with a manifest made before the journal existed,
    so that from now on its manifest cannot go missing unnoticed. Call it under the lock."""
    for entry in catalog.entries():
        if entry.manifest is not None and entry.journal is None and not entry.manifest_error:
            catalog.journal.add(entry.manifest)


def predict_backup(spec: BackupSpec) -> dict[str, t.Any]:
    """What a backup would do, for check mode: same shape, nothing written."""
    refuse_encrypted_tree(spec, spec.fmt == _tree.ALGORITHM)
    catalog = spec.catalog
    catalog.writable()
    catalog.preflight()
    space = catalog.free_space(*catalog.expected_size(spec.estimate, spec.compression.algorithm != "none"))
    extension = _tree.SUFFIX if spec.fmt == _tree.ALGORITHM else spec.compression.extension
    path = os.path.join(catalog.directory, catalog.file_name(local_now(), extension))
    out: dict[str, t.Any] = {
        "artifact": {"path": path, "name": os.path.basename(path), "size": None, "sha256": None,
                     "format": spec.fmt, "compression": spec.compression.algorithm,
                     "encrypted": spec.encryption is not None, "created": None,
                     "duration": None, "versions": {}, "history": [e.size for e in catalog.entries()][:HISTORY]},
        "manifest": _manifest.path_for(path),
        "source": {},
        "latest": os.path.join(catalog.directory, catalog.latest_name(extension)) if spec.move_latest else None,
        "retention": None,
        "preflight": space,
        "removed_partials": [{"name": p.name, "size": p.size, "pid": p.pid} for p in catalog.partials() if p.stale],
    }
    if spec.retention_days is not None:
        pruned = catalog.prune(spec.retention_days, lambda e: is_good(e, spec.content), dry_run=True, keep=spec.retention_keep)
        out["retention"] = dataclasses.asdict(pruned)
    return out


def inspect(
    catalog: Catalog,
    rules: Rules,
    level: str,
    content: ContentFactory,
    now: datetime.datetime | None = None,
    deep: t.Callable[[Entry, Report], None] | None = None,
) -> dict[str, t.Any]:
    """List the catalog and check each backup at ``level`` (none, quick, full; deep adds the
    engine's deep check on the newest). Returns what every ``*_backup_info`` module returns:
    directory, backups, latest, problems, healthy.

    The age rule applies to the newest backup only (is a backup being made?); the size-drop
    rule compares each backup with the ones before it. Temp files left by killed runs are
    problems (with their sizes) until the next run removes them, and ``latest`` must point at
    the newest backup whose checks found it intact.
    """
    now = now or local_now()
    entries = catalog.entries()
    backups: list[dict[str, t.Any]] = []
    problems: list[str] = []
    for partial in catalog.partials():
        if partial.stale:
            problems.append(
                "%s: a temp file (%d bytes) left by a run that was killed; the next backup run removes it"
                % (partial.path, partial.size)
            )
    if not entries and level != "none":
        problems.append("no %s backup in %s" % (catalog.layout.store, catalog.directory))
    intact: list[Entry] = []
    for index, entry in enumerate(entries):
        item = entry.as_dict()
        if level != "none":
            report = verify(
                entry,
                entries[index + 1:],
                rules,
                now,
                check_age=index == 0,
                read_data=level in ("full", "deep"),
                content=content() if level in ("full", "deep") else None,
            )
            if deep is not None and index == 0 and not report.problems:
                deep(entry, report)
                if report.checks.get("deep") == "skipped":  # asked for and not made: never healthy
                    report.failed("deep", "the deep check did not run (%s)" % (report.notes[-1].split(": ", 1)[-1] if report.notes else "no reason given"))
            item["verification"] = report.as_dict()
            problems.extend(report.problems)
            if not any(report.checks.get(c) == "failed" for c in INTEGRITY_CHECKS):
                intact.append(entry)
        backups.append(item)
    if level != "none":
        problems.extend(latest_problems(catalog, intact))
    return {
        "directory": catalog.directory,
        "backups": backups,
        "latest": latest_listed(catalog),
        "problems": problems,
        "healthy": not problems,
    }


def latest_listed(catalog: Catalog) -> dict[str, t.Any] | None:
    """What ``latest`` names, for a listing; ``None`` when there is none or the link is refused
    (inspect reports why)."""
    try:
        latest = catalog.latest()
    except ConfigError:
        return None
    return latest.as_dict() if latest else None


# the checks whose failure makes a backup unusable (age and size only raise doubts)
INTEGRITY_CHECKS = ("manifest", "stream", "sha256", "content")


def latest_problems(catalog: Catalog, intact: t.Sequence[Entry]) -> list[str]:
    """``latest`` must point at the newest intact backup (``intact`` is newest first)."""
    try:
        found = catalog.latest_link()
    except ConfigError as exc:
        return [exc.msg]
    if found is None:
        return []
    link, name = found
    if not os.path.exists(os.path.join(catalog.directory, name)):
        return ["%s points at %s, which does not exist: run a backup, or point it at %s" % (
            link, name, intact[0].name if intact else "a good backup")]
    if not intact:
        return ["%s points at %s, and no backup of %s checks out as intact" % (link, name, catalog.directory)]
    if name != intact[0].name:
        return ["%s points at %s, but the newest intact backup is %s: a restore of latest would take the "
                "wrong file; run a backup (it moves latest), or restore %s by name" % (link, name, intact[0].name, intact[0].name)]
    return []
