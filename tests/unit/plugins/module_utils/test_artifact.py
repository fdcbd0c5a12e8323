# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The streaming writer and the reader, with real producer and compressor processes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zlib

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import (
    CHUNK,
    ArtifactReader,
    Compression,
    algorithm_of,
    write_artifact,
)
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import REDACTED, Command

needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")

GZIP1 = Compression("gzip", 1, 1)  # one thread: plain gzip, so a fake gzip on PATH is the one used


def sha256_of(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def decompress_with_tool(path, algorithm: str) -> bytes:
    """Decompress with the real command-line tool, independently of ArtifactReader."""
    if algorithm == "none":
        with open(path, "rb") as handle:
            return handle.read()
    argv = {"gzip": ["gzip", "-d", "-c"], "zstd": ["zstd", "-d", "-c", "-q"]}[algorithm]
    with open(path, "rb") as handle:
        return subprocess.run(argv, stdin=handle, capture_output=True, check=True).stdout


def read_back(path, algorithm=None) -> tuple[bytes, ArtifactReader]:
    reader = ArtifactReader(str(path), algorithm)
    return b"".join(reader.chunks()), reader


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def payload(tmp_path) -> bytes:
    """About 3.5 MiB: random bytes (several reads of CHUNK) and compressible SQL text."""
    data = os.urandom(3 * CHUNK + 12345) + b"INSERT INTO t VALUES (1, 'x');\n" * 20000
    (tmp_path / "payload.bin").write_bytes(data)
    return data


# compression settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm, level, message",
    [
        ("bzip2", 6, "unknown compression 'bzip2'"),
        ("gzip", 0, "out of range for gzip: use 1 to 9"),
        ("gzip", 10, "out of range for gzip: use 1 to 9"),
        ("zstd", 20, "out of range for zstd: use 1 to 19"),
    ],
)
def test_compression_rejects_bad_settings(algorithm, level, message):
    with pytest.raises(ConfigError) as err:
        Compression(algorithm, level)
    assert message in err.value.msg


def test_compression_programs(fake_program):
    assert Compression("gzip", 6, 1).compressor().argv == ("gzip", "-c", "-6")
    assert Compression("gzip", 6, 1).extension == ".gz"
    assert Compression("none", 0).compressor() is None
    assert Compression("none", 0).extension == ""
    assert Compression("none", 0).describe() == {"algorithm": "none", "level": 0, "program": None}
    fake_program("pigz", "exit 0")
    pigz = Compression("gzip", 4, 3).compressor()
    assert pigz.argv == ("pigz", "-c", "-4", "-p", "3") and pigz.name == "pigz"
    fake_program("zstd", "exit 0")
    zstd = Compression("zstd", 3, 2)
    assert zstd.compressor().argv == ("zstd", "-q", "-c", "-3", "-T2")
    assert zstd.extension == ".zst"
    assert zstd.describe() == {"algorithm": "zstd", "level": 3, "program": "zstd"}


def test_compression_without_pigz_uses_gzip(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("gzip"), bindir / "gzip")
    monkeypatch.setenv("PATH", str(bindir))
    assert Compression("gzip", 6, 4).compressor().argv == ("gzip", "-c", "-6")
    with pytest.raises(ConfigError) as err:
        Compression("zstd", 3).compressor()
    assert "install the zstd package" in err.value.msg


def test_algorithm_of():
    assert [algorithm_of(n) for n in ("a.sql.gz", "a.sql.zst", "a.sql", "a.tar")] == ["gzip", "zstd", "none", "none"]


# the writer: successful streams ------------------------------------------------------------


@pytest.mark.parametrize(
    "compression",
    [
        pytest.param(GZIP1, id="gzip"),
        pytest.param(Compression("gzip", 6, 2), id="gzip-threads(pigz-if-installed)"),
        pytest.param(Compression("zstd", 3, 1), id="zstd", marks=needs_zstd),
        pytest.param(Compression("none", 0), id="none"),
    ],
)
def test_write_round_trip(tmp_path, store, payload, compression):
    dest = store / ("dump.sql" + compression.extension)
    written = write_artifact(Command(("cat", str(tmp_path / "payload.bin"))), str(dest), compression)

    assert decompress_with_tool(dest, compression.algorithm) == payload
    content, reader = read_back(dest)
    assert content == payload
    assert written.path == str(dest)
    assert written.size == os.path.getsize(dest) == reader.size
    assert written.sha256 == sha256_of(dest) == reader.sha256
    assert written.ended >= written.started and written.duration >= 0
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert os.listdir(store) == [dest.name]  # no temp file left behind


