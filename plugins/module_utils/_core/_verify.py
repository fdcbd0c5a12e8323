# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The checks every store shares: the guide's rules (existence, age, size, stream integrity)
plus the manifest's size and sha256, and an engine's content check on the decompressed stream.
An encrypted backup (``_crypto``) read without its key fails the ``key`` check, not ``stream``.

Engines add their own content check (a callable fed every decompressed chunk that returns a
problem or ``None``) and, separately, their deep checks.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Consumer
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry, median_size
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, StageError


ContentCheck = Consumer  # an engine's content check: fed every decompressed chunk, then result()


class TreeContent(t.Protocol):
    """The content check of a tree backup: a check per file (``None``: none for that file),
    and the problem of the whole (a file that must be there, say), or ``None``."""

    def consumer_for(self, name: str) -> Consumer | None: ...

    def tree_result(self, names: t.Sequence[str]) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class Rules:
    max_age_hours: float = 25.0
    min_size_bytes: int = 1024
    size_drop_ratio: float = 0.5  # smaller than this share of the recent median is suspicious
    size_history: int = 5


@dataclasses.dataclass
class Report:
    """What the checks found for one backup."""

    name: str
    path: str
    checks: dict[str, str] = dataclasses.field(default_factory=dict)  # check -> ok | failed | skipped
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    content_size: int | None = None  # decompressed bytes, once the data was read
    sha256: str | None = None  # of the stored bytes, once the data was read
    size: int | None = None  # stored bytes read
    # what a deep check measured, in the shape of the manifest's ``source`` (adoption records it)
    measured: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    files: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)  # a tree's files, once read
    # the checks of which one passing makes the backup good (a copy on S3: checksum, download, stream)
    good_when: tuple[str, ...] = ("sha256", "stream")

    def passed(self, check: str) -> None:
        self.checks[check] = "ok"

    def failed(self, check: str, problem: str) -> None:
        self.checks[check] = "failed"
        self.problems.append("%s: %s" % (self.name, problem))

    def skipped(self, check: str, why: str = "", note: str = "") -> None:
        """Record ``check`` as skipped, noted as '<check> not checked: <why>' or as ``note``."""
        self.checks[check] = "skipped"
        self.note(note or "%s not checked: %s" % (check, why))

    def note(self, text: str) -> None:
        self.notes.append("%s: %s" % (self.name, text))

    @property
    def state(self) -> str:
        if self.problems:
            return "bad"
        if any(self.checks.get(k) == "ok" for k in self.good_when):
            return "good"
        return "unverified"

    def as_dict(self) -> dict[str, t.Any]:
        return {"state": self.state, "checks": dict(self.checks), "problems": list(self.problems), "notes": list(self.notes)}


def check_rules(
    report: Report, entry: Entry, older: t.Sequence[Entry], rules: Rules, now: datetime.datetime, check_age: bool
) -> None:
    """The cheap rules that need no read of the data."""
    if check_age:
        age = entry.age_hours(now)
        if age > rules.max_age_hours:
            report.failed("age", "the newest backup is %.1f hours old (limit %g): backups are not running" % (age, rules.max_age_hours))
        else:
            report.passed("age")
    if entry.size < rules.min_size_bytes:
        report.failed("size", "only %d bytes (floor %d): the dump is probably empty" % (entry.size, rules.min_size_bytes))
    else:
        # compressed sizes compare only within one algorithm (zstd is not a drop from gzip)
        alike = [e for e in older if e.algorithm == entry.algorithm][: rules.size_history]
        median = median_size(alike)
        if median and entry.size < rules.size_drop_ratio * median:
            report.failed(
                "size",
                "%d bytes, %.0f%% of the median of the previous %d backups (%d bytes): data may be missing"
                % (entry.size, 100.0 * entry.size / median, len(alike), median),
            )
        else:
            report.passed("size")
    if entry.manifest_error:
        report.failed("manifest", entry.manifest_error)
        recorded = (entry.journal or {}).get("size")
        if entry.manifest is None and recorded is not None and recorded != entry.size:
            report.failed("size", "size %d differs from the journal's %s: the file was changed or cut" % (entry.size, recorded))
    elif entry.manifest is None:
        report.skipped("manifest", "no manifest (a legacy backup): size and sha256 cannot be compared")
    else:
        expected = entry.manifest.get("artifact", {}).get("size")
        if expected != entry.size:
            report.failed("manifest", "size %d differs from the manifest's %s: the file was changed or cut" % (entry.size, expected))
        else:
            report.passed("manifest")


