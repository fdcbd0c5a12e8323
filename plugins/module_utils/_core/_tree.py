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
check fed the decompressed bytes.

For an off-site copy the tree travels as one tar stream: :func:`tar_chunks` produces it from the
manifest's file list (its order, fixed headers, so :func:`tar_size` knows its length before a
byte is read; each file checked against its sha256 as it is read; constant memory), and
:func:`untar` extracts one into a temp directory (:func:`in_place`), refusing links, paths that
leave the directory and files the manifest does not list, and checking every file's sha256.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _artifact
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Consumer, read_chunks
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import _fsync_dir as fsync_dir
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, StageError, VerifyError

SUFFIX = ".dir"
ALGORITHM = "directory"  # what listings and size comparisons call a tree's compression


def is_tree(name: str) -> bool:
    return name.endswith(SUFFIX)


def algorithm_of(name: str) -> str:
    """What listings call a backup's compression: ``directory`` for a tree."""
    return ALGORITHM if is_tree(name) else _artifact.algorithm_of(name)


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


class Growing:
    """A file its writer still appends to, read to the end the writer gives it: ``read`` waits
    for more data until :attr:`done` is set (the writer has closed the file), then reads what
    is left. Its reads are large enough for the decompression and hashing to run in big
    pieces, not in the writer's small ones."""

    POLL = 0.05

    def __init__(self, path: str) -> None:
        # closed by close(), or by the scan that reads it
        self.handle = open(path, "rb", buffering=0)  # pylint: disable=consider-using-with
        self.done = threading.Event()

    def read(self, size: int = -1) -> bytes:
        size = size if size > 0 else _artifact.CHUNK
        parts: list[bytes] = []
        got = 0
        while True:
            finished = self.done.is_set()  # before reading: what was written before it is read now
            data = self.handle.read(size - got)
            if data:
                parts.append(data)
                got += len(data)
            if finished or got >= size // 4:
                return b"".join(parts)
            self.done.wait(self.POLL)

    def close(self) -> None:
        self.done.set()
        self.handle.close()


def _scan_file(directory: str, name: str, consumer: Consumer | None, decompress: bool = True,
               growing: Growing | None = None) -> FileScan:
    found = FileScan(name)
    path = os.path.join(directory, name)
    reader = ArtifactReader(path, "gzip" if decompress and name.endswith(".gz") else "none", handle=growing)  # type: ignore[arg-type]
    try:
        for chunk in reader.chunks():
            if consumer is not None:
                consumer.feed(chunk)
    except BackupError as exc:
        found.stream = exc.msg
        found.size = os.path.getsize(path) if os.path.exists(path) else 0
        return found
    finally:
        if growing is not None:
            growing.handle.close()
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
    """:func:`scan`, file by file as the writer writes them: ``follow`` a file the writer has
    begun (it is read as it grows), ``submit`` a file the writer has finished while the others
    are still being written, then ``finish`` with the full list (the files not submitted are
    read then). Reading a file while it is written spares a second pass over the biggest
    table once the dump has ended: its check then ends with the dump."""

    def __init__(self, directory: str, consumer_for: t.Callable[[str], Consumer | None] | None = None, workers: int = 0,
                 decompress: bool = True) -> None:
        self.directory = directory
        self.consumer_for = consumer_for
        self.decompress = decompress
        threads = max(1, workers or (os.cpu_count() or 1))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads)
        self.futures: dict[str, concurrent.futures.Future[FileScan]] = {}
        self.growing: dict[str, Growing] = {}
        self.following: set[str] = set()  # followed files whose read has not ended (each holds an open file)
        self.most_followed = 2 * threads

    def follow(self, name: str) -> None:
        """Start reading ``name``, which the writer is still writing; ``submit`` (or ``finish``)
        says when it has closed it. Until then the reader waits at its end for more. While
        ``most_followed`` files are being followed, ``name`` is not: it is read once finished."""
        if name in self.futures:
            return
        self.following = {n for n in self.following if not self.futures[n].done()}
        if len(self.following) >= self.most_followed:
            return
        growing = Growing(os.path.join(self.directory, name))
        self.growing[name] = growing
        self.following.add(name)
        consumer = self.consumer_for(name) if self.consumer_for else None
        self.futures[name] = self.pool.submit(_scan_file, self.directory, name, consumer, self.decompress, growing)

    def submit(self, name: str) -> None:
        """``name`` is finished: read it (to its end, when it is being followed)."""
        if name in self.growing:
            self.growing[name].done.set()
        elif name not in self.futures:
            consumer = self.consumer_for(name) if self.consumer_for else None
            self.futures[name] = self.pool.submit(_scan_file, self.directory, name, consumer, self.decompress)

    def finish(self, listed: t.Sequence[str]) -> Scan:
        """The writer has ended: every file is complete."""
        for growing in self.growing.values():
            growing.done.set()
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
        for growing in self.growing.values():
            growing.done.set()  # a followed file ends where it is: its reader stops waiting
        self.pool.shutdown(wait=True)
        for growing in self.growing.values():
            growing.close()


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