def test_write_honours_mode(store):
    dest = store / "x.gz"
    write_artifact(Command(("printf", "hello")), str(dest), GZIP1, mode=0o640)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640
    assert gzip.decompress(dest.read_bytes()) == b"hello"


def test_python_source_round_trip(store, payload):
    def source(sink):
        for start in range(0, len(payload), 100000):
            sink.write(payload[start:start + 100000])

    dest = store / "py.gz"
    written = write_artifact(source, str(dest), GZIP1)
    assert gzip.decompress(dest.read_bytes()) == payload
    assert written.sha256 == sha256_of(dest) and written.size == os.path.getsize(dest)
    assert os.listdir(store) == ["py.gz"]


def test_before_commit_sees_the_finished_temp_file(store):
    seen = {}

    def check(tmp, written):
        seen["tmp"] = tmp
        seen["sha256"] = sha256_of(tmp)
        seen["content"] = gzip.decompress(open(tmp, "rb").read())
        seen["written"] = written
        seen["dest_exists"] = os.path.exists(str(store / "x.gz"))

    written = write_artifact(Command(("printf", "payload")), str(store / "x.gz"), GZIP1, before_commit=check)
    assert os.path.dirname(seen["tmp"]) == str(store) and seen["tmp"].endswith(".partial")
    assert seen["content"] == b"payload"
    assert seen["sha256"] == written.sha256 == seen["written"].sha256
    assert seen["dest_exists"] is False  # the rename comes after the check
    assert not os.path.exists(seen["tmp"])


