# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The off-site flows against a real local S3 endpoint (a moto server on 127.0.0.1, started
here): the HTTP boundary is the only seam."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import os
import random
import socket
import tarfile
import typing as t
import uuid

import pytest
from boto3.s3.transfer import TransferConfig
from moto.server import ThreadedMotoServer

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _manifest, _retention, _tree
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _adopt, _checks, _fetch, _listing, _prune, _remote, _upload
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError, VerifyError

MiB = 1024 * 1024
KEY = _crypto.Key(b"unit-test-key-0123456789-abcdefghijklmnop")
OTHER_KEY = _crypto.Key(b"another-key-0123456789-abcdefghijklmnopqr")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint() -> t.Iterator[str]:
    """moto's S3 server in a thread of this process: it ends with the process, also when
    ansible-test runs each test in a forked child that never tears module fixtures down."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield "http://%s:%d" % server.get_host_and_port()
    finally:
        server.stop()


@pytest.fixture
def remote(endpoint: str) -> _remote.Remote:
    bucket = "unit-%s" % uuid.uuid4().hex[:12]
    conn = s3.Connection(bucket, endpoint_url=endpoint, region="us-east-1", access_key="testing",
                         secret_key="testing-secret", addressing_style="path", max_attempts=1)
    remote = _remote.Remote(conn)
    remote.client.create_bucket(Bucket=bucket)
    return remote


@pytest.fixture
def locked(endpoint: str) -> _remote.Remote:
    """A bucket made with S3 Object Lock enabled (it turns versioning on)."""
    bucket = "locked-%s" % uuid.uuid4().hex[:12]
    conn = s3.Connection(bucket, endpoint_url=endpoint, region="us-east-1", access_key="testing",
                         secret_key="testing-secret", addressing_style="path", max_attempts=1)
    remote = _remote.Remote(conn)
    remote.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return remote


def make_backup(root: t.Any, stamp: str, size: int = 3000, store: str = "postgresql", series: str = "",
                ended: datetime.datetime | None = None) -> str:
    layout = _remote.layout_for(store)
    directory = root / layout.store
    directory.mkdir(parents=True, exist_ok=True)
    infix = "_%s" % series if series else ""
    path = str(directory / ("%s%s_%s%s.gz" % (layout.prefix, infix, stamp, layout.content)))
    data = os.urandom(size)
    with open(path, "wb") as handle:
        handle.write(data)
    when = ended or datetime.datetime.now(datetime.timezone.utc)
    written = Written(path, size, hashlib.sha256(data).hexdigest(), when, when)
    _manifest.write(path, _manifest.build(store, written, Compression(), fmt="plain", series=series))
    return path


def sha(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_multipart_upload_with_composite_checksum(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_010000", size=12 * MiB + 123)
    result = _upload.upload(remote, _remote.Options(part_size=5 * MiB), None, path, False, False)
    art = result["artifact"]
    assert result["changed"] and art["parts"] == 3 and art["part_size"] == 5 * MiB
    head = remote.client.head_object(Bucket=remote.conn.bucket, Key=art["key"], ChecksumMode="ENABLED")
    assert head["ContentLength"] == 12 * MiB + 123
    assert s3.same_checksum(head["ChecksumSHA256"], art["checksum"]["value"])
    assert art["checksum"]["value"].endswith("-3")
    assert head["Metadata"]["cclite-sha256"] == sha(path)
    body = remote.client.get_object(Bucket=remote.conn.bucket, Key=art["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha(path) == art["stored_sha256"]
    manifest = json.loads(remote.client.get_object(Bucket=remote.conn.bucket, Key=art["key"] + ".manifest.json")["Body"].read())
    assert manifest["artifact"]["sha256"] == sha(path)
    assert manifest["offsite"]["checksum"]["value"] == art["checksum"]["value"]
    assert manifest["encryption"] is None
    # a second run finds the good copy and uploads nothing
    again = _upload.upload(remote, _remote.Options(part_size=5 * MiB), None, path, False, False)
    assert not again["changed"]


def test_md5_mode_checks_the_multipart_etag(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_010001", size=6 * MiB)
    result = _upload.upload(remote, _remote.Options(checksum="md5", part_size=5 * MiB), None, path, False, False)
    assert result["artifact"]["checksum"]["algorithm"] == "MD5"
    head = remote.client.head_object(Bucket=remote.conn.bucket, Key=result["artifact"]["key"])
    assert head["ETag"].strip('"') == result["artifact"]["checksum"]["value"]
    entry = remote.entries("postgresql")[0]
    assert _checks.is_good(remote, entry)


def test_encrypted_round_trip_into_an_empty_root(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_020000", size=2 * MiB + 7)
    up = _upload.upload(remote, _remote.Options(), KEY, path, False, False)["artifact"]
    assert up["encrypted"] and up["key_id"] == KEY.key_id
    stored = remote.client.get_object(Bucket=remote.conn.bucket, Key=up["key"])["Body"].read()
    with open(path, "rb") as handle:
        assert stored[:1024] not in handle.read()
    assert len(stored) == _crypto.ciphertext_size(2 * MiB + 7)
    fresh = tmp_path / "host2"
    fetched = _fetch.fetch(remote, str(fresh), "postgresql", "latest", KEY)
    local = fetched["backups"][0]["path"]
    assert fetched["changed"] and sha(local) == sha(path)
    assert os.readlink(str(fresh / "postgresql" / "latest.sql.gz")) == os.path.basename(path)
    local_manifest = _manifest.read(local)
    assert local_manifest["encryption"] is None
    assert local_manifest["fetched_from"]["encryption"]["key_id"] == KEY.key_id
    assert oct(os.stat(local).st_mode & 0o777) == "0o600"
    again = _fetch.fetch(remote, str(fresh), "postgresql", "latest", KEY)
    assert not again["changed"] and again["backups"][0]["state"] == "present"


def test_a_backup_encrypted_at_rest_goes_to_s3_as_it_is_and_comes_back_as_it_was(remote: _remote.Remote, tmp_path: t.Any) -> None:
    """Not encrypted twice: the bytes on S3 are the local file's, and a fetch restores that file."""
    from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, write_artifact
    from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command

    directory = tmp_path / "host1" / "postgresql"
    directory.mkdir(parents=True)
    path = str(directory / "postgres_backup_20261127_040000.sql.gz")
    sql = "".join("%d\tsecret row %d\n" % (i, i) for i in range(20000))
    written = write_artifact(Command(("printf", "%s", sql[:100000]), stage="pg_dump"), path, Compression("gzip", 1, 1), seal=KEY)
    manifest = _manifest.build("postgresql", written, Compression("gzip", 1, 1), fmt="plain", encryption=_crypto.describe(KEY))
    _manifest.write(path, manifest)
    up = _upload.upload(remote, _remote.Options(), KEY, path, False, False)
    assert up["changed"] and up["artifact"]["encrypted"] and up["artifact"]["key_id"] == KEY.key_id
    assert "as it is (encrypted at rest" in up["msg"]
    stored = remote.client.get_object(Bucket=remote.conn.bucket, Key=up["artifact"]["key"])["Body"].read()
    with open(path, "rb") as handle:
        assert stored == handle.read()  # one layer only: the backup's own
    remote_manifest = json.loads(remote.client.get_object(
        Bucket=remote.conn.bucket, Key=up["artifact"]["key"] + ".manifest.json")["Body"].read())
    assert remote_manifest["encryption"] is None and remote_manifest["artifact"]["encryption"]["key_id"] == KEY.key_id
    listed = _listing.inspect(remote, "postgresql", "full", 25, KEY)
    assert listed["healthy"] and listed["backups"][0]["encrypted"] and listed["backups"][0]["key_id"] == KEY.key_id
    assert any("cannot decrypt" in p for p in _listing.inspect(remote, "postgresql", "quick", 25, OTHER_KEY)["problems"])
    fresh = tmp_path / "host2"
    local = _fetch.fetch(remote, str(fresh), "postgresql", "latest", None)["backups"][0]["path"]
    assert sha(local) == sha(path) and _manifest.read(local)["artifact"]["encryption"]["key_id"] == KEY.key_id
    assert b"".join(ArtifactReader(local, key=KEY).chunks()).decode() == sql[:100000]