def _tar_header(item: t.Mapping[str, t.Any], mtime: int) -> bytes:
    """The tar header of one listed file: a regular file, mode 0600, owner 0, the given mtime
    (so the tar of a tree depends only on its manifest)."""
    info = tarfile.TarInfo(item["name"])
    info.size = int(item["size"])
    info.mode = 0o600
    info.mtime = int(mtime)
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _padding(size: int, block: int) -> int:
    return -size % block


def tar_size(files: t.Sequence[t.Mapping[str, t.Any]], mtime: int = 0) -> int:
    """The exact length of :func:`tar_chunks` for these files, known before a byte is read."""
    total = sum(len(_tar_header(item, mtime)) + int(item["size"]) + _padding(int(item["size"]), tarfile.BLOCKSIZE) for item in files)
    total += 2 * tarfile.BLOCKSIZE
    return total + _padding(total, tarfile.RECORDSIZE)


def tar_chunks(directory: str, files: t.Sequence[t.Mapping[str, t.Any]], mtime: int = 0) -> t.Iterator[bytes]:
    """The files the manifest lists, in its order, as one uncompressed tar stream (what
    ``tarfile`` writes in ``w|`` mode), produced in chunks: constant memory, nothing on disk.
    Each file is hashed as it is read; one whose size or sha256 differs from the manifest
    raises :class:`VerifyError` before the stream goes past it."""
    total = 0
    for item in files:
        path = os.path.join(directory, item["name"])
        header = _tar_header(item, mtime)
        total += len(header)
        yield header
        digest, size = hashlib.sha256(), 0
        try:
            with open(path, "rb") as handle:
                for data in read_chunks(handle):
                    size += len(data)
                    if size > item["size"]:
                        break
                    digest.update(data)
                    yield data
        except OSError as exc:
            raise StageError("reading %s failed: %s" % (path, exc.strerror or exc)) from exc
        if size != item["size"] or digest.hexdigest() != item["sha256"]:
            found = (path, size if size <= item["size"] else "more", digest.hexdigest(), item["size"], item["sha256"])
            raise VerifyError("%s changed since its manifest was written (%s bytes, sha256 %s; the manifest says %d bytes, %s): "
                              "the local backup changed or is corrupt" % found)
        total += size + _padding(size, tarfile.BLOCKSIZE)
        if _padding(size, tarfile.BLOCKSIZE):
            yield b"\0" * _padding(size, tarfile.BLOCKSIZE)
    total += 2 * tarfile.BLOCKSIZE  # the end of the archive, then zeros to a whole record
    yield b"\0" * (2 * tarfile.BLOCKSIZE + _padding(total, tarfile.RECORDSIZE))


def tar_stream(directory: str, files: t.Sequence[t.Mapping[str, t.Any]], out: t.BinaryIO, mtime: int = 0) -> int:
    """Write :func:`tar_chunks` to ``out``; returns the bytes written."""
    written = 0
    for data in tar_chunks(directory, files, mtime):
        out.write(data)
        written += len(data)
    return written


