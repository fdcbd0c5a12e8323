# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Point-in-time recovery without a server: the base backup's tar scan, the WAL archive's window,
gaps and pruning, the recovery target, and the shipped archive/restore command on real files."""

from __future__ import annotations

import datetime
import gzip
import importlib.util
import io
import json
import os
import tarfile
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _pitr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SCRIPT = os.path.join(ROOT, "roles", "postgresql_backup", "files", "cclite_wal.py")

LABEL = b"""START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-12-06 22:00:00 UTC
LABEL: cclite.backup
START TIMELINE: 1
"""
MANIFEST = (b'{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [],\n"WAL-Ranges": [\n'
            b'{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n"Manifest-Checksum": "x"}\n')


def base_tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def scan(data: bytes, chunk: int = 777) -> _pitr.TarScan:
    s = _pitr.TarScan()
    for i in range(0, len(data), chunk):
        s.feed(data[i:i + chunk])
    return s


def test_tar_scan_reads_label_and_manifest_across_chunks() -> None:
    s = scan(base_tar({"PG_VERSION": b"15\n", "backup_label": LABEL, "base/1/1259": b"x" * 9000, "backup_manifest": MANIFEST}))
    assert s.result() is None
    assert s.stats() == {"files": 4, "start_lsn": "0/2000028", "start_segment": "000000010000000000000002",
                         "start_time": "2026-12-06 22:00:00 UTC", "timeline": 1, "end_lsn": "0/2000100"}


def test_tar_scan_fails_a_cut_stream_and_a_missing_manifest() -> None:
    whole = base_tar({"backup_label": LABEL, "base/1/1259": b"x" * 9000, "backup_manifest": MANIFEST})
    assert scan(whole[:5000]).result() == "the tar stream is cut short"
    assert scan(base_tar({"backup_label": LABEL})).result() == "the base backup has no backup_manifest"


def segment(directory: str, name: str, age: float = 0.0) -> None:
    path = os.path.join(directory, name + ".gz")
    with gzip.open(path, "wb") as handle:
        handle.write(b"wal")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    with open(os.path.join(directory, name + ".sha256"), "w", encoding="utf-8") as handle:
        handle.write("x  %s\n" % name)


def test_gaps_name_the_missing_segments_and_ignore_a_timeline_switch(tmp_path) -> None:
    wal = tmp_path / "postgresql" / "wal"
    wal.mkdir(parents=True)
    for name in ("000000010000000000000002", "000000010000000000000003", "000000010000000000000006", "000000020000000000000007"):
        segment(str(wal), name)
    found = _pitr.segments(str(wal))
    assert [f[1] for f in found] == [2, 3, 6, 7]
    assert _pitr.gaps(found) == ["segments 4 to 5 (0/4000000) are missing"]


def test_prune_keeps_what_the_oldest_base_needs(tmp_path) -> None:
    wal = tmp_path / "postgresql" / "wal"
    wal.mkdir(parents=True)
    for n in range(1, 6):
        segment(str(wal), "0000000100000000000000%02X" % n)
    (wal / "00000002.history.gz").write_bytes(b"h")
    assert _pitr.prune_wal(str(tmp_path), None) == []  # no base backup kept: nothing goes
    assert _pitr.prune_wal(str(tmp_path), 3, check_mode=True) == ["000000010000000000000001", "000000010000000000000002"]
    assert len(os.listdir(wal)) == 11
    _pitr.prune_wal(str(tmp_path), 3)
    assert sorted(os.listdir(wal)) == sorted(["00000002.history.gz"] + ["0000000100000000000000%02X%s" % (n, s)
                                                                        for n in (3, 4, 5) for s in (".gz", ".sha256")])


def test_archive_info_window_and_recovery_point(tmp_path) -> None:
    wal = tmp_path / "postgresql" / "wal"
    wal.mkdir(parents=True)
    segment(str(wal), "000000010000000000000002", age=120)
    segment(str(wal), "000000010000000000000004", age=30)
    info = _pitr.archive_info(str(tmp_path))
    assert info["segments"] == 2 and info["newest_segment"] == "000000010000000000000004"
    assert 29 <= info["recovery_point_age_seconds"] <= 40
    assert info["gaps"] == ["segments 3 to 3 (0/3000000) are missing"]
    assert info["window"]["from"] is None  # no base backup yet


def entry(created: datetime.datetime, end_lsn: str) -> Entry:
    manifest = {"ended": created.isoformat(), "source": {"start_lsn": "0/2000028", "end_lsn": end_lsn}}
    return Entry("postgres_base_backup_x.tar.gz", "/nowhere", created, "", 1, manifest)


def test_target_admits_only_bases_that_end_before_it() -> None:
    utc = datetime.timezone.utc
    base = entry(datetime.datetime(2026, 12, 6, 22, 0, 0, tzinfo=utc), "0/5000000")
    assert _pitr.Target_("time", "2026-12-06 22:00:01+00").admits(base)
    assert not _pitr.Target_("time", "2026-12-06 21:59:59+00:00").admits(base)
    assert _pitr.Target_("lsn", "0/5000000").admits(base)
    assert not _pitr.Target_("lsn", "0/4FFFFFF").admits(base)
    assert _pitr.Target_("latest", "").settings() == {}
    assert _pitr.Target_("name", "before-upgrade").settings()["recovery_target_name"] == "before-upgrade"
    assert _pitr.Target_("time", "2026-12-06 22:00:01+00").settings()["recovery_target_time"] == "2026-12-06 22:00:01+00:00"


@pytest.mark.parametrize("kind, value, words", [
    ("time", "yesterday", "is not 'YYYY-MM-DD HH:MM:SS[+TZ]'"),
    ("lsn", "12345", "is not an LSN"),
    ("name", "", "restore_target_name is empty"),
    ("when", "x", "unknown recovery target"),
])
def test_bad_targets_are_refused_with_the_fix(kind: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _pitr.Target_(kind, value)
    assert words in err.value.msg


# --- the shipped archive/restore command ---------------------------------------------------

@pytest.fixture
def wal_script(tmp_path):
    spec = importlib.util.spec_from_file_location("cclite_wal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wal = tmp_path / "wal"
    wal.mkdir()
    return module, {"wal_dir": str(wal), "s3": None, "compression_level": 1}


def test_archive_stores_atomically_and_is_idempotent(wal_script, tmp_path) -> None:
    cclite_wal, conf = wal_script
    seg = tmp_path / "seg"
    seg.write_bytes(os.urandom(100000))
    assert "stored" in cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    assert "already stored" in cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    with gzip.open(os.path.join(conf["wal_dir"], "000000010000000000000001.gz")) as handle:
        assert handle.read() == seg.read_bytes()
    assert sorted(os.listdir(conf["wal_dir"])) == ["000000010000000000000001.gz", "000000010000000000000001.sha256"]


def test_a_failure_just_after_the_newest_segment_is_failing_now(wal_script, tmp_path) -> None:
    """The segment is stored locally, then its S3 copy fails in the same second: the event log's
    sub-second stamps put the failure after the segment, so the archive is failing now."""
    cclite_wal, conf = wal_script
    seg = tmp_path / "seg"
    seg.write_bytes(os.urandom(1000))
    cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    stored = os.path.getmtime(os.path.join(conf["wal_dir"], "000000010000000000000001.gz"))
    cclite_wal.event(conf["wal_dir"], "failed", "000000010000000000000001", "S3 is unreachable (http://x)")
    events, failing = _pitr.archive_events(conf["wal_dir"], stored)
    assert len(events) == 1 and failing == events and "S3 is unreachable" in failing[0]
    assert _pitr.archive_events(conf["wal_dir"], time.time() + 1)[1] == []  # a segment stored later: recovered


def test_archive_refuses_other_content_under_the_same_name(wal_script, tmp_path) -> None:
    cclite_wal, conf = wal_script
    seg = tmp_path / "seg"
    seg.write_bytes(b"one")
    cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    seg.write_bytes(b"two")
    with pytest.raises(cclite_wal.Failed, match="already archived with other content"):
        cclite_wal.archive(conf, str(seg), "000000010000000000000001")


def test_a_failed_write_leaves_no_segment(wal_script, tmp_path, monkeypatch) -> None:
    cclite_wal, conf = wal_script
    seg = tmp_path / "seg"
    seg.write_bytes(os.urandom(1000))

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cclite_wal.os, "fsync", full)
    with pytest.raises(OSError):
        cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    assert os.listdir(conf["wal_dir"]) == []  # neither the segment nor a temp file: the server keeps it and retries


def test_restore_checks_the_sha256_and_says_when_a_segment_is_missing(wal_script, tmp_path) -> None:
    cclite_wal, conf = wal_script
    seg = tmp_path / "seg"
    seg.write_bytes(os.urandom(5000))
    cclite_wal.archive(conf, str(seg), "000000010000000000000001")
    assert cclite_wal.restore(conf, "000000010000000000000009", str(tmp_path / "out")) is None
    cclite_wal.restore(conf, "000000010000000000000001", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == seg.read_bytes()
    with gzip.open(os.path.join(conf["wal_dir"], "000000010000000000000001.gz"), "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(cclite_wal.Failed, match="does not match its sha256"):
        cclite_wal.restore(conf, "000000010000000000000001", str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists()


def test_main_exit_codes_and_no_secret_in_messages(wal_script, tmp_path, monkeypatch, capsys) -> None:
    cclite_wal, conf = wal_script
    conf["s3"] = {"bucket": "b", "endpoint_url": "http://127.0.0.1:9", "access_key": "AKIA-x", "secret_key": "Very-Secret-S3", "timeout": 2}
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(conf))
    monkeypatch.setenv("CCLITE_WAL_SETTINGS", str(settings))
    seg = tmp_path / "seg"
    seg.write_bytes(b"segment")
    assert cclite_wal.main(["archive", str(seg), "000000010000000000000001"]) == 1  # S3 is down: not archived
    err = capsys.readouterr().err
    assert "S3 is unreachable" in err and "Very-Secret-S3" not in err
    assert cclite_wal.main(["bogus"]) == 2
