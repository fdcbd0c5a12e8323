# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Encryption of local backups at rest: the writer's stage, the reader's one place that decrypts,
the manifest, verify, restore and retention over encrypted and mixed catalogs."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _module, _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Compression, write_artifact
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import inspect, is_good, make_backup, predict_backup
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules, check_data
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._client import DumpComplete
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_ops import VERSIONS, FakeProducer, old_backup, spec_for
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import FakeEngine, dump
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import backup as plaintext_backup
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import spec_for as restore_spec_for

KEY = _crypto.Key(b"at-rest-unit-key-0123456789-abcdefghijkl")
OTHER = _crypto.Key(b"another-at-rest-key-0123456789-abcdefghi")
SECRET_ROW = "4242\tthe-row-nobody-may-read-on-disk\n"


def secret_dump(rows: int = 200) -> str:
    """A dump with random rows (gzip cannot shrink them much) and one row that must not be on disk."""
    body = "".join("%d\t%s\n" % (i, base64.b64encode(os.urandom(96)).decode()) for i in range(rows))
    return (
        "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE public.users (id integer, name text);\n"
        "COPY public.users (id, name) FROM stdin;\n%s%s\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n" % (body, SECRET_ROW)
    )


@pytest.fixture(autouse=True)
def no_key() -> t.Iterator[None]:
    """Each test starts without a configured key and leaves none behind (it is process-wide)."""
    _crypto.configure(None)
    yield
    _crypto.configure(None)


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(str(tmp_path / "backups"), POSTGRESQL)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# --- the stream stage ---------------------------------------------------------------------------


def test_the_writer_encrypts_as_it_writes_and_the_reader_decrypts(tmp_path):
    sql = secret_dump(30000)  # ~4 MB of text, ~3 MB compressed: several encryption chunks
    dest = str(tmp_path / "out.sql.gz")
    written = write_artifact(Command(("cat", _file(tmp_path, sql)), stage="pg_dump"), dest, Compression("gzip", 1, 1),
                             check=DumpComplete(), seal=KEY)
    stored = read_bytes(dest)
    assert stored.startswith(_crypto.MAGIC) and not stored.startswith(b"\x1f\x8b")
    assert SECRET_ROW.strip().split("\t")[1].encode() not in stored
    assert written.size == len(stored) and written.sha256 == hashlib.sha256(stored).hexdigest()
    # the check in flight decrypted and decompressed the very bytes written, to the end
    assert written.checked is not None and written.checked.stream is None and written.checked.content is None
    assert written.checked.content_size == len(sql.encode())
    reader = ArtifactReader(dest, key=KEY)
    assert b"".join(reader.chunks()).decode() == sql
    assert reader.sha256 == written.sha256 and reader.size == len(stored)
    _crypto.configure(KEY)  # what a module does: the reader then needs no key handed to it
    assert b"".join(ArtifactReader(dest).chunks()).decode() == sql


def _file(tmp_path: t.Any, text: str) -> str:
    path = tmp_path / "dump.sql"
    path.write_text(text)
    return str(path)


def test_an_empty_pipeline_is_refused_even_though_the_header_is_not_empty(tmp_path):
    dest = str(tmp_path / "out.rdb")
    with pytest.raises(StageError, match="produced no data"):
        write_artifact(Command(("true",), stage="redis-cli"), dest, Compression("none", 0, 1), seal=KEY)
    assert os.listdir(tmp_path) == []


def test_a_wrong_key_and_no_key_fail_before_any_byte_and_name_the_settings(tmp_path):
    dest = str(tmp_path / "out.sql.gz")
    write_artifact(Command(("printf", "%s", dump(3)), stage="pg_dump"), dest, Compression("gzip", 1, 1), seal=KEY)
    with pytest.raises(_crypto.WrongKey, match="no key is configured: set backup_s3_encryption_key"):
        next(ArtifactReader(dest).chunks())
    with pytest.raises(_crypto.WrongKey, match="encrypted with key id %s but the configured key has id %s: wrong key" % (KEY.key_id, OTHER.key_id)):
        next(ArtifactReader(dest, key=OTHER).chunks())


@pytest.mark.parametrize("cut", ["last chunk", "chunk boundary", "inside the header"])
def test_truncated_ciphertext_is_detected(tmp_path, cut):
    dest = str(tmp_path / "out.sql.gz")
    sql = secret_dump(30000)
    write_artifact(Command(("cat", _file(tmp_path, sql)), stage="pg_dump"), dest, Compression("gzip", 1, 1), seal=KEY)
    stored = read_bytes(dest)
    sealed = _crypto.DEFAULT_CHUNK + _crypto.TAG
    assert len(stored) > _crypto.HEADER + 2 * sealed  # several chunks, so a cut at a boundary is possible
    length = {"last chunk": len(stored) - 10, "chunk boundary": _crypto.HEADER + sealed, "inside the header": 40}[cut]
    with open(dest, "wb") as handle:
        handle.write(stored[:length])
    with pytest.raises(VerifyError, match="truncated"):
        b"".join(ArtifactReader(dest, key=KEY).chunks())


