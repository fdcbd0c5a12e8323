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

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
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


def test_tar_stream_holds_the_listed_files(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL)
    cat.ensure()
    path = publish(cat, "20250101_000000")
    files = _manifest.read(path)["artifact"]["files"]
    out = io.BytesIO()
    _tree.tar_stream(path, files, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert sorted(tar.getnames()) == sorted(f["name"] for f in files)
        member = tar.extractfile("3346.dat.gz")
        assert member is not None
        assert hashlib.sha256(member.read()).hexdigest() == [f for f in files if f["name"] == "3346.dat.gz"][0]["sha256"]
