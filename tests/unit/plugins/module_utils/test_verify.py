# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared verification rules and the read-back check, on real files."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._client import DumpComplete
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules, check_data, check_rules, verify

NOW = datetime.datetime(2025, 6, 15, 12, 0, 0, tzinfo=datetime.timezone.utc)
RULES = Rules(max_age_hours=25.0, min_size_bytes=1024, size_drop_ratio=0.5, size_history=5)
DUMP = b"CREATE TABLE t (id int);\n" * 200 + b"--\n-- PostgreSQL database dump complete\n--\n\n"
BIG_DUMP = b"-- " + os.urandom(4000).hex().encode() + b"\n" + DUMP  # compresses to more than the 1024-byte floor


def entry(size: int = 5000, hours: float = 1.0, manifest: dict | None = None, name: str = "b.sql.gz", path: str = "/nonexistent") -> Entry:
    return Entry(name, path, NOW - datetime.timedelta(hours=hours), "", size, manifest)


def real(tmp_path, content: bytes = DUMP, *, manifest: bool = True, sha256: str | None = None, size: int | None = None) -> Entry:
    """A gzip file on disk, with a manifest that matches it unless told otherwise."""
    path = tmp_path / "postgres_backup_20250615_110000.sql.gz"
    data = gzip.compress(content)
    path.write_bytes(data)
    meta = {"artifact": {"size": len(data) if size is None else size, "sha256": sha256 or hashlib.sha256(data).hexdigest()}}
    return Entry(path.name, str(path), NOW - datetime.timedelta(hours=1), "", len(data), meta if manifest else None)


def rules_report(e: Entry, older=(), check_age: bool = True) -> Report:
    report = Report(e.name, e.path)
    check_rules(report, e, list(older), RULES, NOW, check_age)
    return report


def test_age_rule():
    old = rules_report(entry(hours=26.04, manifest={"artifact": {"size": 5000}}))
    assert old.checks["age"] == "failed"
    assert old.problems == ["b.sql.gz: the newest backup is 26.0 hours old (limit 25): backups are not running"]
    assert rules_report(entry(hours=24.9)).checks["age"] == "ok"
    assert "age" not in rules_report(entry(hours=100), check_age=False).checks


def test_size_floor():
    report = rules_report(entry(size=100), older=[entry(size=100)] * 3)
    assert report.checks["size"] == "failed"
    assert report.problems == ["b.sql.gz: only 100 bytes (floor 1024): the dump is probably empty"]


def test_size_drop_against_the_median_of_recent_backups():
    older = [entry(size=s) for s in (10000, 12000, 11000)]
    dropped = rules_report(entry(size=5000), older)
    assert dropped.checks["size"] == "failed"
    assert dropped.problems == [
        "b.sql.gz: 5000 bytes, 45% of the median of the previous 3 backups (11000 bytes): data may be missing"
    ]
    assert rules_report(entry(size=5600), older).checks["size"] == "ok"  # above half of 11000


def test_size_drop_looks_at_the_recent_history_only():
    older = [entry(size=10000)] * 5 + [entry(size=10 ** 9)] * 10  # huge old backups beyond size_history
    assert rules_report(entry(size=6000), older).checks["size"] == "ok"
    report = rules_report(entry(size=4000), older)
    assert "of the median of the previous 5 backups (10000 bytes)" in report.problems[0]


def test_manifest_size_mismatch():
    report = rules_report(entry(size=3000, manifest={"artifact": {"size": 2000, "sha256": "x"}}))
    assert report.checks["manifest"] == "failed"
    assert report.problems == ["b.sql.gz: size 3000 differs from the manifest's 2000: the file was changed or cut"]
    assert rules_report(entry(size=3000, manifest={"artifact": {"size": 3000}})).checks["manifest"] == "ok"


def test_legacy_backup_is_noted_not_failed(tmp_path):
    e = real(tmp_path, BIG_DUMP, manifest=False)
    report = verify(e, [], RULES, NOW, check_age=True, content=DumpComplete())
    assert report.problems == []
    assert report.checks == {"age": "ok", "size": "ok", "manifest": "skipped", "stream": "ok", "sha256": "skipped", "content": "ok"}
    assert report.notes == [
        "%s: manifest not checked: no manifest (a legacy backup): size and sha256 cannot be compared" % e.name,
        "%s: sha256 not checked: no manifest to compare with" % e.name,
    ]
    assert report.state == "good"  # the stream read back whole


def test_everything_good(tmp_path):
    e = real(tmp_path, BIG_DUMP)
    report = verify(e, [], RULES, NOW, check_age=True, content=DumpComplete())
    assert report.checks == {"age": "ok", "size": "ok", "manifest": "ok", "stream": "ok", "sha256": "ok", "content": "ok"}
    assert report.problems == [] and report.notes == []
    assert report.as_dict() == {"state": "good", "checks": report.checks, "problems": [], "notes": []}


def test_sha256_mismatch(tmp_path):
    e = real(tmp_path, sha256="0" * 64)
    report = Report(e.name, e.path)
    check_data(report, e)
    actual = hashlib.sha256(open(e.path, "rb").read()).hexdigest()
    assert report.checks == {"stream": "ok", "sha256": "failed"}
    assert report.problems == ["%s: sha256 %s differs from the manifest's %s" % (e.name, actual, "0" * 64)]
    assert report.state == "bad"


def test_corrupt_stream_stops_the_read(tmp_path):
    e = real(tmp_path)
    data = open(e.path, "rb").read()
    with open(e.path, "wb") as handle:
        handle.write(data[: len(data) - 10])
    report = Report(e.name, e.path)
    check_data(report, e, DumpComplete())
    assert report.checks == {"stream": "failed"}  # no sha256 or content verdict on a broken stream
    assert "truncated" in report.problems[0]
    assert report.state == "bad"


def test_content_check_failure(tmp_path):
    e = real(tmp_path, b"CREATE TABLE t (id int);\n" * 100)  # pg_dump never finished
    report = Report(e.name, e.path)
    check_data(report, e, DumpComplete())
    assert report.checks == {"stream": "ok", "sha256": "ok", "content": "failed"}
    assert report.problems == ["%s: the SQL does not end with pg_dump's 'dump complete' line: the dump was cut short" % e.name]


def test_rules_only_is_unverified():
    report = verify(entry(size=5000, manifest={"artifact": {"size": 5000}}), [], RULES, NOW, read_data=False)
    assert report.checks == {"size": "ok", "manifest": "ok"}
    assert report.state == "unverified"


@pytest.mark.parametrize("checks, problems, state", [
    ({"stream": "ok"}, [], "good"),
    ({"sha256": "ok"}, [], "good"),
    ({"size": "ok", "manifest": "ok"}, [], "unverified"),
    ({"stream": "ok", "sha256": "ok"}, ["x: bad"], "bad"),
])
def test_report_state(checks, problems, state):
    report = Report("x", "/x", dict(checks), list(problems))
    assert report.state == state
