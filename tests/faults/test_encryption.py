# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Encryption at rest (backup_local_encryption) on a real PostgreSQL 15 and a real redis-server:
no plaintext on disk, verify without and with the key, a wrong key refused before any change,
restores that bring back the rows and the keys (value and TTL), mixed trees, and the key never
on a command line or in a result."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import typing as t
import zlib

import pytest

from tests.faults.conftest import REDIS_PASSWORD, Postgres, Redis
from tests.faults.harness import ArgvWatch, run
from tests.throwaway_postgres import free_port

KEY = "faults-at-rest-key-" + "Zq8v2LmR4tYp6WnX0bCs3dFh"
WRONG = "faults-wrong-key-00000-" + "Zq8v2LmR4tYp6WnX0bCs3dFh"
MAGIC = b"cclite.backup/aead-v1\n"
SECRET_ROW = "zebra-quartz-secret-row-7f3a"
SECRET_VALUE = "glacier-violet-secret-value-91c2"
DIGEST = "SELECT md5(string_agg(md5(t::text), '' ORDER BY id)) || ':' || count(*) FROM items t"


def key_id(secret: str) -> str:
    import hmac  # pylint: disable=import-outside-toplevel

    return hmac.new(secret.encode(), b"cclite.backup key id", hashlib.sha256).digest()[:8].hex()