def test_memory_stays_flat_while_streaming_200_mib(tmp_path, child_env):
    """200 MiB of random data (it does not compress, so all of it passes through this process)
    from head through gzip -1: the writer's peak RSS must not grow with the data."""
    size = 200 * 1024 * 1024
    dest = tmp_path / "big.sql.gz"
    script = """
import json, resource, sys
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, write_artifact
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
written = write_artifact(Command(("head", "-c", sys.argv[2], "/dev/urandom")), sys.argv[1], Compression("gzip", 1))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after, "size": written.size}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(dest), str(size)], env=child_env, capture_output=True, text=True, timeout=300, check=False
    )
    try:
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["size"] == os.path.getsize(dest) > size  # random data grows a little under gzip
        growth_mib = (result["after_kib"] - result["before_kib"]) / 1024.0
        assert growth_mib < 50, "peak RSS grew by %.1f MiB while streaming %d MiB" % (growth_mib, size // 2**20)
        with open(dest, "rb") as handle:  # and the stream is complete
            inflater = zlib.decompressobj(wbits=31)
            total = 0
            for block in iter(lambda: handle.read(CHUNK), b""):
                total += len(inflater.decompress(block))
            assert inflater.eof and total == size
    finally:
        if dest.exists():
            dest.unlink()  # do not leave 200 MiB in pytest's kept temp directories


# the writer: failures ----------------------------------------------------------------------


def test_producer_failure_names_stage_and_stderr(store):
    producer = Command(("sh", "-c", "echo 'pg_dump: error: connection to server failed' >&2; exit 1"), stage="pg_dump")
    with pytest.raises(StageError) as err:
        write_artifact(producer, str(store / "x.gz"), GZIP1)
    assert err.value.msg == "pg_dump failed with exit status 1: pg_dump: error: connection to server failed"
    assert err.value.details == {"stage": "pg_dump", "rc": 1}
    assert os.listdir(store) == []


def test_producer_without_stderr(store):
    with pytest.raises(StageError) as err:
        write_artifact(Command(("false",)), str(store / "x.gz"), GZIP1)
    assert err.value.msg == "false failed with exit status 1: (no error output)"


def test_producer_killed_by_signal(store):
    producer = Command(("sh", "-c", "printf 'CREATE TABLE t (id int);\\n'; kill -9 $$"), stage="pg_dump")
    with pytest.raises(StageError) as err:
        write_artifact(producer, str(store / "x.gz"), GZIP1)
    assert err.value.msg.startswith("pg_dump was killed by signal 9")
    assert err.value.details == {"stage": "pg_dump", "rc": -9}
    assert os.listdir(store) == []


def test_producer_writes_then_fails_leaves_nothing(store):
    producer = Command(("sh", "-c", "head -c 3000000 /dev/urandom; echo 'disk error' >&2; exit 4"), stage="pg_dump")
    with pytest.raises(StageError) as err:
        write_artifact(producer, str(store / "x.gz"), GZIP1)
    assert err.value.msg == "pg_dump failed with exit status 4: disk error"
    assert os.listdir(store) == []  # neither the artifact nor the .partial temp file


@pytest.mark.parametrize(
    "producer",
    [
        pytest.param(("head", "-c", "20000000", "/dev/zero"), id="producer-still-writing(gets SIGPIPE)"),
        pytest.param(("printf", "small"), id="producer-done"),
    ],
)
def test_compressor_failure_is_reported_not_the_producers_sigpipe(store, fake_program, producer):
    fake_program("gzip", "head -c 10 >/dev/null; echo 'gzip: write error: No space left on device' >&2; exit 2")
    with pytest.raises(StageError) as err:
        write_artifact(Command(producer), str(store / "x.gz"), GZIP1)
    assert err.value.msg == "gzip failed with exit status 2: gzip: write error: No space left on device"
    assert err.value.details == {"stage": "gzip", "rc": 2}
    assert os.listdir(store) == []


def test_zero_output_uncompressed_is_refused(store):
    with pytest.raises(StageError) as err:
        write_artifact(Command(("printf", "")), str(store / "x.sql"), Compression("none", 0))
    assert "produced no data" in err.value.msg
    assert os.listdir(store) == []


@pytest.mark.parametrize("compression", [GZIP1, pytest.param(Compression("zstd", 3, 1), marks=needs_zstd)], ids=["gzip", "zstd"])
def test_zero_output_compressed_fails_the_read_back(store, compression):
    # A compressor turns no input into a valid, non-empty stream: the read-back check is what
    # refuses it (make_backup runs it before the rename).
    from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry, local_now
    from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, check_data

    path = str(store / ("x.sql" + compression.extension))
    written = write_artifact(Command(("printf", "")), path, compression)
    report = Report("x", path)
    check_data(report, Entry("x.sql" + compression.extension, path, local_now(), "", written.size, None))
    assert report.checks["content"] == "failed"
    assert report.content_size == 0
    assert "empty once decompressed" in report.problems[0]


def test_python_source_that_raises(store):
    def source(sink):
        sink.write(b"CREATE TABLE t (id int);\n" * 1000)
        raise RuntimeError("the snapshot went away")

    with pytest.raises(StageError) as err:
        write_artifact(source, str(store / "x.gz"), GZIP1)
    assert err.value.msg == "the data source failed: the snapshot went away"
    assert err.value.details == {"stage": "source"}
    assert os.listdir(store) == []


def test_python_source_with_failing_compressor_names_the_compressor(store, fake_program):
    fake_program("gzip", "echo 'gzip: write error: No space left on device' >&2; exit 2")

    def source(sink):
        for _block in range(200):
            sink.write(b"x" * 65536)

    with pytest.raises(StageError) as err:
        write_artifact(source, str(store / "x.gz"), GZIP1)
    assert err.value.details.get("stage") == "gzip"
    assert "No space left on device" in err.value.msg
    assert os.listdir(store) == []


def test_python_source_needs_a_compressor(store):
    with pytest.raises(ConfigError) as err:
        write_artifact(lambda sink: sink.write(b"x"), str(store / "x.sql"), Compression("none", 0))
    assert "needs a compressor" in err.value.msg
    assert os.listdir(store) == []


def test_before_commit_raising_keeps_the_artifact_from_appearing(store):
    def check(tmp, written):
        assert os.path.getsize(tmp) == written.size
        raise VerifyError("the dump was cut short")

    with pytest.raises(VerifyError) as err:
        write_artifact(Command(("printf", "SELECT 1;")), str(store / "x.gz"), GZIP1, before_commit=check)
    assert err.value.msg == "the dump was cut short"
    assert os.listdir(store) == []


@pytest.mark.parametrize("kind", ["file", "dangling-symlink"])
def test_existing_destination_is_refused(store, kind):
    dest = store / "x.gz"
    if kind == "file":
        dest.write_bytes(b"the old backup")
    else:
        os.symlink("nowhere", dest)
    with pytest.raises(ConfigError) as err:
        write_artifact(Command(("printf", "new")), str(dest), GZIP1)
    assert "already exists" in err.value.msg
    assert os.listdir(store) == ["x.gz"]
    if kind == "file":
        assert dest.read_bytes() == b"the old backup"
    else:
        assert os.readlink(dest) == "nowhere"


def test_missing_program_is_a_config_error(store):
    with pytest.raises(ConfigError) as err:
        write_artifact(Command(("cclite-no-such-program",)), str(store / "x.gz"), GZIP1)
    assert "cclite-no-such-program is not installed or not on PATH" in err.value.msg
    assert os.listdir(store) == []


def test_unwritable_destination_is_a_stage_error(tmp_path):
    with pytest.raises(StageError) as err:
        write_artifact(Command(("printf", "x")), str(tmp_path / "missing" / "x.gz"), GZIP1)
    assert "check free space and permissions" in err.value.msg


SECRET = "Tr0ub4dor-and-3-horses"


def secret_command(script: str) -> Command:
    return Command(("sh", "-c", script), env={"PGPASSWORD": SECRET}, secret_env=frozenset({"PGPASSWORD"}), stage="pg_dump")


def test_stderr_secret_is_redacted(store):
    cmd = secret_command('echo "FATAL: password \\"$PGPASSWORD\\" rejected for user postgres" >&2; exit 2')
    with pytest.raises(StageError) as err:
        write_artifact(cmd, str(store / "x.gz"), GZIP1)
    assert err.value.msg == 'pg_dump failed with exit status 2: FATAL: password "%s" rejected for user postgres' % REDACTED
    assert SECRET not in str(err.value) and SECRET not in repr(err.value.details)


def test_stderr_secret_is_redacted_when_the_tail_cuts_it(store):
    # The secret ends 4096 - 12 bytes before the end of stderr: the 4096-byte tail starts inside it.
    cmd = secret_command('printf "%s" "$PGPASSWORD" >&2; head -c 4084 /dev/zero | tr "\\0" "y" >&2; exit 2')
    with pytest.raises(StageError) as err:
        write_artifact(cmd, str(store / "x.gz"), GZIP1)
    assert SECRET[-12:] not in err.value.msg


# the reader --------------------------------------------------------------------------------


def test_reader_multi_member_gzip(tmp_path):
    parts = [b"-- part one\n" * 5000, os.urandom(2 * CHUNK), b"-- part three\n"]
    path = tmp_path / "multi.sql.gz"
    with open(path, "wb") as handle:
        handle.write(subprocess.run(["gzip", "-c"], input=parts[0], capture_output=True, check=True).stdout)
        handle.write(gzip.compress(parts[1]))
        handle.write(gzip.compress(parts[2]))
    content, reader = read_back(path)
    assert content == b"".join(parts)
    assert reader.sha256 == sha256_of(path) and reader.size == os.path.getsize(path)


def test_reader_highly_compressible_content(tmp_path):
    """64 MiB of zeros in a tiny file: output is produced in bounded pieces across the input."""
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip.compress(b"\0" * (64 * CHUNK)))
    reader = ArtifactReader(str(path))
    sizes = [len(chunk) for chunk in reader.chunks()]
    assert sum(sizes) == 64 * CHUNK and max(sizes) <= CHUNK


@pytest.mark.parametrize("keep", [5, 10, "half", -1, -8], ids=["in-header", "header-only", "half", "last-byte-missing", "trailer-missing"])
def test_reader_truncated_gzip(tmp_path, keep):
    data = gzip.compress(b"INSERT INTO t VALUES (42);\n" * 50000 + os.urandom(50000))
    cut = len(data) // 2 if keep == "half" else keep
    path = tmp_path / "cut.gz"
    path.write_bytes(data[:cut])
    with pytest.raises(VerifyError) as err:
        read_back(path)
    assert "truncated" in err.value.msg


@pytest.mark.parametrize("where", ["middle", "crc", "length"])
def test_reader_corrupt_gzip(tmp_path, where):
    data = bytearray(gzip.compress(b"INSERT INTO t VALUES (42);\n" * 50000 + os.urandom(50000)))
    index = {"middle": len(data) // 2, "crc": len(data) - 8, "length": len(data) - 1}[where]
    data[index] ^= 0xFF
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError) as err:
        read_back(path)
    assert "corrupt" in err.value.msg and str(path) in err.value.msg


def test_reader_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    with pytest.raises(VerifyError) as err:
        read_back(empty)
    assert err.value.msg == "%s is empty" % empty
    with pytest.raises(VerifyError) as err:
        read_back(tmp_path / "missing.gz")
    assert "cannot read" in err.value.msg


def test_reader_uncompressed(tmp_path):
    path = tmp_path / "plain.sql"
    path.write_bytes(b"SELECT 1;\n")
    content, reader = read_back(path)
    assert content == b"SELECT 1;\n" and reader.sha256 == hashlib.sha256(b"SELECT 1;\n").hexdigest() and reader.size == 10


@needs_zstd
def test_reader_zstd_round_trip_and_truncation(tmp_path):
    content = os.urandom(CHUNK + 999) + b"-- end\n" * 1000
    data = subprocess.run(["zstd", "-q", "-c", "-3"], input=content, capture_output=True, check=True).stdout
    good = tmp_path / "good.zst"
    good.write_bytes(data)
    out, reader = read_back(good)
    assert out == content and reader.sha256 == hashlib.sha256(data).hexdigest() and reader.size == len(data)

    cut = tmp_path / "cut.zst"
    cut.write_bytes(data[:-100])
    with pytest.raises(VerifyError) as err:
        read_back(cut)
    assert "the zstd stream is corrupt or truncated" in err.value.msg

    garbage = tmp_path / "garbage.zst"
    garbage.write_bytes(b"this is not zstd at all")
    with pytest.raises(VerifyError):
        read_back(garbage)


# the check in flight: the written bytes decompressed as they go ------------------------------


class Tail:
    """A content check like pg's DumpComplete: remembers the end and the amount fed."""

    def __init__(self, needle: bytes) -> None:
        self.needle = needle
        self.fed = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        self.fed += len(chunk)
        self.tail = (self.tail + chunk)[-64:]

    def result(self):
        return None if self.tail.endswith(self.needle) else "no end marker"


