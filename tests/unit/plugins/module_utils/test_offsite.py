# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The off-site flows against a real local S3 endpoint (a moto server on 127.0.0.1, started
here): the HTTP boundary is the only seam."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import typing as t
import uuid

import pytest
from moto.server import ThreadedMotoServer

from ansible_collections.cclite.backup.plugins.module_utils import _crypto, _manifest
from ansible_collections.cclite.backup.plugins.module_utils import _offsite as offsite
from ansible_collections.cclite.backup.plugins.module_utils import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._errors import BackupError, ConfigError, StageError, VerifyError

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
def remote(endpoint: str) -> offsite.Remote:
    bucket = "unit-%s" % uuid.uuid4().hex[:12]
    conn = s3.Connection(bucket, endpoint_url=endpoint, region="us-east-1", access_key="testing",
                         secret_key="testing-secret", addressing_style="path", max_attempts=1)
    remote = offsite.Remote(conn)
    remote.client.create_bucket(Bucket=bucket)
    return remote


def make_backup(root: t.Any, stamp: str, size: int = 3000, store: str = "postgresql", series: str = "",
                ended: datetime.datetime | None = None) -> str:
    layout = offsite.layout_for(store)
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


def test_multipart_upload_with_composite_checksum(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_010000", size=12 * MiB + 123)
    result = offsite.upload(remote, offsite.Options(part_size=5 * MiB), None, path, False, False)
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
    again = offsite.upload(remote, offsite.Options(part_size=5 * MiB), None, path, False, False)
    assert not again["changed"]


def test_md5_mode_checks_the_multipart_etag(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_010001", size=6 * MiB)
    result = offsite.upload(remote, offsite.Options(checksum="md5", part_size=5 * MiB), None, path, False, False)
    assert result["artifact"]["checksum"]["algorithm"] == "MD5"
    head = remote.client.head_object(Bucket=remote.conn.bucket, Key=result["artifact"]["key"])
    assert head["ETag"].strip('"') == result["artifact"]["checksum"]["value"]
    entry = remote.entries("postgresql")[0]
    assert offsite.is_good(remote, entry)


def test_encrypted_round_trip_into_an_empty_root(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_020000", size=2 * MiB + 7)
    up = offsite.upload(remote, offsite.Options(), KEY, path, False, False)["artifact"]
    assert up["encrypted"] and up["key_id"] == KEY.key_id
    stored = remote.client.get_object(Bucket=remote.conn.bucket, Key=up["key"])["Body"].read()
    with open(path, "rb") as handle:
        assert stored[:1024] not in handle.read()
    assert len(stored) == _crypto.ciphertext_size(2 * MiB + 7)
    fresh = tmp_path / "host2"
    fetched = offsite.fetch(remote, str(fresh), "postgresql", "latest", KEY)
    local = fetched["backups"][0]["path"]
    assert fetched["changed"] and sha(local) == sha(path)
    assert os.readlink(str(fresh / "postgresql" / "latest.sql.gz")) == os.path.basename(path)
    local_manifest = _manifest.read(local)
    assert local_manifest["encryption"] is None
    assert local_manifest["fetched_from"]["encryption"]["key_id"] == KEY.key_id
    assert oct(os.stat(local).st_mode & 0o777) == "0o600"
    again = offsite.fetch(remote, str(fresh), "postgresql", "latest", KEY)
    assert not again["changed"] and again["backups"][0]["state"] == "present"


def test_wrong_or_missing_key_fails_before_any_download(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_030000")
    offsite.upload(remote, offsite.Options(), KEY, path, False, False)
    fresh = tmp_path / "host2"
    with pytest.raises(_crypto.WrongKey, match="wrong key"):
        offsite.fetch(remote, str(fresh), "postgresql", "latest", OTHER_KEY)
    with pytest.raises(_crypto.WrongKey, match="no key is configured"):
        offsite.fetch(remote, str(fresh), "postgresql", os.path.basename(path), None)
    assert not (fresh / "postgresql").exists()
    report = offsite.inspect(remote, "postgresql", "quick", 25, OTHER_KEY)
    assert any("cannot decrypt" in p for p in report["problems"])


def test_tampered_copy_is_found_and_never_fetched(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path / "host1", "20261127_040000", size=5000)
    key = offsite.upload(remote, offsite.Options(), None, path, False, False)["artifact"]["key"]
    remote.client.put_object(Bucket=remote.conn.bucket, Key=key, Body=os.urandom(5000))
    report = offsite.inspect(remote, "postgresql", "quick", 25, None)
    assert report["backups"][0]["verification"]["state"] == "bad"
    assert any("differs from the manifest" in p or "reports no SHA-256" in p for p in report["problems"])
    with pytest.raises(BackupError):
        offsite.fetch(remote, str(tmp_path / "host2"), "postgresql", os.path.basename(path), None)
    assert not (tmp_path / "host2" / "postgresql" / os.path.basename(path)).exists()


def test_full_check_downloads_and_compares(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_050000", size=100000)
    offsite.upload(remote, offsite.Options(), KEY, path, False, False)
    report = offsite.inspect(remote, "postgresql", "full", 25, KEY, sample=1)
    assert report["healthy"], report["problems"]
    assert report["backups"][0]["verification"]["checks"]["download"] == "ok"


def test_changed_local_backup_is_not_uploaded(remote: offsite.Remote, tmp_path: t.Any) -> None:
    path = make_backup(tmp_path, "20261127_060000", size=4000)
    with open(path, "r+b") as handle:
        handle.write(b"CORRUPT")
    with pytest.raises(VerifyError, match="changed or is corrupt"):
        offsite.upload(remote, offsite.Options(), None, path, False, False)
    listed = remote.client.list_objects_v2(Bucket=remote.conn.bucket).get("Contents", [])
    assert listed == []
    uploads = remote.client.list_multipart_uploads(Bucket=remote.conn.bucket).get("Uploads", [])
    assert uploads == []


def test_retention_keeps_the_newest_good_copy(remote: offsite.Remote, tmp_path: t.Any) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    paths = [make_backup(tmp_path, "2020010%d_000000" % day, ended=old + datetime.timedelta(days=day)) for day in (1, 2, 3)]
    for path in paths:
        offsite.upload(remote, offsite.Options(), None, path, False, False)
    # the newest copy loses its manifest: it is not good, the one before it is protected
    remote.client.delete_object(Bucket=remote.conn.bucket, Key=remote.conn.key("postgresql", os.path.basename(paths[2]) + ".manifest.json"))
    dry = offsite.prune(remote, "postgresql", 30, dry_run=True)
    assert dry["protected"] == [os.path.basename(paths[1])]
    assert sorted(dry["deleted"]) == sorted([os.path.basename(paths[0]), os.path.basename(paths[2])])
    assert len(remote.entries("postgresql")) == 3
    done = offsite.prune(remote, "postgresql", 30)
    assert [e.name for e in remote.entries("postgresql")] == [os.path.basename(paths[1])]
    assert done["deleted"] == dry["deleted"]
    # nothing good left but the protected one: pruning again deletes nothing
    assert offsite.prune(remote, "postgresql", 0)["deleted"] == []


def test_retention_keeps_everything_when_nothing_is_good(remote: offsite.Remote, tmp_path: t.Any) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    path = make_backup(tmp_path, "20200101_000000", ended=old)
    key = offsite.upload(remote, offsite.Options(), None, path, False, False)["artifact"]["key"]
    remote.client.put_object(Bucket=remote.conn.bucket, Key=key, Body=b"broken")
    result = offsite.prune(remote, "postgresql", 1)
    assert result["deleted"] == [] and "kept all 1" in result["reason"]


def test_series_are_pruned_and_fetched_apart(remote: offsite.Remote, tmp_path: t.Any) -> None:
    a = make_backup(tmp_path, "20261127_070000", series="operator_demo")
    b = make_backup(tmp_path, "20261127_070001", series="analytics")
    for path in (a, b):
        offsite.upload(remote, offsite.Options(), None, path, False, False)
    fetched = offsite.fetch(remote, str(tmp_path / "fresh"), "postgresql", "latest", None)
    assert sorted(i["series"] for i in fetched["backups"]) == ["analytics", "operator_demo"]
    assert os.path.islink(str(tmp_path / "fresh" / "postgresql" / "latest_analytics.sql.gz"))
    only = offsite.fetch(remote, str(tmp_path / "fresh2"), "postgresql", "latest", None, series=["analytics"])
    assert [i["series"] for i in only["backups"]] == ["analytics"]


def test_bad_names_are_refused(remote: offsite.Remote, tmp_path: t.Any) -> None:
    with pytest.raises(ConfigError, match="without directories"):
        offsite.fetch(remote, str(tmp_path), "postgresql", "../../etc/passwd", None)
    with pytest.raises(ConfigError, match="not a postgresql backup name"):
        offsite.fetch(remote, str(tmp_path), "postgresql", "notes.txt", None)
    with pytest.raises(ConfigError, match="no postgresql copy|no good postgresql copy|there is no"):
        offsite.fetch(remote, str(tmp_path), "postgresql", "latest", None)


def test_endpoint_down_is_one_clear_sentence(tmp_path: t.Any) -> None:
    conn = s3.Connection("bkt-down", endpoint_url="http://127.0.0.1:%d" % free_port(), region="us-east-1",
                         access_key="testing", secret_key="testing-secret-value", addressing_style="path", max_attempts=1)
    path = make_backup(tmp_path, "20261127_080000")
    with pytest.raises(StageError, match="cannot reach") as info:
        offsite.upload(offsite.Remote(conn), offsite.Options(), None, path, False, False)
    assert "testing-secret-value" not in info.value.msg
    assert sha(path) == _manifest.read(path)["artifact"]["sha256"]