def stored(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def manifest_of(path: str) -> dict[str, t.Any]:
    with open(path + ".manifest.json", encoding="utf-8") as handle:
        return json.load(handle)


def plaintext_of(path: str, secret: str = KEY) -> bytes:
    """What the collection's reader makes of the file with the key (the one place that decrypts)."""
    from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto  # pylint: disable=import-outside-toplevel
    from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader  # pylint: disable=import-outside-toplevel

    return b"".join(ArtifactReader(path, key=_crypto.Key(secret.encode())).chunks())


def not_readable_without_the_key(path: str, *secrets: str) -> None:
    data = stored(path)
    assert data.startswith(MAGIC), data[:40]
    for secret in secrets:
        assert secret.encode() not in data
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(data)


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encapp(postgres: Postgres) -> t.Iterator[Postgres]:
    postgres.psql("DROP DATABASE IF EXISTS encapp", database="postgres")
    postgres.psql("CREATE DATABASE encapp", database="postgres")
    postgres.psql(
        "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL);"
        "INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 20000) g;"
        "INSERT INTO items VALUES (424243, '%s');" % SECRET_ROW,
        database="encapp",
    )
    yield postgres
    postgres.psql("DROP DATABASE IF EXISTS encapp", database="postgres")


def pg_args(postgres: Postgres, root: str, encrypt: bool = True, key: str = KEY, **extra: t.Any) -> dict[str, t.Any]:
    return postgres.args(root, database="encapp", encrypt=encrypt, encryption_key=key, compression_level=1, **extra)


def test_postgresql_encrypted_backup_verify_and_restore(encapp: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    plain = run("postgresql_backup", pg_args(encapp, root, encrypt=False, key=""))  # made before encryption was on
    assert not plain.failed, plain.text
    time.sleep(1.1)  # a second apart: backups are named by the second
    watch = ArgvWatch([KEY])
    watch.start()
    try:
        made = run("postgresql_backup", pg_args(encapp, root))
    finally:
        watch.stop()
    assert not made.failed, made.text
    assert watch.hits == [] and KEY not in made.text
    path = made.data["artifact"]["path"]
    assert made.data["artifact"]["encrypted"] is True and not plain.data["artifact"]["encrypted"]

    # on disk: no plaintext, not even a gzip stream; the manifest vouches for these very bytes
    not_readable_without_the_key(path, SECRET_ROW, "COPY public.items")
    manifest = manifest_of(path)
    assert manifest["artifact"]["sha256"] == hashlib.sha256(stored(path)).hexdigest()
    assert manifest["artifact"]["encryption"]["algorithm"] == "cclite-aead-v1"
    assert manifest["artifact"]["encryption"]["key_id"] == key_id(KEY)
    assert KEY not in json.dumps(manifest)
    assert SECRET_ROW.encode() in plaintext_of(path)  # the row is in the backup, only encrypted
    assert SECRET_ROW.encode() in gzip.decompress(stored(plain.data["artifact"]["path"]))

    info = dict(encapp.args(root, database="encapp"), min_size_bytes=100)
    quick = run("postgresql_backup_info", dict(info, verify="quick"))
    assert not quick.failed and quick.data["healthy"], quick.text  # no key needed
    keyless = run("postgresql_backup_info", dict(info, verify="full"))
    assert not keyless.data["healthy"], keyless.text
    assert keyless.data["backups"][0]["verification"]["checks"].get("key") == "failed"
    assert any("no key is configured: set backup_s3_encryption_key" in p for p in keyless.data["problems"]), keyless.data["problems"]
    deep = run("postgresql_backup_info", dict(info, verify="deep", encryption_key=KEY))
    assert not deep.failed and deep.data["healthy"], deep.text
    assert [b["encrypted"] for b in deep.data["backups"]] == [True, False]
    assert deep.data["backups"][0]["verification"]["checks"]["deep"] == "ok"  # restored into a scratch database

    before = encapp.psql(DIGEST, database="encapp")
    encapp.psql("DELETE FROM items WHERE id % 2 = 0; UPDATE items SET body = 'changed' WHERE id = 424243;", database="encapp")
    restore = dict(encapp.args(root, database="encapp"), confirm=True, name="latest", keep_previous=False)

    wrong = run("postgresql_restore", dict(restore, encrypt=True, encryption_key=WRONG))
    assert wrong.failed and "wrong key" in wrong.data["msg"] and "nothing was changed" in wrong.data["msg"], wrong.text
    missing = run("postgresql_restore", restore)
    assert missing.failed and "no key is configured: set backup_s3_encryption_key" in missing.data["msg"], missing.text
    assert "passed over" not in missing.text  # never the older plaintext backup instead
    assert encapp.psql("SELECT count(*) FROM items", database="encapp") == "10001"

    restored = run("postgresql_restore", dict(restore, encrypt=True, encryption_key=KEY, safety_backup=True))  # the dump on request
    assert not restored.failed, restored.text
    assert restored.data["restored_from"]["name"] == os.path.basename(path)
    assert encapp.psql(DIGEST, database="encapp") == before
    assert encapp.psql("SELECT count(*) FROM items", database="encapp") == "20001"
    assert encapp.psql("SELECT body FROM items WHERE id = 424243", database="encapp") == SECRET_ROW
    safety = restored.data["safety_backup"]["path"]  # the replaced data, encrypted as well
    not_readable_without_the_key(safety, "COPY public.items")
    assert b"changed" in plaintext_of(safety)

    # the plaintext backup of a mixed tree still restores with encryption on
    older = run("postgresql_restore", dict(restore, name=os.path.basename(plain.data["artifact"]["path"]), encrypt=True,
                                           encryption_key=KEY, safety_backup=False))
    assert not older.failed, older.text
    assert encapp.psql(DIGEST, database="encapp") == before


def test_postgresql_directory_format_with_encryption_is_refused(encapp: Postgres, tmp_path: t.Any) -> None:
    refused = run("postgresql_backup", pg_args(encapp, str(tmp_path), format="directory", jobs=2))
    assert refused.failed, refused.text
    assert "backup_local_encryption" in refused.data["msg"] and "postgresql_backup_format" in refused.data["msg"], refused.data["msg"]
    assert not os.path.exists(os.path.join(str(tmp_path), "postgresql")) or not [
        n for n in os.listdir(os.path.join(str(tmp_path), "postgresql")) if n.startswith("postgres_backup_")]


# --- Redis ------------------------------------------------------------------------------------------


class OwnRedis(Redis):
    """A redis-server of this module's own (the suite's counts its keys: it must not change);
    its client and module arguments are the suite's."""

    def __init__(self) -> None:  # pylint: disable=super-init-not-called  # its own port and directory
        self.keys = 0
        self.directory = tempfile.mkdtemp(prefix="cclite-faults-enc-redis-", dir="/var/tmp")
        self.port = free_port()
        conf = os.path.join(self.directory, "redis.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write("port %d\nbind 127.0.0.1\ndir %s\ndbfilename dump.rdb\nrequirepass %s\nsave \"\"\nappendonly no\n"
                         "daemonize no\nenable-debug-command local\n" % (self.port, self.directory, REDIS_PASSWORD))
        os.chmod(conf, 0o600)
        self.proc = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _attempt in range(100):
            try:
                if self.cli("PING") == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def own_redis() -> t.Iterator[OwnRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = OwnRedis()
    try:
        server.cli("DEBUG", "POPULATE", "5000", "key", "64")
        server.cli("SET", "enc:secret", SECRET_VALUE, "EX", "3600")
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("method", ["rdb", "logical"])
def test_redis_encrypted_backup_verify_and_restore(own_redis: OwnRedis, tmp_path: t.Any, method: str) -> None:
    root = str(tmp_path)
    watch = ArgvWatch([KEY])
    watch.start()
    try:
        made = run("redis_backup", own_redis.args(root, method=method, encrypt=True, encryption_key=KEY, compression_level=1))
    finally:
        watch.stop()
    assert not made.failed, made.text
    assert watch.hits == [] and KEY not in made.text
    path = made.data["artifact"]["path"]
    not_readable_without_the_key(path, SECRET_VALUE, "enc:secret")
    assert SECRET_VALUE.encode() in plaintext_of(path)
    manifest = manifest_of(path)
    assert manifest["artifact"]["encryption"]["key_id"] == key_id(KEY)
    assert manifest["artifact"]["sha256"] == hashlib.sha256(stored(path)).hexdigest()
    assert manifest["source"]["keys"] == 5001, manifest["source"]

    info = own_redis.args(root, method=method, min_size_bytes=100)
    assert run("redis_backup_info", dict(info, verify="quick")).data["healthy"]
    keyless = run("redis_backup_info", dict(info, verify="full"))
    assert not keyless.data["healthy"] and keyless.data["backups"][0]["verification"]["checks"].get("key") == "failed", keyless.text
    full = run("redis_backup_info", dict(info, verify="full", encryption_key=KEY))
    assert full.data["healthy"], full.text
    assert full.data["backups"][0]["verification"]["checks"]["content"] == "ok"

    if method == "rdb":
        return  # an RDB restore in host mode restarts the server through its service manager: not here
    own_redis.cli("SET", "enc:secret", "overwritten")
    own_redis.cli("DEL", "key:1", "key:2")
    restore = own_redis.args(root, method="logical", confirm=True, name="latest")
    wrong = run("redis_restore", dict(restore, encryption_key=WRONG))
    assert wrong.failed and "wrong key" in wrong.data["msg"], wrong.text
    assert own_redis.cli("GET", "enc:secret") == "overwritten"
    restored = run("redis_restore", dict(restore, encrypt=True, encryption_key=KEY))
    assert not restored.failed, restored.text
    assert own_redis.cli("GET", "enc:secret") == SECRET_VALUE
    assert 3000 < int(own_redis.cli("TTL", "enc:secret")) <= 3600
    assert own_redis.cli("DBSIZE") == "5001"
    assert own_redis.cli("EXISTS", "key:1") == "1"
    safety = restored.data["safety_backup"]["path"]
    not_readable_without_the_key(safety, "overwritten")
    assert b"overwritten" in plaintext_of(safety)
