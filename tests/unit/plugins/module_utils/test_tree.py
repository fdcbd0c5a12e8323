# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tree backups (the directory format): the digest, the scan, the catalog, verify and retention."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import os
import tarfile
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, check_data
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _directory


def make_dump(path: str, rows: int = 3) -> None:
    os.makedirs(path)
    with open(os.path.join(path, "toc.dat"), "wb") as handle:
        handle.write(b"PGDMP" + b"\0" * 2000)
    with gzip.open(os.path.join(path, "3346.dat.gz"), "wb") as handle:
        handle.write(b"".join(b"%d\trow\n" % i for i in range(rows)) + b"\\.\n\n\n")


def publish(cat: Catalog, stamp: str, rows: int = 3) -> str:
    path = os.path.join(cat.directory, "postgres_backup_%s.dir" % stamp)
    make_dump(path, rows)
    scanned = _tree.scan(path, _directory.DirectoryContent().consumer_for)
    now = datetime.datetime.now(datetime.timezone.utc)
    written = Written(path, scanned.size, scanned.sha256, now, now, None, scanned.listed())
    manifest = _manifest.build("postgresql", written, {"algorithm": "gzip", "level": 1, "program": "pg_dump"}, fmt="directory")
    _manifest.write(path, manifest)
    return path


def test_digest_changes_with_any_file():
    files = [{"name": "a", "size": 1, "sha256": "x"}, {"name": "b", "size": 2, "sha256": "y"}]
    base = _tree.digest(files)
    assert base == _tree.digest(list(reversed(files)))  # order does not matter
    assert base != _tree.digest(files[:1])
    assert base != _tree.digest([files[0], dict(files[1], sha256="z")])
    assert base != _tree.digest([files[0], dict(files[1], name="c")])


def test_scan_counts_rows_and_catches_a_cut_file(tmp_path):
    path = str(tmp_path / "d")
    make_dump(path, rows=5)
    scanned = _tree.scan(path, _directory.DirectoryContent().consumer_for)
    data = [f for f in scanned.files if f.name == "3346.dat.gz"][0]
    assert data.stats == {"rows": 5} and scanned.stream is None and scanned.content is None
    with open(os.path.join(path, "3346.dat.gz"), "rb") as handle:
        assert data.sha256 == hashlib.sha256(handle.read()).hexdigest()
    # a data file without COPY's end line (a complete gzip stream of a cut table)
    with gzip.open(os.path.join(path, "3346.dat.gz"), "wb") as handle:
        handle.write(b"1\trow\n2\tro")
    assert "cut short" in _tree.scan(path, _directory.DirectoryContent().consumer_for).content
    # a truncated gzip stream
    with open(os.path.join(path, "3346.dat.gz"), "r+b") as handle:
        handle.truncate(10)
    assert _tree.scan(path).stream


def test_a_followed_file_is_read_while_it_grows_and_ends_where_its_writer_ends(tmp_path, monkeypatch):
    """A data file followed from its first bytes: read while the writer appends (several reads
    before the writer has finished), complete once submitted, same rows and sha256 as a scan."""
    monkeypatch.setattr(_tree.Growing, "POLL", 0.01)
    path = str(tmp_path / "d")
    os.makedirs(path)
    name = "3346.dat.gz"
    whole = gzip.compress(b"".join(b"%d\trow %d\n" % (i, i * 7) for i in range(200000)) + b"\\.\n\n\n")
    reads: list[int] = []
    with open(os.path.join(path, name), "wb", buffering=0) as out:
        with _tree.Scanner(path, _directory.DirectoryContent().consumer_for, 2) as scanner:
            scanner.follow(name)
            growing = scanner.growing[name]
            real_read = growing.handle.read
            growing.handle = type("Spy", (), {"read": lambda self, n: reads.append(n) or real_read(n), "close": growing.handle.close})()
            for start in range(0, len(whole), 4096):
                out.write(whole[start:start + 4096])
                if start % (64 * 4096) == 0:
                    time.sleep(0.02)
            before = len(reads)
            scanner.submit(name)
            followed = scanner.finish([name])
    assert before > 1  # it read while the file was being written
    again = _tree.scan(path, _directory.DirectoryContent().consumer_for)
    assert followed.files[0].stats == {"rows": 200000} == again.files[0].stats
    assert followed.files[0].sha256 == again.files[0].sha256 == hashlib.sha256(whole).hexdigest()
    assert followed.stream is None and followed.content is None


