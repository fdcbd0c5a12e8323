# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Qdrant pieces that need no Qdrant: the bundle's tar check, the version rule, the multipart
body, and the REST client's errors (against a stand-in HTTP server: the HTTP boundary)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.qdrant_fake import FakeQdrant, collection_snapshot

API_KEY = "qdrant-Key-that-must-not-leak-42"


# -- bundles ---------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def bundle(
    snapshots: dict[str, bytes],
    fmt: int = tarfile.PAX_FORMAT,
    manifest: dict[str, t.Any] | None = None,
    extra: dict[str, bytes] | None = None,
    skip: t.Collection[str] = (),
) -> tuple[bytes, dict[str, t.Any]]:
    """A bundle as the producer writes it: snapshots, then manifest.json."""
    entries = [
        {"name": name, "member": qd.member_name(name), "snapshot": "%s-1.snapshot" % name, "points_count": 3,
         "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "aliases": []}
        for name, data in snapshots.items()
    ]
    manifest = manifest or {"schema": qd.BUNDLE_SCHEMA, "version": 1, "kind": "collections",
                            "server": {"version": "1.19.2"}, "collections": entries, "full_snapshot": None}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=fmt) as tar:
        for entry in entries:
            if entry["name"] not in skip:
                _add(tar, entry["member"], snapshots[entry["name"]])
        for name, data in (extra or {}).items():
            _add(tar, name, data)
        _add(tar, qd.MANIFEST_MEMBER, json.dumps(manifest).encode())
    return buffer.getvalue(), manifest


def check(data: bytes, chunk: int = 7919) -> qd.BundleCheck:
    checker = qd.BundleCheck()
    for start in range(0, len(data), chunk):
        checker.feed(data[start:start + chunk])
    return checker


SNAPS = {"docs": collection_snapshot("docs", 3), "faq": collection_snapshot("faq", 9)}


@pytest.mark.parametrize("chunk", [1, 511, 512, 513, 7919, 1 << 20])
def test_a_good_bundle_passes_whatever_the_chunking(chunk):
    data, manifest = bundle(SNAPS)
    checker = check(data, chunk)
    assert checker.result() is None
    assert checker.manifest == manifest
    assert checker.members["collections/docs.snapshot"].sha256 == hashlib.sha256(SNAPS["docs"]).hexdigest()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_and_unicode_collection_names_in_every_tar_format(fmt):
    name = "Wissensbasis für Kunden ☃ " + "x" * (40 if fmt == tarfile.USTAR_FORMAT else 180)
    data, _manifest = bundle({name: SNAPS["docs"]}, fmt=fmt)
    checker = check(data, 333)
    assert checker.result() is None
    assert qd.member_name(name) in checker.members