def check_data(report: Report, entry: Entry, content: ContentCheck | None = None, reread: bool = True) -> None:
    """Read the artifact once: stream integrity, sha256 against the manifest, content.

    ``reread=False`` (a restore's check before it loads): of a tree whose manifest lists its
    files, only the sha256 of each file is checked - the same bytes as those whose streams and
    content were checked when the backup was made - and the load reads the streams itself.
    """
    if entry.tree:
        check_tree_data(report, entry, getattr(content, "tree", None), reread)
        return
    reader = ArtifactReader(entry.path, entry.algorithm)
    try:
        for chunk in reader.chunks():
            if content is not None:
                content.feed(chunk)
    except BackupError as exc:
        read_failed(report, exc)
        return
    judge(report, entry, reader, content)


def read_failed(report: Report, exc: BackupError) -> None:
    if isinstance(exc, _crypto.WrongKey):  # not a damaged backup: the key to read it is missing or another
        report.failed("key", exc.msg)
    else:
        report.failed("stream", exc.msg)


def judge(report: Report, entry: Entry, reader: ArtifactReader, content: ContentCheck | None) -> None:
    """The verdict on an artifact read to its end by ``reader``: sha256, emptiness, content."""
    report.passed("stream")
    report.content_size = reader.content_size
    report.sha256, report.size = reader.sha256, reader.size
    if reader.content_size == 0:
        report.failed("content", "the backup is empty once decompressed")
        return
    expected = entry.expected_sha256
    if expected is not None:
        whose = "manifest's" if entry.manifest is not None else "journal's"
        if reader.sha256 != expected:
            report.failed("sha256", "sha256 %s differs from the %s %s" % (reader.sha256, whose, expected))
        else:
            report.passed("sha256")
    else:
        report.skipped("sha256", "no manifest to compare with")
    if content is not None:
        problem = content.result()
        if problem:
            report.failed("content", problem)
        else:
            report.passed("content")


def check_tree_data(report: Report, entry: Entry, content: TreeContent | None, reread: bool = True) -> None:
    """Read every file of a tree backup once: each stream, each sha256 against the manifest's
    file list, the tree's digest against the manifest (or journal), the engine's content."""
    try:
        present = _tree.names(entry.path)
    except BackupError as exc:
        report.failed("stream", exc.msg)
        return
    listed = (entry.manifest or {}).get("artifact", {}).get("files")
    streams = reread or listed is None
    consumer_for = content.consumer_for if content is not None and streams else None
    scanned = _tree.scan(entry.path, consumer_for, decompress=streams)
    report.content_size, report.size, report.sha256 = scanned.content_size, scanned.size, scanned.sha256
    report.files = scanned.listed()
    if not streams:
        report.skipped("stream", note="streams not re-read: every file's sha256 is checked against the manifest, "
                                      "and the streams of those bytes were checked when the backup was made")
    elif scanned.stream:
        report.failed("stream", scanned.stream)
    else:
        report.passed("stream")
    expected = entry.expected_sha256
    whose = "manifest's" if entry.manifest is not None else "journal's"
    problems = _tree.compare(listed, present, scanned) if listed is not None else []
    if expected is None and listed is None:
        report.skipped("sha256", "no manifest to compare with")
    elif problems:
        report.failed("sha256", "; ".join(problems))
    elif expected is not None and scanned.sha256 != expected:
        report.failed("sha256", "the files' digest %s differs from the %s %s" % (scanned.sha256, whose, expected))
    else:
        report.passed("sha256")
    if content is None or scanned.stream or report.problems:
        return
    problem = scanned.content or content.tree_result(present)
    if problem:
        report.failed("content", problem)
    else:
        report.passed("content")