def test_a_followed_file_whose_writer_stops_early_is_reported_cut(tmp_path):
    """The writer ends (finish) with the file half written: the follower stops waiting and the
    gzip stream is reported cut; closing the scanner never hangs on a follower."""
    path = str(tmp_path / "d")
    os.makedirs(path)
    whole = gzip.compress(b"1\trow\n" * 50000 + b"\\.\n\n\n")
    with open(os.path.join(path, "5.dat.gz"), "wb") as out:
        out.write(whole[: len(whole) // 2])
    with _tree.Scanner(path, _directory.DirectoryContent().consumer_for, 1) as scanner:
        scanner.follow("5.dat.gz")
        assert scanner.finish(["5.dat.gz"]).stream
    with _tree.Scanner(path, None, 1) as scanner:
        scanner.follow("5.dat.gz")  # never submitted nor finished: the exit ends it


def test_no_more_files_are_followed_at_once_than_twice_the_threads(tmp_path):
    """Each followed file holds an open file: beyond twice the threads, a file is read once
    it is finished, as without following; a followed file whose read has ended frees its place."""
    path = str(tmp_path / "d")
    os.makedirs(path)
    whole = gzip.compress(b"1\trow\n" * 10 + b"\\.\n\n\n")
    for number in range(1, 6):
        with open(os.path.join(path, "%d.dat.gz" % number), "wb") as out:
            out.write(whole)
    with _tree.Scanner(path, _directory.DirectoryContent().consumer_for, 1) as scanner:
        for number in range(1, 6):
            scanner.follow("%d.dat.gz" % number)
        assert sorted(scanner.growing) == ["1.dat.gz", "2.dat.gz"]
        scanner.submit("1.dat.gz")
        scanner.futures["1.dat.gz"].result(timeout=10)
        scanner.follow("3.dat.gz")
        assert sorted(scanner.growing) == ["1.dat.gz", "2.dat.gz", "3.dat.gz"]
        scanned = scanner.finish(["%d.dat.gz" % n for n in range(1, 6)])
    assert [f.stats for f in scanned.files] == [{"rows": 10}] * 5 and scanned.stream is None


def test_table_names_from_the_listing():
    listing = (";\n; Archive created at ...\n3346; 0 16384 TABLE DATA public t1 postgres\n"
               "3347; 0 16389 TABLE DATA public we ird app owner\n214; 1259 16384 TABLE public t1 postgres\n")
    # the owner is the last word: a table name with a space is read right, an owner with one is not
    assert _directory.table_names(listing) == {"3346": "public.t1", "3347": "public.we ird app"}


def test_catalog_lists_verifies_and_prunes_trees(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL)
    cat.ensure()
    old = publish(cat, "20200101_000000")
    new = publish(cat, "20990101_000000")
    entries = cat.entries()
    assert [e.path for e in entries] == [new, old] and all(e.tree for e in entries)
    assert entries[0].size == _tree.size(new) and entries[0].algorithm == "directory"
    cat.point_latest(new)
    assert os.readlink(os.path.join(cat.directory, "latest.dir")) == os.path.basename(new)
    assert cat.resolve("latest").path == new
    report = Report(entries[0].name, new)
    check_data(report, entries[0], _directory.Content())
    assert report.state == "good" and report.checks == {"stream": "ok", "sha256": "ok", "content": "ok"}, report
    # an added file, then a changed one, are named
    with open(os.path.join(new, "extra.dat"), "wb") as handle:
        handle.write(b"x")
    report = Report(entries[0].name, new)
    check_data(report, cat.entries()[0], _directory.Content())
    assert report.state == "bad" and "extra.dat" in report.problems[0]
    os.unlink(os.path.join(new, "extra.dat"))
    with open(os.path.join(new, "toc.dat"), "r+b") as handle:
        handle.write(b"X")
    report = Report(entries[0].name, new)
    check_data(report, cat.entries()[0], _directory.Content())
    assert report.state == "bad" and "toc.dat" in report.problems[0]
    # retention deletes a whole expired tree, never the newest good one
    with open(os.path.join(new, "toc.dat"), "r+b") as handle:
        handle.write(b"P")
    later = datetime.datetime.now().astimezone() + datetime.timedelta(days=10)  # both expired
    pruned = cat.prune(1, lambda e: True, now=later)
    assert pruned.deleted == [old] and not os.path.exists(old) and not os.path.exists(old + _manifest.SUFFIX)
    assert os.path.isdir(new)


def test_a_stale_temp_directory_is_removed(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL)
    cat.ensure()
    tmp = os.path.join(cat.directory, ".postgres_backup_20250101_000000.dir.999999999.abcdefgh.partial")
    make_dump(tmp)
    assert [p.name for p in cat.partials() if p.stale] == [os.path.basename(tmp)]
    removed = cat.remove_stale_partials()
    assert removed[0]["size"] > 2000 and not os.path.exists(tmp)


def tree_with_files(tmp_path, files: dict) -> tuple[str, list]:
    path = str(tmp_path / "postgres_backup_20250101_000000.dir")
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "wb") as handle:
            handle.write(data)
    return path, _tree.scan(path, decompress=False).listed()


def test_tar_stream_holds_the_listed_files(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL)
    cat.ensure()
    path = publish(cat, "20250101_000000")
    files = _manifest.read(path)["artifact"]["files"]
    out = io.BytesIO()
    assert _tree.tar_stream(path, files, out, mtime=1700000000) == len(out.getvalue()) == _tree.tar_size(files, 1700000000)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert sorted(tar.getnames()) == sorted(f["name"] for f in files)
        member = tar.extractfile("3346.dat.gz")
        assert member is not None
        assert hashlib.sha256(member.read()).hexdigest() == [f for f in files if f["name"] == "3346.dat.gz"][0]["sha256"]
        assert all(m.isreg() and m.mode == 0o600 and m.mtime == 1700000000 for m in tar.getmembers())


@pytest.mark.parametrize("sizes", [[0], [1, 511, 512, 513], [10240 - 1024 - 512], [3 * 1024 * 1024 + 7]])
def test_tar_size_is_exact_before_reading(tmp_path, sizes):
    """Sizes around the block (512) and record (10240) boundaries, long names (a pax header)."""
    files = {("d%d/" % i if i % 2 else "") + "f%d-%s.dat" % (i, "x" * (120 * (i % 3))): os.urandom(size) for i, size in enumerate(sizes)}
    path, listed = tree_with_files(tmp_path, files)
    data = b"".join(_tree.tar_chunks(path, listed))
    assert len(data) == _tree.tar_size(listed) and len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == files


def test_tar_chunks_refuse_a_file_changed_since_the_manifest(tmp_path):
    path, listed = tree_with_files(tmp_path, {"toc.dat": b"a" * 3000, "1.dat.gz": b"b" * 100})
    with open(os.path.join(path, "toc.dat"), "r+b") as handle:
        handle.write(b"X")  # same size, other bytes
    with pytest.raises(VerifyError, match="toc.dat changed since its manifest was written"):
        b"".join(_tree.tar_chunks(path, sorted(listed, key=lambda f: f["name"] != "1.dat.gz")))


def test_untar_round_trip_checks_every_file(tmp_path):
    files = {"toc.dat": os.urandom(5000), "3346.dat.gz": os.urandom(70000), "sub/extra.dat": b""}
    path, listed = tree_with_files(tmp_path, files)
    target = tmp_path / "out"
    target.mkdir()
    chunks = list(_tree.tar_chunks(path, listed))
    _tree.untar(iter(chunks), str(target), listed, "the copy", 0o640)
    assert _tree.scan(str(target), decompress=False).listed() == listed
    assert oct(os.stat(target / "toc.dat").st_mode & 0o777) == oct(0o640)


def evil_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def one(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("member, why", [
    ((one("../escape.dat"), b"x"), "not a plain relative path"),
    ((one("/etc/escape.dat"), b"x"), "not a plain relative path"),
    ((one("sub/../../escape.dat"), b"x"), "not a plain relative path"),
    ((one("toc.dat", tarfile.SYMTYPE, "/etc/passwd"), b""), "is a symbolic link"),
    ((one("toc.dat", tarfile.LNKTYPE, "/etc/passwd"), b""), "is a hard link"),
    ((one("sub", tarfile.DIRTYPE), b""), "is a directory"),
    ((one("other.dat"), b"x"), "not in the manifest"),
])
def test_untar_refuses_traversal_links_and_strangers(tmp_path, member, why):
    listed = [{"name": "toc.dat", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()},
              {"name": "other.dat", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()}]
    if why == "not in the manifest":
        listed = listed[:1]
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(VerifyError, match=why):
        _tree.untar([evil_tar(member)], str(target), listed, "the copy")
    assert not os.path.exists(tmp_path / "escape.dat") and not os.path.islink(target / "toc.dat")


def test_untar_refuses_a_file_twice_and_a_wrong_sha256(tmp_path):
    listed = [{"name": "toc.dat", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()}]
    for data, why in ((evil_tar((one("toc.dat"), b"x"), (one("toc.dat"), b"x")), "appears twice"),
                      (evil_tar((one("toc.dat"), b"y")), "has sha256")):
        target = tmp_path / why.replace(" ", "_")
        target.mkdir()
        with pytest.raises(VerifyError, match=why):
            _tree.untar([data], str(target), listed, "the copy")


@pytest.mark.parametrize("cut", ["inside a file", "between files", "empty"])
def test_untar_detects_a_truncated_tar(tmp_path, cut):
    files = {"toc.dat": os.urandom(3000), "3346.dat.gz": os.urandom(5000)}
    path, listed = tree_with_files(tmp_path, files)
    data = b"".join(_tree.tar_chunks(path, listed))
    second = data.index(b"toc.dat", 600) - 0  # the second header starts at a block boundary before its name
    end = {"inside a file": 2000, "between files": second - second % 512, "empty": 0}[cut]
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(VerifyError, match="cut"):
        _tree.untar([data[:end]], str(target), listed, "the copy")


def test_in_place_renames_on_success_and_removes_on_failure(tmp_path):
    dest = str(tmp_path / "postgres_backup_20250101_000000.dir")
    with _tree.in_place(dest) as tmp:
        open(os.path.join(tmp, "toc.dat"), "wb").close()
    assert os.listdir(dest) == ["toc.dat"]
    other = str(tmp_path / "postgres_backup_20250102_000000.dir")
    with pytest.raises(RuntimeError):
        with _tree.in_place(other) as tmp:
            raise RuntimeError("boom")
    assert not os.path.exists(other) and not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]