class _ChunkReader:
    """``read(n)`` over an iterator of chunks, for ``tarfile``'s stream mode (one chunk held)."""

    def __init__(self, chunks: t.Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buf = b""
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if self.pos >= len(self.buf):
                data = next(self.chunks, None)
                if data is None:
                    break
                self.buf, self.pos = data, 0
                continue
            take = len(self.buf) - self.pos if size < 0 else min(size, len(self.buf) - self.pos)
            parts.append(self.buf[self.pos:self.pos + take])
            self.pos += take
            size = size - take if size > 0 else size
        return b"".join(parts)

    def rest(self) -> t.Iterator[bytes]:
        """What is left after the tar's end, chunk by chunk (drains the iterator)."""
        if self.pos < len(self.buf):
            yield self.buf[self.pos:]
        self.buf, self.pos = b"", 0
        yield from self.chunks


def _unsafe(member: tarfile.TarInfo, listed: t.Mapping[str, t.Mapping[str, t.Any]], seen: t.Container[str]) -> str | None:
    """Why a tar member must not be extracted, or ``None``."""
    name = member.name
    if not member.isreg():
        kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk() else "a directory" if member.isdir()
                else "a special file")
        return "%s is %s: a directory backup holds only regular files" % (name, kind)
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        return "%s is not a plain relative path: it would leave the backup directory" % name
    if name not in listed:
        return "%s is not in the manifest" % name
    if name in seen:
        return "%s appears twice" % name
    if member.size != listed[name]["size"]:
        return "%s has %d bytes, the manifest says %d" % (name, member.size, listed[name]["size"])
    return None


def untar(chunks: t.Iterable[bytes], directory: str, files: t.Sequence[t.Mapping[str, t.Any]], what: str, mode: int = 0o600) -> None:
    """Extract a tar stream (as :func:`tar_chunks` writes it) into the empty ``directory``:
    only regular files with plain relative names that the manifest lists, each once, created
    with ``O_EXCL | O_NOFOLLOW`` and checked against its size and sha256; then every listed
    file must be there and nothing but zeros may follow the tar's end. ``chunks`` is read to
    its end. Anything else raises :class:`VerifyError` naming ``what``; the caller removes the
    directory."""
    listed = {item["name"]: item for item in files}
    seen: set[str] = set()
    reader = _ChunkReader(chunks)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                problem = _unsafe(member, listed, seen)
                if problem:
                    raise VerifyError("refusing the tar of %s: %s" % (what, problem))
                seen.add(member.name)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - a regular file always has a reader
                    raise VerifyError("refusing the tar of %s: %s cannot be read" % (what, member.name))
                _extract(source, directory, listed[member.name], what, mode)
    except tarfile.TarError as exc:
        raise VerifyError("the tar of %s is cut or corrupt (%s)" % (what, exc)) from exc
    for data in reader.rest():
        if data.strip(b"\0"):
            raise VerifyError("the tar of %s has data after its end" % what)
    missing = sorted(set(listed) - seen)
    if missing:
        raise VerifyError("the tar of %s is cut or incomplete: %d file(s) of the manifest are missing: %s"
                          % (what, len(missing), ", ".join(missing[:5])))


def _extract(source: t.BinaryIO, directory: str, item: t.Mapping[str, t.Any], what: str, mode: int) -> None:
    path = os.path.join(directory, item["name"])
    parent = os.path.dirname(path)
    if parent != directory:
        os.makedirs(parent, 0o700, exist_ok=True)
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        for data in read_chunks(source):
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != item["sha256"]:
        raise VerifyError("the tar of %s: %s has sha256 %s, the manifest says %s" % (what, item["name"], digest.hexdigest(), item["sha256"]))


@contextlib.contextmanager
def in_place(dest: str) -> t.Iterator[str]:
    """A hidden temp directory beside ``dest`` (``.<name>.<pid>.<random>.partial``, what the
    catalog removes after a killed run), renamed onto ``dest`` when the block ends without an
    error, removed in every other case."""
    directory = os.path.dirname(os.path.abspath(dest))
    tmp = tempfile.mkdtemp(dir=directory, prefix=".%s.%d." % (os.path.basename(dest), os.getpid()), suffix=".partial")
    try:
        yield tmp
        os.rename(tmp, dest)
        fsync_dir(directory)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