def test_an_altered_byte_fails_authentication(tmp_path):
    dest = str(tmp_path / "out.sql.gz")
    write_artifact(Command(("printf", "%s", dump(50)), stage="pg_dump"), dest, Compression("gzip", 1, 1), seal=KEY)
    stored = bytearray(read_bytes(dest))
    stored[_crypto.HEADER + 5] ^= 0x40
    with open(dest, "wb") as handle:
        handle.write(bytes(stored))
    with pytest.raises(VerifyError, match="altered"):
        b"".join(ArtifactReader(dest, key=KEY).chunks())


# --- the backup flow, the manifest and verify ---------------------------------------------------


def test_an_encrypted_backup_and_its_manifest(catalog):
    out = make_backup(spec_for(catalog, encryption=KEY), FakeProducer(sql=secret_dump()), VERSIONS)
    path = out["artifact"]["path"]
    stored = read_bytes(path)
    assert stored.startswith(_crypto.MAGIC) and b"the-row-nobody-may-read-on-disk" not in stored
    assert out["artifact"]["encrypted"] is True
    with open(out["manifest"], encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["artifact"]["sha256"] == hashlib.sha256(stored).hexdigest() and manifest["artifact"]["size"] == len(stored)
    assert manifest["artifact"]["encryption"] == {"algorithm": "cclite-aead-v1", "cipher": "AES-256-GCM", "kdf": "HKDF-SHA256",
                                                  "chunk_size": _crypto.DEFAULT_CHUNK, "key_id": KEY.key_id}
    assert manifest["encryption"] is None  # the layer an off-site copy adds: none here
    assert KEY._secret.decode() not in json.dumps(manifest)  # pylint: disable=protected-access
    assert catalog.journal.records()[os.path.basename(path)]["sha256"] == manifest["artifact"]["sha256"]
    entry = catalog.entries()[0]
    assert entry.encryption["key_id"] == KEY.key_id and entry.as_dict()["encrypted"] is True


def test_quick_checks_need_no_key_the_full_read_does(catalog):
    make_backup(spec_for(catalog, encryption=KEY), FakeProducer(sql=secret_dump()), VERSIONS)
    rules = Rules(min_size_bytes=100)
    quick = inspect(catalog, rules, "quick", DumpComplete)
    assert quick["healthy"] and quick["backups"][0]["verification"]["checks"]["manifest"] == "ok"
    full = inspect(catalog, rules, "full", DumpComplete)
    assert not full["healthy"]
    assert full["backups"][0]["verification"]["checks"] == {"age": "ok", "size": "ok", "manifest": "ok", "key": "failed"}
    assert "no key is configured: set backup_s3_encryption_key" in full["problems"][0]
    _crypto.configure(KEY)
    full = inspect(catalog, rules, "full", DumpComplete)
    assert full["healthy"], full["problems"]
    assert full["backups"][0]["verification"]["checks"] == {
        "age": "ok", "size": "ok", "manifest": "ok", "stream": "ok", "sha256": "ok", "content": "ok"}


def test_a_mixed_catalog_verifies_with_the_key(catalog):
    plain = old_backup(catalog, 1, sql=secret_dump())
    _crypto.configure(KEY)
    make_backup(spec_for(catalog, encryption=KEY), FakeProducer(sql=secret_dump()), VERSIONS)
    full = inspect(catalog, Rules(min_size_bytes=100), "full", DumpComplete)
    assert full["healthy"], full["problems"]
    assert [b["encrypted"] for b in full["backups"]] == [True, False] and full["backups"][1]["path"] == plain
    assert [b["verification"]["state"] for b in full["backups"]] == ["good", "good"]


def test_a_truncated_encrypted_backup_is_bad_on_every_count(catalog):
    _crypto.configure(KEY)
    out = make_backup(spec_for(catalog, encryption=KEY), FakeProducer(sql=secret_dump()), VERSIONS)
    path = out["artifact"]["path"]
    stored = read_bytes(path)
    with open(path, "wb") as handle:
        handle.write(stored[:-20])
    entry = catalog.entries()[0]
    report = Report(entry.name, entry.path)
    check_data(report, entry, DumpComplete())
    assert report.checks["stream"] == "failed" and "truncated" in report.problems[0]
    assert not is_good(entry, DumpComplete)


def test_a_directory_backup_with_encryption_is_refused_naming_both_settings(catalog):
    spec = spec_for(catalog, encryption=KEY, fmt="directory")
    with pytest.raises(ConfigError, match="backup_local_encryption is on and postgresql_backup_format is directory"):
        predict_backup(spec)
    with pytest.raises(ConfigError, match="set postgresql_backup_format: plain, or turn backup_local_encryption off"):
        make_backup(spec, FakeProducer(), VERSIONS)
    assert not os.path.exists(catalog.directory)


def test_retention_keeps_judging_encrypted_backups_good(catalog):
    _crypto.configure(KEY)
    old_backup(catalog, 40, sql=secret_dump())
    kept = make_backup(spec_for(catalog, encryption=KEY), FakeProducer(sql=secret_dump()), VERSIONS)
    out = make_backup(spec_for(catalog, encryption=KEY, retention_days=30), FakeProducer(sql=secret_dump()), VERSIONS)
    assert len(out["retention"]["deleted"]) == 1 and out["retention"]["deleted"][0].endswith(".sql.gz")
    assert [e.path for e in catalog.entries()] == [out["artifact"]["path"], kept["artifact"]["path"]]


# --- restore --------------------------------------------------------------------------------------


def encrypted_backup(catalog: Catalog, rows: int) -> str:
    producer = FakeProducer(sql=dump(rows), stats={"tables": {"public.users": rows}})
    return make_backup(spec_for(catalog, encryption=KEY), producer, VERSIONS)["artifact"]["name"]


def test_a_restore_decrypts_and_its_safety_backup_is_encrypted(catalog):
    _crypto.configure(KEY)
    name = encrypted_backup(catalog, 7)
    engine = FakeEngine(staged=False, keeps_previous=False)
    out = _restore.restore(restore_spec_for(catalog, encryption=KEY), engine, check_mode=False)
    assert out["restored_from"]["name"] == name and out["restored_from"]["encrypted"] and engine.live == {"public.users": 7}
    safety = out["safety_backup"]["path"]
    assert read_bytes(safety).startswith(_crypto.MAGIC)
    with open(safety + ".manifest.json", encoding="utf-8") as handle:
        assert json.load(handle)["artifact"]["encryption"]["key_id"] == KEY.key_id
    assert b"".join(ArtifactReader(safety).chunks()).decode() == dump(5)  # the replaced data, readable with the key


def test_a_restore_without_the_key_never_falls_back_to_an_older_backup(catalog):
    old_backup(catalog, 2, sql=dump(2))  # plaintext, older
    _crypto.configure(KEY)
    encrypted_backup(catalog, 7)
    _crypto.configure(None)
    engine = FakeEngine()
    with pytest.raises(VerifyError) as err:
        _restore.restore(restore_spec_for(catalog), engine, check_mode=False)
    assert "no key is configured: set backup_s3_encryption_key" in err.value.msg and "nothing was changed" in err.value.msg
    assert engine.live == {"public.users": 5} and "prepare" not in engine.calls
    _crypto.configure(OTHER)
    with pytest.raises(VerifyError, match="wrong key"):
        _restore.restore(restore_spec_for(catalog), FakeEngine(), check_mode=False)


def test_a_plaintext_backup_restores_with_encryption_on(catalog):
    older = plaintext_backup(catalog, 1, 4)
    _crypto.configure(KEY)
    engine = FakeEngine()
    out = _restore.restore(restore_spec_for(catalog, name=older.name, encryption=KEY), engine, check_mode=False)
    assert engine.live == {"public.users": 4} and not out["restored_from"]["encrypted"]
    assert gzip.decompress(read_bytes(older.path)).decode() == dump(4)


# --- the module options ---------------------------------------------------------------------------


def test_module_options_configure_the_key_and_refuse_encrypt_without_one(tmp_path):
    params = {"encrypt": True, "encryption_key": "", "encryption_key_file": ""}
    _module.configure_key(params)
    with pytest.raises(ConfigError, match="backup_local_encryption is on .* but no key is given: set backup_s3_encryption_key"):
        _module.encryption_from(params)
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY._secret.decode() + "\n")  # pylint: disable=protected-access
    _module.configure_key(dict(params, encryption_key_file=str(keyfile)))
    assert _crypto.configured().key_id == KEY.key_id and _module.encryption_from(params).key_id == KEY.key_id
    assert _module.encryption_from(dict(params, encrypt=False)) is None
    with pytest.raises(ConfigError, match="too short"):
        _module.configure_key(dict(params, encryption_key="short"))
    spec = _module.encryption_argument_spec()
    assert spec["encryption_key"]["no_log"] is True and spec["encrypt"]["default"] is False
