# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The artifact writer and reader: the only place where data streams.

``write_artifact`` runs a producer (a dump tool here or in a container, or a Python function
writing into a pipe), pipes its output through a compressor process, and writes the result to
a temp file in the destination directory while computing size and sha256. It checks the exit
status of every stage, fsyncs, and renames into place. On any failure the temp file is removed
and the error names the failing stage with its (redacted) stderr. Memory stays constant: one
chunk is in flight at a time.

``write_artifact`` can also check the data as it is written (``check=``): a thread decompresses
the very bytes that go to the file and hashed, and feeds them to a content check, so a backup
is proven readable without a second pass over it once written. (A second pass would read the
page cache, not the disk: it proves nothing more than checking the bytes on their way.)

With ``seal`` (a ``_crypto.Key``: ``backup_local_encryption``) the compressed stream is
encrypted on its way to the file (``_crypto``'s format); size and sha256 are those of the
encrypted bytes on disk, and the check in flight decrypts them again.

``ArtifactReader`` is the inverse: it yields the decompressed content of an artifact in chunks
and computes the sha256 and size of the stored (compressed) bytes in the same pass. It is the
one place an encrypted artifact is decrypted (with the module's configured key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import typing as t
import zlib

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _progress
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Child, Command, start, widen_pipes

CHUNK = 1024 * 1024
EXTENSIONS = {"gzip": ".gz", "zstd": ".zst", "none": ""}
SIGPIPE_CODES = (-13, 141)  # killed by SIGPIPE directly, or as a shell/docker exit status


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Compression:
    """How an artifact is compressed, and the programs that do it."""

    algorithm: str = "gzip"
    level: int = 6
    threads: int = 0  # 0: all cores

    def __post_init__(self) -> None:
        if self.algorithm not in EXTENSIONS:
            raise ConfigError("unknown compression %r: use gzip, zstd or none" % self.algorithm)
        limits = {"gzip": (1, 9), "zstd": (1, 19), "none": (0, 9)}[self.algorithm]
        if self.algorithm != "none" and not limits[0] <= self.level <= limits[1]:
            raise ConfigError(
                "compression level %d is out of range for %s: use %d to %d" % (self.level, self.algorithm, limits[0], limits[1])
            )

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.algorithm]

    def _threads(self) -> int:
        return self.threads or (os.cpu_count() or 1)

    def compressor(self) -> Command | None:
        """The compressing program; gzip output comes from pigz when it is installed."""
        if self.algorithm == "none":
            return None
        if self.algorithm == "zstd":
            if not shutil.which("zstd"):
                raise ConfigError("compression zstd needs the zstd program on the managed host: install the zstd package")
            return Command(("zstd", "-q", "-c", "-%d" % self.level, "-T%d" % self._threads()), stage="zstd")
        threads = self._threads()
        if threads > 1 and shutil.which("pigz"):
            return Command(("pigz", "-c", "-%d" % self.level, "-p", str(threads)), stage="pigz")
        return Command(("gzip", "-c", "-%d" % self.level), stage="gzip")

    def describe(self) -> dict[str, t.Any]:
        cmd = self.compressor()
        return {"algorithm": self.algorithm, "level": self.level, "program": cmd.name if cmd else None}


def read_chunks(handle: t.Any) -> t.Iterator[bytes]:
    """What ``handle`` holds, one :data:`CHUNK` at a time, to its end."""
    return iter(lambda: handle.read(CHUNK), b"")


def _feed(sink: t.BinaryIO, produce: t.Callable[[t.BinaryIO], None], errors: list[BaseException]) -> threading.Thread:
    """Run ``produce(sink)`` in a thread, then close ``sink``; what it raises lands in ``errors``
    (reported once the pipeline has ended)."""

    def run() -> None:
        try:
            produce(sink)
        except BaseException as exc:
            errors.append(exc)
        finally:
            try:
                sink.close()
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def algorithm_of(path: str) -> str:
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith(".zst"):
        return "zstd"
    return "none"


class Consumer(t.Protocol):
    """A content check fed the decompressed data chunk by chunk; ``result`` is its problem or ``None``."""

    def feed(self, chunk: bytes) -> None: ...

    def result(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class StreamChecked:
    """What the check in flight found: ``stream`` is the decompression error, if any."""

    stream: str | None
    content_size: int
    content: str | None


@dataclasses.dataclass(frozen=True)
class Written:
    path: str
    size: int
    sha256: str
    started: datetime.datetime
    ended: datetime.datetime
    checked: StreamChecked | None = None
    files: t.Sequence[t.Mapping[str, t.Any]] = ()  # a tree backup's files (name, size, sha256)

    @property
    def duration(self) -> float:
        return round((self.ended - self.started).total_seconds(), 3)


Source = t.Union[Command, t.Callable[[t.BinaryIO], None]]


def _failure(stages: list[Child], feeder_error: BaseException | None) -> StageError | None:
    """The error to report, naming the root cause first (a producer before its consumer)."""
    failed = [s for s in stages if s.proc.returncode != 0]
    if feeder_error is not None and not (isinstance(feeder_error, BrokenPipeError) and failed):
        # a broken pipe only means the compressor died: its own failure is reported below
        return StageError("the data source failed: %s" % feeder_error, stage="source")
    for stage in failed:
        downstream_failed = any(o is not stage and stages.index(o) > stages.index(stage) for o in failed)
        if stage.proc.returncode in SIGPIPE_CODES and downstream_failed:
            continue  # it only lost its reader; the reader's failure is the cause
        return StageError(stage.failure(), stage=stage.cmd.name, rc=stage.proc.returncode)
    return None


class _StreamCheck:
    """Decompresses the bytes being written, in a thread, and feeds a content check.

    The writer hands over each chunk through a small bounded queue (memory stays constant).
    Once the check has failed it drops what the writer hands over, so the writer never
    blocks; the error is reported when the pipeline has ended.
    """

    DEPTH = 8
    _END = b""

    def __init__(self, label: str, algorithm: str, consumer: Consumer | None, key: _crypto.Key | None = None) -> None:
        self.reader = ArtifactReader(label, algorithm, key)
        self.consumer = consumer
        self.chunks: queue.Queue[bytes] = queue.Queue(self.DEPTH)
        self.error: str | None = None
        self.content_size = 0
        self.content: str | None = None
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, chunk: bytes) -> None:
        if not self.done:
            self.chunks.put(chunk)

    def _incoming(self) -> t.Iterator[bytes]:
        while True:
            chunk = self.chunks.get()
            if not chunk:  # _END
                return
            yield chunk

    def _run(self) -> None:
        try:
            for data in self.reader.decompress(self._incoming()):
                self.content_size += len(data)
                if self.consumer is not None:
                    self.consumer.feed(data)
            if self.consumer is not None:
                # here, not in finish(): a child the check started dies with this thread (PDEATHSIG)
                self.content = self.consumer.result()
        except BackupError as exc:
            self.error = exc.msg
        except Exception as exc:  # a content check that breaks must not hang the writer
            self.error = "checking the data failed: %s" % exc
        finally:
            self.done = True
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self.chunks.get_nowait()
            except queue.Empty:
                return

    def _end(self) -> None:
        while self.thread.is_alive():
            try:
                self.chunks.put(self._END, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> StreamChecked:
        self._end()
        self.thread.join()
        return StreamChecked(self.error, self.content_size, self.content if self.error is None else None)

    def abandon(self) -> None:
        """The write failed: stop the thread without waiting for data that will not come."""
        self.done = True
        self._drain()
        self._end()
        self.thread.join(timeout=5)


class Partial:
    """The temp file of :func:`in_place`; set ``keep`` false to drop it instead of renaming it."""

    def __init__(self, handle: t.Any) -> None:
        self.file = handle
        self.keep = True


@contextlib.contextmanager
def in_place(path: str, mode: int = 0o600, text: bool = False) -> t.Iterator[Partial]:
    """A hidden ``.partial`` temp file beside ``path``, fsynced and renamed onto ``path`` when the
    block ends without an error (and ``keep`` is still set); removed in every other case."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".%s.%d." % (os.path.basename(path), os.getpid()), suffix=".partial")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None) as handle:
            fd = -1
            partial = Partial(handle)
            yield partial
            handle.flush()
            os.fsync(handle.fileno())
        if partial.keep:
            os.rename(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _counted(chunks: t.Iterable[bytes], total: list[int]) -> t.Iterator[bytes]:
    for chunk in chunks:
        total[0] += len(chunk)
        yield chunk


def _sealed(chunks: t.Iterable[bytes], encryptor: _crypto.Encryptor | None) -> t.Iterator[bytes]:
    """``chunks`` encrypted by ``encryptor`` (sealed at their end), or as they are without one."""
    if encryptor is None:
        yield from chunks
        return
    for chunk in chunks:
        data = encryptor.update(chunk)
        if data:
            yield data
    yield encryptor.finish()


def write_artifact(
    source: Source,
    dest: str,
    compression: Compression,
    mode: int = 0o600,
    before_commit: t.Callable[[str, Written], None] | None = None,
    check: Consumer | bool | None = None,
    seal: _crypto.Key | None = None,
) -> Written:
    """Stream ``source`` through ``compression`` (and with ``seal``, encryption) into ``dest``;
    see the module docstring.

    With ``check`` (a content check, or ``True`` for the stream only) the written bytes are
    decompressed as they go and ``written.checked`` says what was found.
    ``before_commit(temp_path, written)`` runs after every stage succeeded and before the
    rename: a check that raises there keeps the artifact from ever appearing.
    """
    directory = os.path.dirname(os.path.abspath(dest))
    if os.path.lexists(dest):
        raise ConfigError("%s already exists; refusing to overwrite an artifact" % dest)
    started = utcnow()
    fd, tmp = -1, ""
    stages: list[Child] = []
    feeder: threading.Thread | None = None
    feeder_error: list[BaseException] = []
    digest = hashlib.sha256()
    size = 0
    inflight: _StreamCheck | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s.%d." % (os.path.basename(dest), os.getpid()), suffix=".partial")
        os.fchmod(fd, mode)
        compressor = compression.compressor()
        if isinstance(source, Command):
            stages.append(start(source))
            widen_pipes(stages[-1])
            upstream: t.Any = stages[0].proc.stdout
            if compressor is not None:
                stages.append(start(compressor, stdin=upstream))
                upstream.close()  # the compressor owns the read end now
                upstream = stages[-1].proc.stdout
                widen_pipes(stages[-1])
        else:
            if compressor is None:
                raise ConfigError("a Python data source needs a compressor; use gzip or zstd")
            stages.append(start(compressor, stdin=subprocess.PIPE))
            widen_pipes(stages[-1])
            sink = stages[0].proc.stdin
            if sink is None:
                raise StageError("the compressor has no input pipe")
            feeder = _feed(sink, source, feeder_error)
            upstream = stages[0].proc.stdout
        if check is not None and check is not False:
            inflight = _StreamCheck(dest, compression.algorithm, None if check is True else check, seal)
        encryptor = _crypto.Encryptor(seal) if seal is not None else None
        produced = [0]  # bytes out of the pipeline, before encryption
        with os.fdopen(fd, "wb", closefd=True) as out:
            fd = -1
            for data in _sealed(_counted(read_chunks(upstream), produced), encryptor):
                digest.update(data)
                out.write(data)
                if inflight is not None:
                    inflight.put(data)
                size += len(data)
                _progress.advance(len(data))
            out.flush()
            os.fsync(out.fileno())
        upstream.close()
        if feeder is not None:
            feeder.join()
        for stage in stages:
            stage.proc.wait()
        error = _failure(stages, feeder_error[0] if feeder_error else None)
        if error is not None:
            raise error
        if produced[0] == 0:
            raise StageError("the pipeline produced no data; nothing was written")
        checked = inflight.finish() if inflight is not None else None
        written = Written(dest, size, digest.hexdigest(), started, utcnow(), checked)
        if before_commit is not None:
            before_commit(tmp, written)
        os.rename(tmp, dest)
        _fsync_dir(directory)
        return written
    except OSError as exc:
        raise StageError("writing %s failed: %s; check free space and permissions there" % (dest, exc.strerror or exc)) from exc
    finally:
        if fd >= 0:
            os.close(fd)
        for stage in stages:
            stage.close()
        if feeder is not None:
            feeder.join(timeout=5)
        if inflight is not None:
            inflight.abandon()
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


class ArtifactReader:
    """Yields an artifact's decompressed content; hashes the stored bytes in the same pass.

    A corrupt or truncated compressed stream raises :class:`VerifyError`. ``sha256`` and
    ``size`` are set once the content has been read to the end.
    """

    def __init__(self, path: str, algorithm: str | None = None, key: _crypto.Key | None = None,
                 handle: t.BinaryIO | None = None) -> None:
        self.path = path
        self.algorithm = algorithm or algorithm_of(path)
        self.key = key  # of an encrypted artifact; None: the module's configured key
        self.handle = handle  # read this (a file still being written, see _tree) instead of opening path
        self.sha256 = ""
        self.size = 0
        self.content_size = 0  # decompressed bytes

    def _raw(self, digest: t.Any) -> t.Iterator[bytes]:
        try:
            with contextlib.nullcontext(self.handle) if self.handle is not None else open(self.path, "rb") as handle:
                for chunk in read_chunks(handle):
                    digest.update(chunk)
                    self.size += len(chunk)
                    _progress.advance(len(chunk))
                    yield chunk
        except OSError as exc:
            raise VerifyError("cannot read %s: %s" % (self.path, exc.strerror or exc)) from exc

    def chunks(self) -> t.Iterator[bytes]:
        digest = hashlib.sha256()
        self.size = self.content_size = 0
        for chunk in self.decompress(self._raw(digest)):
            self.content_size += len(chunk)
            _progress.content(len(chunk))
            yield chunk
        self.sha256 = digest.hexdigest()

    def decompress(self, raw: t.Iterator[bytes]) -> t.Iterator[bytes]:
        """The decompressed content of ``raw``, the stored bytes from anywhere (a file, the
        writer's pipeline, a download), decrypted first when they are encrypted (``_crypto``);
        errors name :attr:`path`."""
        raw = _crypto.decrypt_stream(raw, self.path, self.key)
        if self.algorithm == "gzip":
            return self._gunzip(raw)
        if self.algorithm == "zstd":
            return self._unzstd(raw)
        return raw

    def _gunzip(self, raw: t.Iterator[bytes]) -> t.Iterator[bytes]:
        inflater = zlib.decompressobj(wbits=31)
        in_member = False  # input fed to the current member, which has not ended yet
        seen = False
        try:
            for chunk in raw:
                seen = seen or bool(chunk)
                while chunk:
                    in_member = True
                    data = inflater.decompress(chunk, CHUNK)
                    if data:
                        yield data
                    if inflater.eof:  # a concatenated gzip member may follow
                        chunk = inflater.unused_data
                        inflater = zlib.decompressobj(wbits=31)
                        in_member = False
                    else:
                        chunk = inflater.unconsumed_tail
            data = inflater.flush()
            if data:
                yield data
        except zlib.error as exc:
            raise VerifyError("%s: the gzip stream is corrupt (%s)" % (self.path, exc)) from exc
        if not seen:
            raise VerifyError("%s is empty" % self.path)
        if in_member:
            raise VerifyError("%s: the gzip stream ends early; the file is truncated" % self.path)

    def _unzstd(self, raw: t.Iterator[bytes]) -> t.Iterator[bytes]:
        if not shutil.which("zstd"):
            raise ConfigError("reading %s needs the zstd program on the managed host: install zstd" % self.path)
        stage = start(Command(("zstd", "-d", "-c", "-q"), stage="zstd"), stdin=subprocess.PIPE)
        widen_pipes(stage)
        errors: list[BaseException] = []
        sink = stage.proc.stdin
        if sink is None or stage.proc.stdout is None:
            raise StageError("zstd has no pipes")

        def produce(out: t.BinaryIO) -> None:
            try:
                for chunk in raw:
                    out.write(chunk)
            except BrokenPipeError:
                pass  # zstd stopped reading: its exit status says why

        feeder = _feed(sink, produce, errors)
        try:
            yield from read_chunks(stage.proc.stdout)
            stage.proc.wait()
            feeder.join()
            if errors:
                raise errors[0]
            if stage.proc.returncode != 0:
                raise VerifyError("%s: the zstd stream is corrupt or truncated (%s)" % (self.path, stage.stderr()))
        finally:
            stage.close()
            feeder.join(timeout=5)