class LoadCheck:
    """The full check of an artifact, run while a restore loads it into a staging place.

    A plain artifact: the load reads :meth:`chunks` (decrypted, decompressed, its stored bytes
    hashed, every chunk fed to the content check); :meth:`verdict` reads what the load left
    unread (a load that stopped part way) and judges as :func:`check_data` does. A tree: every
    file's sha256 against the manifest (:func:`check_tree_data` with ``reread=False``), in a
    thread started by :meth:`start`, while the load reads the files (the page cache makes the
    second read cheap). A fault of that thread itself (an error that is neither a
    :class:`BackupError` nor a failed read) says nothing of the backup: :meth:`verdict` raises
    it, so the restore stops there (nothing changed) instead of refusing a backup that may be
    good and, for ``latest``, loading an older one.
    """

    def __init__(self, entry: Entry, content: ContentCheck | None) -> None:
        self.entry = entry
        self.content = content
        self.report = Report(entry.name, entry.path)
        self._reader = ArtifactReader(entry.path, entry.algorithm)
        self._stream: t.Iterator[bytes] | None = None
        self._read = False  # the plain artifact was read to its end, or failed to read
        self._thread: threading.Thread | None = None
        self._fault: Exception | None = None  # the tree check's own failure

    def start(self) -> None:
        if self.entry.tree:
            self._thread = threading.Thread(target=self._check_tree, name="cclite-load-check", daemon=True)
            self._thread.start()

    def _check_tree(self) -> None:
        try:
            check_tree_data(self.report, self.entry, getattr(self.content, "tree", None), reread=False)
        except BackupError as exc:
            self.report.failed("stream", exc.msg)
        except OSError as exc:  # the backup's files could not be read: a verdict on them
            self.report.failed("stream", "%s: %s" % (type(exc).__name__, exc))
        except Exception as exc:  # pylint: disable=broad-exception-caught  # never a lost thread: verdict() raises it
            self._fault = exc

    def chunks(self) -> t.Iterator[bytes]:
        """The decompressed content, for the load; each chunk also goes to the checks."""
        if self._stream is None:
            self._stream = self._checked()
        return self._stream

    def _checked(self) -> t.Iterator[bytes]:
        try:
            for chunk in self._reader.chunks():
                if self.content is not None:
                    self.content.feed(chunk)
                yield chunk
        except BackupError as exc:
            self._read = True
            read_failed(self.report, exc)
            raise
        self._read = True
        judge(self.report, self.entry, self._reader, self.content)

    def verdict(self) -> Report:
        """Once the load ended, however: the checks' report (read to the end first)."""
        if self._thread is not None:
            self._thread.join()
            if self._fault is not None:
                raise StageError(
                    "the check of %s failed while it loaded, on its own fault, not the backup's: %s: %s"
                    % (self.entry.name, type(self._fault).__name__, self._fault), stage="check",
                ) from self._fault
        elif not self._read:
            try:
                for _chunk in self.chunks():
                    pass
            except BackupError:
                pass  # recorded in the report
        return self.report


def verify(
    entry: Entry,
    older: t.Sequence[Entry],
    rules: Rules,
    now: datetime.datetime,
    check_age: bool = False,
    read_data: bool = True,
    content: ContentCheck | None = None,
) -> Report:
    report = Report(entry.name, entry.path)
    check_rules(report, entry, older, rules, now, check_age)
    if read_data:
        check_data(report, entry, content)
    return report
