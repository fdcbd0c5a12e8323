# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups that are directories of files (PostgreSQL's ``directory`` format): one artifact all the same.

A tree backup is written into a hidden temp directory beside its final name
(``.<name>.<pid>.<random>.partial``), every file is hashed, checked and fsynced, the manifest
lists every file with its size and sha256, and only then is the directory renamed into place:
a reader sees all of it or nothing. The artifact's ``sha256`` is the digest of the sorted file
list (``name``, ``size``, ``sha256`` of each file), so the journal, retention and ``latest``
treat it like any other backup, and a changed, missing or added file changes it.

:func:`scan` reads every file once (in threads: zlib and hashlib release the GIL): its sha256,
for ``.gz`` files whether the stream decompresses to its end, and an optional per-file content
check fed the decompressed bytes. :func:`tar_stream` writes the tree as one tar stream (the
manifest's order, constant memory) for an off-site copy.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import shutil
import tarfile
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Consumer
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, StageError

SUFFIX = ".dir"
ALGORITHM = "directory"  # what listings and size comparisons call a tree's compression


def is_tree(name: str) -> bool:
    return name.endswith(SUFFIX)


def names(directory: str) -> list[str]:
    """Every regular file under ``directory``, relative, sorted; links and others are refused."""
    found = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            path = os.path.join(base, name)
            if os.path.islink(path) or not os.path.isfile(path):
                raise StageError("%s is not a regular file: a backup directory holds only files" % path)
            found.append(os.path.relpath(path, directory))
    return sorted(found)


def size(directory: str) -> int:
    """The bytes of every file under ``directory`` (0 when it cannot be read)."""
    total = 0
    for base, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def remove(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=False)


def digest(files: t.Iterable[t.Mapping[str, t.Any]]) -> str:
    """The tree's sha256: of its sorted ``name NUL size NUL sha256`` lines."""
    outer = hashlib.sha256()
    for item in sorted(files, key=lambda f: f["name"]):
        outer.update(("%s\0%d\0%s\n" % (item["name"], item["size"], item["sha256"])).encode("utf-8"))
    return outer.hexdigest()


@dataclasses.dataclass
class FileScan:
    name: str
    size: int = 0
    sha256: str = ""
    content_size: int = 0
    stream: str | None = None  # the decompression error
    content: str | None = None  # the content check's problem
    stats: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def listed(self) -> dict[str, t.Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclasses.dataclass
class Scan:
    files: list[FileScan]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def content_size(self) -> int:
        return sum(f.content_size for f in self.files)

    @property
    def sha256(self) -> str:
        return digest(f.listed() for f in self.files)

    def listed(self) -> list[dict[str, t.Any]]:
        return [f.listed() for f in self.files]

    @property
    def stream(self) -> str | None:
        bad = [f for f in self.files if f.stream]
        return "; ".join(f.stream or "" for f in bad[:5]) if bad else None

    @property
    def content(self) -> str | None:
        bad = [f for f in self.files if f.content]
        return "; ".join("%s: %s" % (f.name, f.content) for f in bad[:5]) if bad else None


def _scan_file(directory: str, name: str, consumer: Consumer | None, decompress: bool = True) -> FileScan:
    found = FileScan(name)
    path = os.path.join(directory, name)
    reader = ArtifactReader(path, "gzip" if decompress and name.endswith(".gz") else "none")
    try:
        for chunk in reader.chunks():
            if consumer is not None:
                consumer.feed(chunk)
    except BackupError as exc:
        found.stream = exc.msg
        found.size = os.path.getsize(path) if os.path.exists(path) else 0
        return found
    found.size, found.sha256, found.content_size = reader.size, reader.sha256, reader.content_size
    if consumer is not None:
        found.content = consumer.result()
        found.stats = dict(getattr(consumer, "stats", lambda: {})())
    return found


def scan(
    directory: str, consumer_for: t.Callable[[str], Consumer | None] | None = None, workers: int = 0,
    only: t.Iterable[str] | None = None, decompress: bool = True,
) -> Scan:
    """Read every file of ``directory`` once (``workers`` threads, 0: one per core); without
    ``decompress``, only each file's size and sha256."""
    with Scanner(directory, consumer_for, workers, decompress) as scanner:
        return scanner.finish(sorted(only) if only is not None else names(directory))


class Scanner:
    """:func:`scan`, file by file as the writer finishes them: ``submit`` a finished file while
    the others are still being written, then ``finish`` with the full list (the files not
    submitted are read then)."""

    def __init__(self, directory: str, consumer_for: t.Callable[[str], Consumer | None] | None = None, workers: int = 0,
                 decompress: bool = True) -> None:
        self.directory = directory
        self.consumer_for = consumer_for
        self.decompress = decompress
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers or (os.cpu_count() or 1)))
        self.futures: dict[str, concurrent.futures.Future[FileScan]] = {}

    def submit(self, name: str) -> None:
        if name not in self.futures:
            consumer = self.consumer_for(name) if self.consumer_for else None
            self.futures[name] = self.pool.submit(_scan_file, self.directory, name, consumer, self.decompress)

    def finish(self, listed: t.Sequence[str]) -> Scan:
        for name in listed:
            self.submit(name)
        extra = set(self.futures) - set(listed)
        if extra:  # a file the writer named is not there any more
            raise StageError("%s: %s disappeared while it was checked" % (self.directory, ", ".join(sorted(extra))))
        return Scan([self.futures[name].result() for name in sorted(listed)])

    def __enter__(self) -> "Scanner":
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)


def compare(expected: t.Sequence[t.Mapping[str, t.Any]], present: t.Sequence[str], scanned: Scan | None = None) -> list[str]:
    """What differs between a manifest's file list and the files there (and their hashes)."""
    problems = []
    listed = {f["name"]: f for f in expected}
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing:
        problems.append("%d file(s) of the manifest are missing: %s" % (len(missing), ", ".join(missing[:5])))
    if extra:
        problems.append("%d file(s) not in the manifest: %s" % (len(extra), ", ".join(extra[:5])))
    for item in scanned.files if scanned is not None else ():
        want = listed.get(item.name)
        if want is None or item.stream:
            continue
        if item.size != want.get("size") or item.sha256 != want.get("sha256"):
            problems.append("%s: sha256 %s differs from the manifest's %s" % (item.name, item.sha256, want.get("sha256")))
    return problems


def fsync_tree(directory: str, mode: int) -> None:
    """Give every file ``mode`` and fsync it, then the directories (before the rename)."""
    for base, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(base, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o700)
            os.fsync(fd)
        finally:
            os.close(fd)


def tar_stream(directory: str, files: t.Sequence[t.Mapping[str, t.Any]], out: t.BinaryIO) -> None:
    """Write the files the manifest lists, in its order, as one uncompressed tar stream
    (constant memory: each file is copied in chunks); a file whose size changed fails."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for item in files:
            path = os.path.join(directory, item["name"])
            info = tar.gettarinfo(path, arcname=item["name"])
            if info.size != item["size"]:
                raise StageError("%s changed since its manifest was written (%d bytes, manifest %d)" % (path, info.size, item["size"]))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