def test_a_truncated_bundle_names_the_member_it_ends_in():
    data, _manifest = bundle(SNAPS)
    problem = check(data[: len(data) // 3]).result()
    assert "truncated" in problem and "collections/docs.snapshot" in problem


def test_a_bundle_cut_between_members_has_no_end_marker():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, "a", b"x" * 100)
    checker = check(buffer.getvalue()[:1024])  # header and data block of "a", nothing after
    assert checker.tar.problem() == "the bundle's tar stream has no end-of-archive marker: the bundle is truncated"


def test_a_changed_snapshot_fails_its_sha256():
    data, manifest = bundle(SNAPS)
    manifest["collections"][1]["sha256"] = "0" * 64
    data, _manifest = bundle(SNAPS, manifest=manifest)
    problem = check(data).result()
    assert "snapshot collections/faq.snapshot has sha256" in problem and "the server's checksum was " + "0" * 64 in problem
    assert "docs" not in problem


def test_a_missing_snapshot_and_an_unknown_member_are_reported():
    data, _manifest = bundle(SNAPS, skip=["faq"], extra={"collections/other.snapshot": b"x"})
    problem = check(data).result()
    assert "snapshot collections/faq.snapshot is missing" in problem
    assert "members its manifest does not list: collections/other.snapshot" in problem


def test_a_bundle_without_manifest_or_with_a_foreign_one():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        _add(tar, "collections/docs.snapshot", SNAPS["docs"])
    assert "no manifest.json" in check(buffer.getvalue()).result()
    data, _manifest = bundle(SNAPS, manifest={"schema": "something/else", "collections": []})
    assert "not a cclite.backup Qdrant bundle manifest" in check(data).result()


def test_garbage_is_a_bad_header():
    assert "bad tar header" in check(b"\x01" * 4096).result()


def test_data_after_the_end_marker():
    data, _manifest = bundle(SNAPS)
    assert "data after its end-of-archive marker" in check(data + b"\x01" + b"\0" * 511).result()


def full_bundle(inner_change: bytes = b"") -> tuple[bytes, dict[str, t.Any]]:
    full = io.BytesIO()
    with tarfile.open(fileobj=full, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in SNAPS.items():
            _add(tar, "%s-1-2026.snapshot" % name, data + inner_change)
        _add(tar, "config.json", b"{}")
    full_data = full.getvalue()
    entries = [{"name": n, "member": "%s-1-2026.snapshot" % n, "container": "full/full-snapshot-2026.snapshot",
                "sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "points_count": 3} for n, d in SNAPS.items()]
    manifest = {"schema": qd.BUNDLE_SCHEMA, "version": 1, "kind": "full", "server": {"version": "1.19.2"},
                "collections": entries, "full_snapshot": {"name": "full-snapshot-2026.snapshot", "member": "full/full-snapshot-2026.snapshot",
                                                          "sha256": hashlib.sha256(full_data).hexdigest(), "size": len(full_data)}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        _add(tar, "full/full-snapshot-2026.snapshot", full_data)
        _add(tar, qd.MANIFEST_MEMBER, json.dumps(manifest).encode())
    return buffer.getvalue(), manifest


def test_snapshots_inside_a_full_snapshot_are_checked_too():
    data, _manifest = full_bundle()
    assert check(data, 1000).result() is None
    bad, manifest = full_bundle(inner_change=b"!")
    manifest["full_snapshot"]["sha256"] = hashlib.sha256(b"").hexdigest()
    problem = check(bad).result()
    assert "docs-1-2026.snapshot in full/full-snapshot-2026.snapshot has" in problem


def test_read_bundle_streams_the_wanted_snapshots_only():
    data, manifest = bundle(SNAPS)
    seen = {}

    def handle(entry, stream, size):
        seen[entry["name"]] = (size, hashlib.sha256(stream.read()).hexdigest())

    qd.read_bundle([data[i:i + 1000] for i in range(0, len(data), 1000)], manifest, {"faq"}, handle)
    assert seen == {"faq": (len(SNAPS["faq"]), hashlib.sha256(SNAPS["faq"]).hexdigest())}

    data, manifest = full_bundle()
    seen.clear()
    qd.read_bundle([data], manifest, {"docs", "faq"}, handle)
    assert seen["docs"] == (len(SNAPS["docs"]), hashlib.sha256(SNAPS["docs"]).hexdigest()) and len(seen) == 2


def test_chunk_stream_reads_across_chunks():
    stream = qd.ChunkStream([b"ab", b"", b"cde", b"f"])
    assert stream.read(3) == b"abc" and stream.read(0) == b"" and stream.read() == b"def" and stream.read(5) == b""


def test_count_rule_accepts_the_range_seen_during_the_snapshot():
    assert qd.count_problem({"name": "c", "points_count": 10}, 10) is None
    assert qd.count_problem({"name": "c", "points_count": 10}, 9) == "collection c has 9 points, the backup recorded 10"
    assert qd.count_problem({"name": "c", "points_count": 10, "points_count_after": 12}, 11) is None
    assert "recorded 10 to 12" in qd.count_problem({"name": "c", "points_count": 10, "points_count_after": 12}, 13)
    assert qd.count_problem({"name": "c"}, 5) is None


# -- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backup,server", [("1.19.2", "1.19.2"), ("1.19.2", "1.19.5"), ("1.19.2", "1.20.0"), ("v1.19.0", "1.20.3-dev")])
def test_same_or_next_minor_version_is_allowed(backup, server):
    assert qd.version_problem(backup, server) is None


def test_an_older_server_is_refused():
    problem = qd.version_problem("1.19.2", "1.19.1")
    assert "older than 1.19.2" in problem and "Restore onto Qdrant 1.19 (1.19.2 or later) or 1.20" in problem
    assert "older" in qd.version_problem("1.19.2", "1.18.9")


@pytest.mark.parametrize("server", ["1.21.0", "2.19.2", "2.0.0"])
def test_more_than_one_minor_newer_is_refused(server):
    problem = qd.version_problem("1.19.2", server)
    assert "more than one minor version newer" in problem and "Restore onto Qdrant 1.19 or 1.20" in problem


def test_an_unreadable_version():
    with pytest.raises(ConfigError, match="cannot read the Qdrant version"):
        qd.version_problem("dev", "1.19.0")


# -- multipart ----------------------------------------------------------------------------------


def test_multipart_body_streams_head_file_tail_with_the_right_length():
    payload = bytes(range(256)) * 40
    body = qd.MultipartBody("snapshot", 'odd"name\r\n.snapshot', io.BytesIO(payload), len(payload), boundary="B0UND")
    parts = []
    while True:
        block = body.read(1000)
        if not block:
            break
        assert len(block) <= 1000
        parts.append(block)
    data = b"".join(parts)
    head = b'--B0UND\r\nContent-Disposition: form-data; name="snapshot"; filename="odd_name__.snapshot"\r\n' \
           b"Content-Type: application/octet-stream\r\n\r\n"
    assert data == head + payload + b"\r\n--B0UND--\r\n"
    assert body.length == len(data)
    assert body.content_type == "multipart/form-data; boundary=B0UND"


def test_multipart_body_reads_everything_at_once_and_fails_on_a_short_stream():
    body = qd.MultipartBody("snapshot", "s", io.BytesIO(b"abc"), 3, boundary="b")
    assert body.read() == body.read(0) + b'--b\r\nContent-Disposition: form-data; name="snapshot"; filename="s"\r\n' \
        b"Content-Type: application/octet-stream\r\n\r\nabc\r\n--b--\r\n"
    short = qd.MultipartBody("snapshot", "s", io.BytesIO(b"ab"), 3)
    with pytest.raises(StageError, match="ended after 2 of 3 bytes"):
        short.read()


# -- the REST client at the HTTP boundary --------------------------------------------------------


@pytest.fixture
def server():
    fake = FakeQdrant(api_key=API_KEY)
    yield fake
    fake.stop()


def test_the_key_goes_in_the_api_key_header_only(server):
    server.add("docs", 3)
    client = qd.Client(qd.Connection(url=server.url + "/", api_key=API_KEY))
    assert client.collections() == ["docs"]
    method, path, headers = server.requests[-1]
    assert (method, path, headers["api-key"]) == ("GET", "/collections", API_KEY)
    assert headers["user-agent"] == "cclite.backup" and "authorization" not in headers


def test_a_wrong_key_is_named_and_redacted(server):
    wrong = "wrong-" + API_KEY
    client = qd.Client(qd.Connection(url=server.url, api_key=wrong))
    with pytest.raises(StageError) as caught:
        client.collections()
    assert "answered 401: Invalid API key or JWT: ********" in caught.value.msg
    assert "set api_key / qdrant_backup_api_key" in caught.value.msg
    assert wrong not in caught.value.msg and API_KEY not in caught.value.msg
    assert caught.value.status == 401


def test_a_missing_key_says_the_server_wants_one(server):
    with pytest.raises(StageError, match="the server requires an API key"):
        qd.Client(qd.Connection(url=server.url)).collections()


def test_a_403_names_the_read_only_key(server):
    message = qd.http_error_message(qd.Connection(api_key=API_KEY), "POST", "/snapshots", 403, b"Write access denied " + API_KEY.encode())
    assert "read-only" in message and API_KEY not in message and "Write access denied ********" in message


def test_qdrant_error_envelopes_are_unwrapped(server):
    with pytest.raises(StageError, match=r"GET /collections/nope answered 404: Not found: Collection `nope` doesn't exist!$"):
        qd.Client(qd.Connection(url=server.url, api_key=API_KEY)).collection("nope")


def test_connection_refused_names_the_fix():
    fake = FakeQdrant()
    url = fake.url
    fake.stop()
    with pytest.raises(StageError) as caught:
        qd.Client(qd.Connection(url=url, api_key=API_KEY)).server()
    assert "connection refused" in caught.value.msg and "qdrant_backup_url" in caught.value.msg and "6337" in caught.value.msg
    assert API_KEY not in caught.value.msg


def test_https_against_a_plain_http_server_says_so(server):
    with pytest.raises(StageError, match="does the server speak https"):
        qd.Client(qd.Connection(url=server.url.replace("http:", "https:"), validate_certs=False)).server()


@pytest.fixture
def tls_server(tmp_path):
    """A stand-in served over TLS with a self-signed certificate made by the openssl program."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    fake = FakeQdrant(tls=(cert, key))
    fake.add("docs", 3)
    yield fake, cert
    fake.stop()


def test_tls_needs_the_ca_bundle_or_says_how_to_give_it(tls_server):
    server, cert = tls_server
    with pytest.raises(StageError) as caught:
        qd.Client(qd.Connection(url=server.url)).collections()
    assert "TLS certificate of Qdrant at https://127.0.0.1" in caught.value.msg and "set ca_cert (qdrant_backup_ca_cert)" in caught.value.msg
    assert qd.Client(qd.Connection(url=server.url, ca_cert=cert)).collections() == ["docs"]
    assert qd.Client(qd.Connection(url=server.url, validate_certs=False)).collections() == ["docs"]


def test_a_ca_bundle_that_is_not_one(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the CA bundle"):
        qd.Client(qd.Connection(url="https://127.0.0.1:1", ca_cert=str(bogus))).server()


@pytest.mark.parametrize("url", ["localhost:6337", "ftp://host", "http://user:pw@host:6337"])
def test_bad_urls_fail_first(url):
    with pytest.raises(ConfigError):
        qd.connection_from(dict(url=url, api_key="", ca_cert="", validate_certs=True, timeout=5, snapshot_timeout=5))


def test_a_missing_ca_bundle_fails_first(tmp_path):
    with pytest.raises(ConfigError, match="does not exist on the managed host"):
        qd.connection_from(dict(url="https://q:6333", api_key="", ca_cert=str(tmp_path / "ca.pem"), validate_certs=True,
                                timeout=5, snapshot_timeout=5))


def test_snapshot_with_wait_false_is_polled_until_it_has_its_checksum(server):
    server.add("docs", 3)
    server.snapshot_delay = 1.0
    client = qd.Client(qd.Connection(url=server.url, api_key=API_KEY), poll_interval=0.05)
    desc = client.create_snapshot("docs")
    assert desc["name"].startswith("docs-1-") and desc["checksum"] == hashlib.sha256(server.snapshots["docs"][desc["name"]]).hexdigest()
    assert ("POST", "/collections/docs/snapshots") in [(m, p) for m, p, _h in server.requests]
    assert sum(1 for m, p, _h in server.requests if (m, p) == ("GET", "/collections/docs/snapshots")) >= 2


def test_a_snapshot_that_never_comes_times_out(server):
    server.add("docs", 3)
    server.snapshot_delay = 3
    client = qd.Client(qd.Connection(url=server.url, api_key=API_KEY, snapshot_timeout=1), poll_interval=0.05)
    with pytest.raises(StageError, match="did not finish the snapshot of collection docs within 1 seconds"):
        client.create_snapshot("docs")


def test_download_checks_length_and_checksum(server, tmp_path):
    server.add("docs", 3)
    client = qd.Client(qd.Connection(url=server.url, api_key=API_KEY))
    desc = client.create_snapshot("docs")
    out = io.BytesIO()
    assert client.download("docs", desc, out) == (desc["size"], desc["checksum"])
    assert out.getvalue() == server.snapshots["docs"][desc["name"]]
    server.cut_after = 1000
    with pytest.raises(StageError, match="ended after 1000 of %d bytes: the connection was cut" % desc["size"]):
        client.download("docs", desc, io.BytesIO())
    server.cut_after = None
    with pytest.raises(StageError, match="but the server's checksum is 0+"):
        client.download("docs", dict(desc, checksum="0" * 64), io.BytesIO())


def test_upload_sends_priority_checksum_wait_and_a_streamed_multipart_body(server):
    data = collection_snapshot("docs", 7)
    client = qd.Client(qd.Connection(url=server.url, api_key=API_KEY))
    client.upload("docs", io.BytesIO(data), len(data), "docs-1-x.snapshot", hashlib.sha256(data).hexdigest())
    upload = server.uploads[-1]
    assert upload["query"] == {"priority": "snapshot", "checksum": hashlib.sha256(data).hexdigest(), "wait": "true"}
    assert upload["data"] == data and upload["filename"] == "docs-1-x.snapshot"
    assert server.collections["docs"] == 7
    headers = server.requests[-1][2]
    assert headers["content-type"].startswith("multipart/form-data; boundary=cclite-")
    assert API_KEY not in json.dumps(upload, default=str)
    with pytest.raises(StageError, match="answered 400: Checksum mismatch"):
        client.upload("docs", io.BytesIO(data), len(data), "x.snapshot", "0" * 64)


def test_points_in_snapshot_refuses_unsafe_members(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "0/../../etc/passwd", b"x")
    with pytest.raises(VerifyError, match="unsafe member name"):
        qd.points_in_snapshot(object(), io.BytesIO(buffer.getvalue()), str(tmp_path))