def test_wrong_or_missing_key_fails_before_any_download(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_030000")
    _upload.upload(remote, _remote.Options(), KEY, path, False, False)
    fresh = tmp_path / "host2"
    with pytest.raises(_crypto.WrongKey, match="wrong key"):
        _fetch.fetch(remote, str(fresh), "postgresql", "latest", OTHER_KEY)
    with pytest.raises(_crypto.WrongKey, match="no key is configured"):
        _fetch.fetch(remote, str(fresh), "postgresql", os.path.basename(path), None)
    assert not (fresh / "postgresql").exists()
    report = _listing.inspect(remote, "postgresql", "quick", 25, OTHER_KEY)
    assert any("cannot decrypt" in p for p in report["problems"])


def test_tampered_copy_is_found_and_never_fetched(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_040000", size=5000)
    key = _upload.upload(remote, _remote.Options(), None, path, False, False)["artifact"]["key"]
    remote.client.put_object(Bucket=remote.conn.bucket, Key=key, Body=os.urandom(5000))
    report = _listing.inspect(remote, "postgresql", "quick", 25, None)
    assert report["backups"][0]["verification"]["state"] == "bad"
    assert any("differs from the manifest" in p or "reports no SHA-256" in p for p in report["problems"])
    with pytest.raises(BackupError):
        _fetch.fetch(remote, str(tmp_path / "host2"), "postgresql", os.path.basename(path), None)
    assert not (tmp_path / "host2" / "postgresql" / os.path.basename(path)).exists()


def test_full_check_downloads_and_compares(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_050000", size=100000)
    _upload.upload(remote, _remote.Options(), KEY, path, False, False)
    report = _listing.inspect(remote, "postgresql", "full", 25, KEY, sample=1)
    assert report["healthy"], report["problems"]
    assert report["backups"][0]["verification"]["checks"]["download"] == "ok"


def test_changed_local_backup_is_not_uploaded(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_060000", size=4000)
    with open(path, "r+b") as handle:
        handle.write(b"CORRUPT")
    with pytest.raises(VerifyError, match="changed or is corrupt"):
        _upload.upload(remote, _remote.Options(), None, path, False, False)
    listed = remote.client.list_objects_v2(Bucket=remote.conn.bucket).get("Contents", [])
    assert listed == []
    uploads = remote.client.list_multipart_uploads(Bucket=remote.conn.bucket).get("Uploads", [])
    assert uploads == []


def test_retention_keeps_the_newest_good_copy(remote: _remote.Remote, tmp_path: t.Any) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    paths = [make_backup(tmp_path, "2020010%d_000000" % day, ended=old + datetime.timedelta(days=day)) for day in (1, 2, 3)]
    for path in paths:
        _upload.upload(remote, _remote.Options(), None, path, False, False)
    # the newest copy loses its manifest: it is not good, the one before it is protected
    remote.client.delete_object(Bucket=remote.conn.bucket, Key=remote.conn.key("postgresql", os.path.basename(paths[2]) + ".manifest.json"))
    dry = _prune.prune(remote, "postgresql", 30, dry_run=True)
    assert dry["protected"] == [os.path.basename(paths[1])]
    assert sorted(dry["deleted"]) == sorted([os.path.basename(paths[0]), os.path.basename(paths[2])])
    assert len(remote.entries("postgresql")) == 3
    done = _prune.prune(remote, "postgresql", 30)
    assert [e.name for e in remote.entries("postgresql")] == [os.path.basename(paths[1])]
    assert done["deleted"] == dry["deleted"]
    # nothing good left but the protected one: pruning again deletes nothing
    assert _prune.prune(remote, "postgresql", 0)["deleted"] == []


def test_retention_by_generations_on_s3(remote: _remote.Remote, tmp_path: t.Any) -> None:
    days = [(1, 1), (1, 15), (2, 3), (2, 20), (3, 5)]
    paths = []
    for month, day in days:
        ended = datetime.datetime(2020, month, day, 2, 0, tzinfo=datetime.timezone.utc)
        paths.append(make_backup(tmp_path, "2020%02d%02d_020000" % (month, day), ended=ended))
        _upload.upload(remote, _remote.Options(), None, paths[-1], False, False)
    names = [os.path.basename(p) for p in paths]
    keep = _retention.Keep(monthly=2)
    dry = _prune.prune(remote, "postgresql", 30, dry_run=True, keep=keep)
    assert sorted(dry["deleted"]) == sorted(names[:3])
    assert dry["protected"] == [names[4]] and dry["generations"] == {names[4]: ["monthly 2020-03"], names[3]: ["monthly 2020-02"]}
    assert len(remote.entries("postgresql")) == 5  # the dry run deleted nothing
    done = _prune.prune(remote, "postgresql", 30, keep=keep)
    assert sorted(done["deleted"]) == sorted(names[:3])
    assert sorted(e.name for e in remote.entries("postgresql")) == sorted(names[3:])


def test_retention_keeps_everything_when_nothing_is_good(remote: _remote.Remote, tmp_path: t.Any) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    path = make_backup(tmp_path, "20200101_000000", ended=old)
    key = _upload.upload(remote, _remote.Options(), None, path, False, False)["artifact"]["key"]
    remote.client.put_object(Bucket=remote.conn.bucket, Key=key, Body=b"broken")
    result = _prune.prune(remote, "postgresql", 1)
    assert result["deleted"] == [] and "kept all 1" in result["reason"]


def test_series_are_pruned_and_fetched_apart(remote: _remote.Remote, tmp_path: t.Any) -> None:
    a = make_backup(tmp_path, "20261127_070000", series="operator_demo")
    b = make_backup(tmp_path, "20261127_070001", series="analytics")
    for path in (a, b):
        _upload.upload(remote, _remote.Options(), None, path, False, False)
    fetched = _fetch.fetch(remote, str(tmp_path / "fresh"), "postgresql", "latest", None)
    assert sorted(i["series"] for i in fetched["backups"]) == ["analytics", "operator_demo"]
    assert os.path.islink(str(tmp_path / "fresh" / "postgresql" / "latest_analytics.sql.gz"))
    only = _fetch.fetch(remote, str(tmp_path / "fresh2"), "postgresql", "latest", None, series=["analytics"])
    assert [i["series"] for i in only["backups"]] == ["analytics"]


def test_bad_names_are_refused(remote: _remote.Remote, tmp_path: t.Any) -> None:
    with pytest.raises(ConfigError, match="without directories"):
        _fetch.fetch(remote, str(tmp_path), "postgresql", "../../etc/passwd", None)
    with pytest.raises(ConfigError, match="not a postgresql backup name"):
        _fetch.fetch(remote, str(tmp_path), "postgresql", "notes.txt", None)
    with pytest.raises(ConfigError, match="no postgresql copy|no good postgresql copy|there is no"):
        _fetch.fetch(remote, str(tmp_path), "postgresql", "latest", None)


def test_endpoint_down_is_one_clear_sentence(tmp_path: t.Any) -> None:
    conn = s3.Connection("bkt-down", endpoint_url="http://127.0.0.1:%d" % free_port(), region="us-east-1",
                         access_key="testing", secret_key="testing-secret-value", addressing_style="path", max_attempts=1)
    path = make_backup(tmp_path, "20261127_080000")
    with pytest.raises(StageError, match="cannot reach") as info:
        _upload.upload(_remote.Remote(conn), _remote.Options(), None, path, False, False)
    assert "testing-secret-value" not in info.value.msg
    assert sha(path) == _manifest.read(path)["artifact"]["sha256"]


# Copies made by the guide's scripts (no manifest) ------------------------------------------


def dump_gz(size: int = 20000, seed: int = 1) -> bytes:
    """gzip'd text like a pg_dump, of about ``size`` bytes once compressed (random hex barely compresses)."""
    rng = random.Random(seed)
    lines = ["INSERT INTO users VALUES (%d, '%032x');" % (i, rng.getrandbits(128)) for i in range(size // 20 + 1)]
    return gzip.compress(("\n".join(lines) + "\n").encode("ascii"))


def put_legacy(remote: _remote.Remote, name: str, data: bytes, store: str = "postgresql", multipart: bool = False) -> str:
    """Upload as the guide's scripts do (``aws s3 cp``): no manifest, no metadata; a file above
    8 MiB goes in 8 MiB parts."""
    key = remote.conn.key(store, name)
    if multipart:
        config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
        remote.client.upload_fileobj(io.BytesIO(data), remote.conn.bucket, key, Config=config)
    else:
        remote.client.put_object(Bucket=remote.conn.bucket, Key=key, Body=data)
    return key


def by_name(report: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {b["name"]: b for b in report["backups"]}


def test_legacy_copies_are_listed_and_checked_without_a_manifest(remote: _remote.Remote) -> None:
    good = "postgres_backup_20261127_090000.sql.gz"
    cut = "postgres_backup_20261127_080000.sql.gz"
    tiny = "postgres_backup_20261127_070000.sql.gz"
    data = dump_gz()
    put_legacy(remote, good, data)
    put_legacy(remote, cut, data[: len(data) // 2])
    put_legacy(remote, tiny, gzip.compress(b"--\n"))
    now = datetime.datetime(2026, 11, 27, 10, 0).astimezone()
    quick = by_name(_listing.inspect(remote, "postgresql", "quick", 25, None, now=now))
    assert quick[good]["legacy"] and not quick[good]["incomplete"] and quick[good]["sha256"] is None
    check = quick[good]["verification"]
    assert check["state"] == "unverified" and check["problems"] == []
    assert check["checks"] == {"age": "ok", "manifest": "skipped", "checksum": "skipped", "exists": "ok", "size": "ok"}
    assert any("no manifest on S3 (a copy made by the guide's scripts): checksum not compared" in n for n in check["notes"])
    assert quick[cut]["verification"]["state"] == "unverified"  # a cut stream needs a download to show
    assert quick[tiny]["verification"]["state"] == "bad"
    assert "floor 1024" in quick[tiny]["verification"]["problems"][0]
    full = _listing.inspect(remote, "postgresql", "full", 25, None, sample=3, now=now)
    checked = by_name(full)
    assert checked[good]["verification"]["state"] == "good"
    assert checked[good]["verification"]["checks"]["stream"] == "ok"
    assert checked[cut]["verification"]["state"] == "bad"
    assert any("ends early" in p for p in checked[cut]["verification"]["problems"])
    # a looser floor for the store makes the tiny copy acceptable
    lenient = _remote.Remote(remote.conn, remote.client, min_size={"postgresql": 10})
    assert by_name(_listing.inspect(lenient, "postgresql", "quick", 25, None, now=now))[tiny]["verification"]["state"] == "unverified"


def test_an_unfinished_upload_is_bad_not_legacy(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_100000")
    key = _upload.upload(remote, _remote.Options(), None, path, False, False)["artifact"]["key"]
    head = remote.client.head_object(Bucket=remote.conn.bucket, Key=key)
    assert head["Metadata"]["cclite-backup"] == _manifest.COLLECTION_VERSION
    remote.client.delete_object(Bucket=remote.conn.bucket, Key=key + ".manifest.json")
    # an upload of 0.1.0 before the marker had its name carries cclite-sha256
    old = remote.conn.key("postgresql", "postgres_backup_20261127_090000.sql.gz")
    remote.client.put_object(Bucket=remote.conn.bucket, Key=old, Body=dump_gz(), Metadata={"cclite-sha256": "0" * 64})
    now = datetime.datetime(2026, 11, 27, 11, 0).astimezone()  # a fixed clock: the age rule must not decide this
    report = _listing.inspect(remote, "postgresql", "full", 25, None, sample=5, now=now)
    for item in report["backups"]:
        assert item["incomplete"] and not item["legacy"]
        assert item["verification"]["state"] == "bad"
        assert "the upload did not finish" in item["verification"]["problems"][0]
    with pytest.raises(VerifyError, match="did not finish"):
        _fetch.fetch(remote, str(tmp_path / "fresh"), "postgresql", os.path.basename(path), None)


def test_retention_keeps_the_newest_legacy_copy_whose_stream_is_intact(remote: _remote.Remote) -> None:
    names = ["postgres_backup_2020010%d_000000.sql.gz" % day for day in (1, 2, 3)]
    data = dump_gz()
    put_legacy(remote, names[0], data)
    put_legacy(remote, names[1], data)
    put_legacy(remote, names[2], data[:-100])  # the newest is cut
    dry = _prune.prune(remote, "postgresql", 30, dry_run=True)
    assert dry["protected"] == [names[1]]
    assert sorted(dry["deleted"]) == [names[0], names[2]]
    _prune.prune(remote, "postgresql", 30)
    assert [e.name for e in remote.entries("postgresql")] == [names[1]]
    assert _prune.prune(remote, "postgresql", 0)["deleted"] == []


def test_retention_prefers_a_newer_good_copy_without_downloading_legacy_ones(remote: _remote.Remote, tmp_path: t.Any) -> None:
    old = "postgres_backup_20200101_000000.sql.gz"
    put_legacy(remote, old, b"not even gzip, and never downloaded" * 100)
    path = make_backup(tmp_path, "20200102_000000", ended=datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc))
    _upload.upload(remote, _remote.Options(), None, path, False, False)
    result = _prune.prune(remote, "postgresql", 30)
    assert result["protected"] == [os.path.basename(path)] and result["deleted"] == [old]


def test_fetch_a_legacy_copy_into_the_catalog(remote: _remote.Remote, tmp_path: t.Any) -> None:
    older, newer = "postgres_backup_20261127_110000.sql.gz", "postgres_backup_20261127_120000.sql.gz"
    data = dump_gz(seed=2)
    put_legacy(remote, older, data)
    put_legacy(remote, newer, data[:-50])  # cut: latest skips it for the older one
    root = tmp_path / "fresh"
    with pytest.raises(VerifyError, match="ends early"):
        _fetch.fetch(remote, str(root), "postgresql", newer, None)
    assert not (root / "postgresql" / newer).exists()
    predicted = _fetch.fetch(remote, str(root), "postgresql", "latest", None, check_mode=True)
    assert predicted["changed"] and predicted["backups"][0]["name"] == older
    assert not (root / "postgresql" / older).exists()
    fetched = _fetch.fetch(remote, str(root), "postgresql", "latest", None)
    item = fetched["backups"][0]
    local = str(root / "postgresql" / older)
    assert fetched["changed"] and item["legacy"] and item["downloaded"] and item["name"] == older
    assert item["skipped"] and newer in item["skipped"][0]
    assert sha(local) == hashlib.sha256(data).hexdigest() == item["sha256"]
    assert _manifest.read(local) is None  # a local legacy backup, as the scripts left them
    assert os.readlink(str(root / "postgresql" / "latest.sql.gz")) == older
    assert oct(os.stat(local).st_mode & 0o777) == "0o600"
    assert not [n for n in os.listdir(str(root / "postgresql")) if n.endswith(".partial")]
    again = _fetch.fetch(remote, str(root), "postgresql", older, None)
    assert not again["changed"] and again["backups"][0]["state"] == "present"


def test_adopt_writes_manifests_for_copies_matching_local_backups(remote: _remote.Remote, tmp_path: t.Any) -> None:
    root = tmp_path / "host"
    single = make_backup(root, "20261127_130000", size=300000)
    multi = make_backup(root, "20261127_140000", size=17 * MiB + 5)
    other = make_backup(root, "20261127_150000", size=4000)
    for path in (single, multi):
        with open(path, "rb") as handle:
            put_legacy(remote, os.path.basename(path), handle.read(), multipart=os.path.getsize(path) > 8 * MiB)
    put_legacy(remote, os.path.basename(other), os.urandom(4000))  # same name and size, other bytes
    lonely = "postgres_backup_20261127_160000.sql.gz"
    lonely_data = dump_gz(seed=3)
    put_legacy(remote, lonely, lonely_data)
    etag = remote.client.head_object(Bucket=remote.conn.bucket, Key=remote.conn.key("postgresql", os.path.basename(multi)))["ETag"]
    assert etag.strip('"').endswith("-3")

    predicted = _adopt.adopt(remote, str(root), "postgresql", check_mode=True)
    assert predicted["changed"] and sorted(predicted["adopted"]) == sorted(os.path.basename(p) for p in (single, multi))
    assert all(e.legacy for e in remote.entries("postgresql"))

    done = _adopt.adopt(remote, str(root), "postgresql")
    items = {i["name"]: i for i in done["backups"]}
    assert done["changed"]
    assert items[os.path.basename(single)]["matched_by"] == "etag"
    assert items[os.path.basename(multi)]["matched_by"] == "multipart etag"
    assert items[os.path.basename(other)]["state"] == "mismatch"
    assert items[lonely]["state"] == "needs_local_adoption" and "s3_backup_fetch name=%s" % lonely in items[lonely]["reason"]
    for path in (single, multi):
        key = remote.conn.key("postgresql", os.path.basename(path) + ".manifest.json")
        manifest = json.loads(remote.client.get_object(Bucket=remote.conn.bucket, Key=key)["Body"].read())
        assert manifest["artifact"]["sha256"] == sha(path) == manifest["offsite"]["sha256"]
        assert manifest["offsite"]["adopted"] is True and manifest["offsite"]["checksum"]["algorithm"] == "MD5"
    listed = by_name(_listing.inspect(remote, "postgresql", "quick", 1e9, None))
    for path in (single, multi):
        item = listed[os.path.basename(path)]
        assert not item["legacy"] and item["adopted"] and item["verification"]["state"] == "good"
    assert listed[os.path.basename(other)]["legacy"]
    # the objects themselves were not rewritten
    head = remote.client.head_object(Bucket=remote.conn.bucket, Key=remote.conn.key("postgresql", os.path.basename(multi)))
    assert head["ETag"] == etag and "cclite-backup" not in head["Metadata"]

    again = _adopt.adopt(remote, str(root), "postgresql")
    assert not again["changed"] and again["adopted"] == []

    # fetch_missing brings the lonely copy home; once adopted locally, the S3 adopt takes it
    fetched = _adopt.adopt(remote, str(root), "postgresql", fetch_missing=True)
    assert fetched["changed"] and {i["name"]: i["state"] for i in fetched["backups"]}[lonely] == "fetched"
    local = str(root / "postgresql" / lonely)
    assert sha(local) == hashlib.sha256(lonely_data).hexdigest() and _manifest.read(local) is None
    when = datetime.datetime.now(datetime.timezone.utc)
    written = Written(local, len(lonely_data), sha(local), when, when)
    _manifest.write(local, _manifest.build("postgresql", written, Compression(), fmt="plain", kind="adopted"))
    last = _adopt.adopt(remote, str(root), "postgresql")
    assert last["adopted"] == [lonely]


def test_upload_refuses_to_overwrite_another_legacy_copy(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_170000", size=5000)
    put_legacy(remote, os.path.basename(path), dump_gz())
    with pytest.raises(VerifyError, match="made by the guide's scripts"):
        _upload.upload(remote, _remote.Options(), None, path, False, False)


# Hosts sharing one bucket and prefix ---------------------------------------------------------

HOST_STORES = ("postgresql", "redis", "qdrant")


def host_backup(root: t.Any, store: str, stamp: str, host: str, run_id: str, ended: datetime.datetime | None = None) -> str:
    """A backup of ``store`` made by ``host`` in the run ``run_id`` (its manifest says so)."""
    path = make_backup(root, stamp, store=store, ended=ended)
    manifest = _manifest.read(path)
    manifest.update(run_id=run_id, host=host)
    _manifest.write_json(_manifest.path_for(path), manifest)
    return path


def as_host(remote: _remote.Remote, host: str, host_dir: bool = False) -> _remote.Remote:
    conn = dataclasses.replace(remote.conn, host=host, host_dir=host_dir)
    return _remote.Remote(conn, client=remote.client)


@pytest.mark.parametrize("host_dir", [False, True])
def test_hosts_sharing_a_bucket_keep_their_series_apart(remote: _remote.Remote, tmp_path: t.Any, host_dir: bool) -> None:
    db1, db2 = as_host(remote, "db1", host_dir), as_host(remote, "db2", host_dir)
    made: dict[str, dict[str, str]] = {"db1": {}, "db2": {}}
    for store in HOST_STORES:
        # db1 backs up at 02:00:10, db2 a night later: db2's is the newest in the bucket
        made["db1"][store] = host_backup(tmp_path / "db1", store, "20261201_020010", "db1", "20261201_020000")
        made["db2"][store] = host_backup(tmp_path / "db2", store, "20261202_020010", "db2", "20261202_020000")
        _upload.upload(db1, _remote.Options(), None, made["db1"][store], False, False)
        _upload.upload(db2, _remote.Options(), None, made["db2"][store], False, False)
    keys = sorted(o["Key"] for o in remote.client.list_objects_v2(Bucket=remote.conn.bucket)["Contents"])
    if host_dir:
        assert "cc-lite/backups/db1/redis/redis_backup_20261201_020010.rdb.gz" in keys
        assert "cc-lite/backups/db2/qdrant/qdrant_backup_20261202_020010.tar.gz" in keys
    else:  # the guide's layout
        assert "cc-lite/backups/redis/redis_backup_20261201_020010.rdb.gz" in keys
    for store in HOST_STORES:
        # each host lists only its own copies; "latest" of db1 is db1's, not db2's newer one
        assert [e.name for e in db1.entries(store)] == [os.path.basename(made["db1"][store])]
        assert [e.name for e in db2.entries(store)] == [os.path.basename(made["db2"][store])]
        got = _fetch.fetch(db1, str(tmp_path / "db1-fresh"), store, "latest", None)
        assert got["backups"][0]["name"] == os.path.basename(made["db1"][store])
        fetched = tmp_path / "db1-fresh" / _remote.layout_for(store).store / got["backups"][0]["name"]
        assert sha(str(fetched)) == sha(made["db1"][store])
    # the sets on S3: db1 sees its set; db2's is reachable only by naming db2
    members = [m for store in HOST_STORES for m in _listing.set_members(db1, store)]
    assert {m.run_id for m in members} == {"20261201_020000"} and {m.host for m in members} == {"db1"}
    assert db1.others == ({} if host_dir else {"postgresql": 1, "redis": 1, "qdrant": 1})
    # restore db2's set onto a replacement host (restore_from_host=db2): every store, bytes checked
    replacement = as_host(remote, "db2", host_dir)
    for store in HOST_STORES:
        got = _fetch.fetch(replacement, str(tmp_path / "new-host"), store, os.path.basename(made["db2"][store]), None)
        fetched = tmp_path / "new-host" / _remote.layout_for(store).store / got["backups"][0]["name"]
        assert sha(str(fetched)) == sha(made["db2"][store])
        assert _manifest.read(str(fetched))["host"] == "db2"
        # the fetched copy is db2's: an upload from the new host (as itself) leaves it alone
        skipped = _upload.upload(as_host(remote, "db3", host_dir), _remote.Options(), None, str(fetched), False, False)
        assert skipped["changed"] is False and "backup of host db2" in skipped["msg"]


def test_retention_prunes_only_the_hosts_own_copies(remote: _remote.Remote, tmp_path: t.Any) -> None:
    db1, db2 = as_host(remote, "db1"), as_host(remote, "db2")
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    for store in HOST_STORES:
        for day in (1, 2):
            when = old + datetime.timedelta(days=day)
            for host, other, stamp in ((db1, "db1", "2020010%d_000000" % day), (db2, "db2", "2020010%d_000100" % day)):
                path = host_backup(tmp_path / other, store, stamp, other, stamp, when)
                _upload.upload(host, _remote.Options(), None, path, False, False)
    for store in HOST_STORES:
        done = _prune.prune(db1, store, 30)
        assert done["deleted"] == ["%s_20200101_000000%s.gz" % (_remote.layout_for(store).prefix, _remote.layout_for(store).content)]
        # db2's two old copies are untouched
        assert len(db2.entries(store)) == 2
        assert len(db1.entries(store)) == 1


def test_a_key_of_another_host_is_never_overwritten(remote: _remote.Remote, tmp_path: t.Any) -> None:
    db1, db2 = as_host(remote, "db1"), as_host(remote, "db2")
    # both hosts back up at the same second: the same name in the guide's layout
    _upload.upload(db1, _remote.Options(), None, host_backup(tmp_path / "db1", "redis", "20261201_020000", "db1", "20261201_020000"), False, False)
    with pytest.raises(VerifyError) as exc:
        _upload.upload(db2, _remote.Options(), None, host_backup(tmp_path / "db2", "redis", "20261201_020000", "db2", "20261201_020000"), False, False)
    assert "as a backup of host db1" in exc.value.msg and "backup_s3_host_dir: true" in exc.value.msg
    assert _manifest.owner(db1.entries("redis")[0].manifest) == "db1"
    with pytest.raises(ConfigError):
        s3.Connection("b", host="", host_dir=True)
    with pytest.raises(ConfigError):
        s3.Connection("b", host="redis", host_dir=True)


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_object_lock_keeps_every_copy_from_the_credentials_that_wrote_it(locked: _remote.Remote, tmp_path: t.Any, mode: str) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    path = make_backup(tmp_path, "20200101_000000", size=6000, ended=old)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = _upload.upload(locked, _remote.Options(object_lock=mode, object_lock_days=30), None, path, False, False)
    key = result["artifact"]["key"]
    client, bucket = locked.client, locked.conn.bucket
    for locked_key in (key, key + ".manifest.json"):
        head = client.head_object(Bucket=bucket, Key=locked_key)  # (moto's GetObjectRetention answers 500)
        assert head["ObjectLockMode"] == mode
        until = head["ObjectLockRetainUntilDate"]
        assert started + datetime.timedelta(days=30) - datetime.timedelta(minutes=1) <= until <= started + datetime.timedelta(days=30, minutes=5)
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    manifest = json.loads(client.get_object(Bucket=bucket, Key=key + ".manifest.json")["Body"].read())
    assert manifest["offsite"]["object_lock"]["mode"] == mode.lower() and manifest["offsite"]["object_lock"]["version"] == version
    # the credentials that wrote it cannot delete the data, in either mode, without a bypass
    with pytest.raises(s3.ClientError) as err:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    # retention run with them only hides the expired copy behind a delete marker: the locked version stays
    assert _prune.prune(locked, "postgresql", 1)["deleted"] == []  # the newest good copy is kept anyway
    client.delete_object(Bucket=bucket, Key=key)
    kept = client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert hashlib.sha256(kept).hexdigest() == sha(path)
    if mode == "GOVERNANCE":  # a separate principal allowed to bypass governance can still clean up
        client.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert all(v["VersionId"] != version for v in client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []))


def test_object_lock_needs_its_days() -> None:
    with pytest.raises(ConfigError, match="object_lock needs object_lock_days of at least 1"):
        _remote.Options(object_lock="COMPLIANCE")
    with pytest.raises(ConfigError, match="object_lock must be governance or compliance"):
        _remote.Options(object_lock="LEGAL_HOLD", object_lock_days=3)


# Directory-format backups: one object, the tar of the directory ---------------------------------


def make_tree(root: t.Any, stamp: str, sizes: t.Sequence[int] = (3000, 6 * MiB + 11, 0),
              ended: datetime.datetime | None = None) -> str:
    """A directory backup (``toc.dat`` and data files) with its manifest, as the dump writes it."""
    directory = root / "postgresql"
    directory.mkdir(parents=True, exist_ok=True)
    path = str(directory / ("postgres_backup_%s.dir" % stamp))
    os.makedirs(path)
    for index, size in enumerate(sizes):
        with open(os.path.join(path, "toc.dat" if index == 0 else "%d.dat.gz" % (3340 + index)), "wb") as handle:
            handle.write(os.urandom(size))
    scanned = _tree.scan(path, decompress=False)
    when = ended or datetime.datetime.now(datetime.timezone.utc)
    written = Written(path, scanned.size, scanned.sha256, when, when, None, scanned.listed())
    _manifest.write(path, _manifest.build("postgresql", written, {"algorithm": "gzip", "level": 1, "program": "pg_dump"},
                                          fmt="directory"))
    return path


def tree_files(path: str) -> dict[str, str]:
    return {f["name"]: f["sha256"] for f in _tree.scan(path, decompress=False).listed()}


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_directory_backup_goes_to_s3_as_one_tar_and_comes_back(remote: _remote.Remote, tmp_path: t.Any, key: t.Any) -> None:
    path = make_tree(tmp_path / "host1", "20261127_070000")
    files = tree_files(path)
    name = os.path.basename(path)
    result = _upload.upload(remote, _remote.Options(part_size=5 * MiB), key, path, False, False)
    art = result["artifact"]
    assert result["changed"] and "as a tar of its 3 files" in result["msg"] and art["parts"] == 2
    # one object (and its manifest) under the backup's name; the manifest says it is a tar
    keys = sorted(o["Key"] for o in remote.client.list_objects_v2(Bucket=remote.conn.bucket)["Contents"])
    assert keys == [art["key"], art["key"] + ".manifest.json"]
    manifest = json.loads(remote.client.get_object(Bucket=remote.conn.bucket, Key=art["key"] + ".manifest.json")["Body"].read())
    archive = manifest["archive"]
    assert archive["format"] == "tar" and archive["of"] == "directory"
    assert manifest["artifact"]["sha256"] == _manifest.read(path)["artifact"]["sha256"] and len(manifest["artifact"]["files"]) == 3
    stored = remote.client.get_object(Bucket=remote.conn.bucket, Key=art["key"])["Body"].read()
    assert len(stored) == manifest["offsite"]["size"] == art["stored_size"]
    if key is None:
        assert hashlib.sha256(stored).hexdigest() == archive["sha256"] and len(stored) == archive["size"]
        with tarfile.open(fileobj=io.BytesIO(stored)) as tar:
            assert {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar.getmembers()} == files
    else:
        assert manifest["encryption"]["key_id"] == KEY.key_id and len(stored) == _crypto.ciphertext_size(archive["size"])
    # listing and both levels of checks see a good copy
    quick = _listing.inspect(remote, "postgresql", "quick", 25, key)
    assert quick["healthy"], quick["problems"]
    assert quick["backups"][0]["compression"] == "directory" and quick["backups"][0]["name"] == name
    full = _listing.inspect(remote, "postgresql", "full", 25, key, sample=1)
    assert full["healthy"] and full["backups"][0]["verification"]["checks"]["download"] == "ok"
    assert not _upload.upload(remote, _remote.Options(part_size=5 * MiB), key, path, False, False)["changed"]
    # the local copy is gone: the fetch brings the directory back, checked, with latest.dir
    fresh = tmp_path / "host2"
    fetched = _fetch.fetch(remote, str(fresh), "postgresql", "latest", key)
    local = fetched["backups"][0]["path"]
    assert fetched["changed"] and local == str(fresh / "postgresql" / name) and os.path.isdir(local)
    assert tree_files(local) == files
    assert os.readlink(str(fresh / "postgresql" / "latest.dir")) == name
    local_manifest = _manifest.read(local)
    assert "archive" not in local_manifest and local_manifest["fetched_from"]["archive"]["sha256"] == archive["sha256"]
    assert local_manifest["artifact"] == _manifest.read(path)["artifact"]
    assert oct(os.stat(os.path.join(local, "toc.dat")).st_mode & 0o777) == "0o600"
    assert not [n for n in os.listdir(fresh / "postgresql") if n.endswith(".partial")]
    again = _fetch.fetch(remote, str(fresh), "postgresql", "latest", key)
    assert not again["changed"] and again["backups"][0]["state"] == "present"


def test_a_directory_changed_since_its_manifest_is_not_uploaded(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_tree(tmp_path, "20261127_080000", sizes=(3000, 7 * MiB))
    with open(os.path.join(path, "3341.dat.gz"), "r+b") as handle:
        handle.seek(6 * MiB)
        handle.write(b"CORRUPT")  # in the second part: the first one was already sent
    with pytest.raises(VerifyError, match="3341.dat.gz changed since its manifest.*the local backup changed or is corrupt"):
        _upload.upload(remote, _remote.Options(part_size=5 * MiB), None, path, False, False)
    assert remote.client.list_objects_v2(Bucket=remote.conn.bucket).get("Contents", []) == []
    assert remote.client.list_multipart_uploads(Bucket=remote.conn.bucket).get("Uploads", []) == []
    os.unlink(os.path.join(path, "toc.dat"))
    with pytest.raises(VerifyError, match="missing: toc.dat"):
        _upload.upload(remote, _remote.Options(), None, path, False, False)


def test_a_directory_copy_that_does_not_match_is_never_put_in_place(remote: _remote.Remote, tmp_path: t.Any) -> None:
    """The manifest on S3 lists a file the tar does not hold (both replaced, each consistent with
    its checksums): the fetch fails and leaves neither the directory nor a temp one."""
    path = make_tree(tmp_path / "host1", "20261127_090000", sizes=(3000, 5000))
    art = _upload.upload(remote, _remote.Options(), None, path, False, False)["artifact"]
    manifest_key = art["key"] + ".manifest.json"
    manifest = json.loads(remote.client.get_object(Bucket=remote.conn.bucket, Key=manifest_key)["Body"].read())
    manifest["artifact"]["files"][0]["sha256"] = "0" * 64
    manifest["artifact"]["sha256"] = _tree.digest(manifest["artifact"]["files"])  # a manifest that holds together
    remote.client.put_object(Bucket=remote.conn.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    fresh = tmp_path / "host2"
    with pytest.raises(VerifyError, match="has sha256"):
        _fetch.fetch(remote, str(fresh), "postgresql", os.path.basename(path), None)
    left = os.listdir(fresh / "postgresql")
    assert not [n for n in left if n.startswith(("postgres_backup", "latest")) or n.endswith(".partial")], left


def test_retention_on_s3_treats_directory_copies_like_files(remote: _remote.Remote, tmp_path: t.Any) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    paths = [make_tree(tmp_path, "2020010%d_000000" % day, sizes=(2000, 3000), ended=old + datetime.timedelta(days=day))
             for day in (1, 2, 3)]
    paths.append(make_backup(tmp_path, "20200104_000000", ended=old + datetime.timedelta(days=4)))
    for path in paths:
        _upload.upload(remote, _remote.Options(), None, path, False, False)
    # the newest copy (a file) loses its manifest: the newest directory copy is the one kept
    remote.client.delete_object(Bucket=remote.conn.bucket, Key=remote.conn.key("postgresql", os.path.basename(paths[3]) + ".manifest.json"))
    done = _prune.prune(remote, "postgresql", 30)
    assert done["protected"] == [os.path.basename(paths[2])]
    assert sorted(done["deleted"]) == sorted(os.path.basename(p) for p in (paths[0], paths[1], paths[3]))
    keys = sorted(o["Key"] for o in remote.client.list_objects_v2(Bucket=remote.conn.bucket)["Contents"])
    assert keys == [remote.conn.key("postgresql", os.path.basename(paths[2])) + s for s in ("", ".manifest.json")]


def test_a_directory_copy_is_fetched_only_with_a_manifest_that_holds_together(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_tree(tmp_path / "host1", "20261127_100000", sizes=(3000, 5000))
    art = _upload.upload(remote, _remote.Options(), None, path, False, False)["artifact"]
    manifest_key = art["key"] + ".manifest.json"
    manifest = json.loads(remote.client.get_object(Bucket=remote.conn.bucket, Key=manifest_key)["Body"].read())
    manifest["artifact"]["files"] = manifest["artifact"]["files"][:1]  # a file dropped from the list
    remote.client.put_object(Bucket=remote.conn.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    with pytest.raises(VerifyError, match="lists files that do not make its sha256"):
        _fetch.fetch(remote, str(tmp_path / "host2"), "postgresql", os.path.basename(path), None)
    # a .dir object without a manifest (not made by this collection) is never fetched
    remote.client.delete_object(Bucket=remote.conn.bucket, Key=manifest_key)
    remote.client.put_object(Bucket=remote.conn.bucket, Key=art["key"], Body=os.urandom(4096))
    with pytest.raises(VerifyError, match="cannot be checked without one"):
        _fetch.fetch(remote, str(tmp_path / "host2"), "postgresql", os.path.basename(path), None)
    assert not os.path.lexists(tmp_path / "host2" / "postgresql" / os.path.basename(path))
    # and a directory that is not a backup is refused before anything is sent
    os.makedirs(tmp_path / "host1" / "postgresql" / "notabackup")
    with pytest.raises(ConfigError, match="not a directory backup"):
        _upload.upload(remote, _remote.Options(), None, str(tmp_path / "host1" / "postgresql" / "notabackup"), False, False)


def test_a_local_manifest_whose_file_list_does_not_hold_together_is_not_uploaded(remote: _remote.Remote, tmp_path: t.Any) -> None:
    path = make_tree(tmp_path, "20261127_110000", sizes=(3000, 5000))
    manifest = _manifest.read(path)
    manifest["artifact"]["files"] = manifest["artifact"]["files"][1:]
    _manifest.write_json(_manifest.path_for(path), manifest)
    with pytest.raises(VerifyError, match="files that do not make its sha256"):
        _upload.upload(remote, _remote.Options(), None, path + "/", False, False)
    assert remote.client.list_objects_v2(Bucket=remote.conn.bucket).get("Contents", []) == []