@pytest.mark.parametrize(
    "compression",
    [pytest.param(GZIP1, id="gzip"), pytest.param(Compression("zstd", 3, 1), id="zstd", marks=needs_zstd),
     pytest.param(Compression("none", 0), id="none")],
)
def test_check_in_flight_sees_every_byte(tmp_path, store, payload, compression):
    (tmp_path / "payload.bin").open("ab").write(b"-- dump complete\n")
    size = (tmp_path / "payload.bin").stat().st_size
    check = Tail(b"-- dump complete\n")
    dest = store / ("dump.sql" + compression.extension)
    written = write_artifact(Command(("cat", str(tmp_path / "payload.bin"))), str(dest), compression, check=check)
    assert written.checked is not None
    assert written.checked.stream is None and written.checked.content is None
    assert written.checked.content_size == size == check.fed
    assert written.sha256 == sha256_of(dest)


def test_check_in_flight_reports_the_content_problem(tmp_path, store):
    written = write_artifact(Command(("printf", "SELECT 1;\n")), str(store / "x.sql.gz"), GZIP1, check=Tail(b"complete\n"))
    assert written.checked.content == "no end marker"
    assert written.checked.content_size == len("SELECT 1;\n")


def test_check_in_flight_catches_a_compressor_that_writes_garbage(tmp_path, store, monkeypatch):
    # a "gzip" that passes its input through: 40 MB of not-gzip. The check fails on the first
    # chunk, then must drop the rest without ever blocking the writer.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "gzip"
    fake.write_text("#!/bin/sh\nexec cat\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    source = Command(("head", "-c", str(40 * CHUNK), "/dev/zero"))
    written = write_artifact(source, str(store / "x.sql.gz"), GZIP1, check=True)
    assert written.size == 40 * CHUNK
    assert "gzip stream is corrupt" in written.checked.stream


@pytest.mark.parametrize("compression", [GZIP1, pytest.param(Compression("zstd", 3, 1), marks=needs_zstd)], ids=["gzip", "zstd"])
def test_check_in_flight_sees_an_empty_stream(store, compression):
    written = write_artifact(Command(("printf", "")), str(store / ("x.sql" + compression.extension)), compression, check=True)
    assert written.checked.stream is None and written.checked.content_size == 0


def test_a_failed_write_stops_the_check(store):
    import threading

    before = threading.active_count()
    with pytest.raises(StageError):
        write_artifact(Command(("sh", "-c", "head -c 3000000 /dev/urandom; exit 3")), str(store / "x.gz"), GZIP1, check=True)
    assert threading.active_count() == before
    assert os.listdir(store) == []
