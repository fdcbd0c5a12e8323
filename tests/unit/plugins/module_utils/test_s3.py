# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Part sizes, checksum composition and the S3 connection settings."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.mark.parametrize(
    "size, expected",
    [
        (0, 8 * MiB),
        (1, 8 * MiB),
        (5 * GiB, 8 * MiB),  # 640 parts
        (70 * GiB, 8 * MiB),  # 8960 parts: still under 9000
        (80 * GiB, 10 * MiB),  # past 10,000 parts of the default 8 MiB
        (1024 * GiB, 117 * MiB),
        (5 * 1024 * GiB, 583 * MiB),
    ],
)
def test_part_size_follows_the_size(size: int, expected: int) -> None:
    part = s3.part_size_for(size)
    assert part == expected
    assert part % MiB == 0 and part >= 8 * MiB
    assert s3.part_count(size, part) <= 9000
    assert part >= size / 9000


def test_part_size_never_exceeds_the_limits() -> None:
    for size in (1, 10**9, 10**11, 10**12, 5 * 1024 * GiB):
        part = s3.part_size_for(size)
        assert s3.MIN_PART <= part <= s3.MAX_PART
        assert s3.part_count(size, part) <= s3.MAX_PARTS
    with pytest.raises(ConfigError, match="5 TiB"):
        s3.part_size_for(5 * 1024 * GiB + 1)


def test_forced_part_size() -> None:
    assert s3.part_size_for(12 * MiB, 5 * MiB) == 5 * MiB
    assert s3.part_count(12 * MiB, 5 * MiB) == 3
    assert s3.part_count(10 * MiB, 5 * MiB) == 2
    assert s3.part_count(0, 5 * MiB) == 1
    with pytest.raises(ConfigError, match="5 MiB to 5 GiB"):
        s3.part_size_for(12 * MiB, MiB)
    with pytest.raises(ConfigError, match="10,000 parts"):
        s3.part_size_for(100 * GiB, 5 * MiB)


def test_composite_sha256_is_the_hash_of_the_part_hashes() -> None:
    parts = [b"a" * 100, b"b" * 50]
    digests = [hashlib.sha256(p).digest() for p in parts]
    expected = base64.b64encode(hashlib.sha256(digests[0] + digests[1]).digest()).decode() + "-2"
    assert s3.composite_sha256(digests) == expected
    # one part: still composite, and not the plain sha256 of the data
    single = s3.composite_sha256([hashlib.sha256(b"abc").digest()])
    assert single.endswith("-1")
    assert single.split("-")[0] != base64.b64encode(hashlib.sha256(b"abc").digest()).decode()


def test_composite_checksum_matches_a_known_value() -> None:
    # Computed apart with openssl: (sha256(hello) || sha256(world)) | sha256 | base64
    digests = [hashlib.sha256(b"hello").digest(), hashlib.sha256(b"world").digest()]
    assert s3.composite_sha256(digests) == "cwXbmyq8zXBsJW2z2X5f9I1nfP5NOlkEr7faDjlQ4eI=-2"


def test_multipart_etag() -> None:
    md5s = [hashlib.md5(b"x" * 10).digest(), hashlib.md5(b"y").digest()]
    assert s3.multipart_etag(md5s) == hashlib.md5(md5s[0] + md5s[1]).hexdigest() + "-2"


def test_same_checksum_accepts_a_missing_part_suffix() -> None:
    assert s3.same_checksum("abc=-3", "abc=-3")
    assert s3.same_checksum("abc=", "abc=-3")  # GetObjectAttributes and some stores leave out -N
    assert not s3.same_checksum("abd=", "abc=-3")
    assert not s3.same_checksum("abc=-2", "abc=-3")
    assert not s3.same_checksum(None, "abc=-3")
    assert s3.same_checksum('"etag-2"', "etag-2")


def test_file_range_reads_only_its_window() -> None:
    handle = io.BytesIO(b"0123456789")
    window = s3.FileRange(handle, 3, 4)
    assert window.read() == b"3456"
    window.seek(0)
    assert window.read(2) == b"34"
    assert window.read(10) == b"56"
    assert window.read() == b""
    assert len(window) == 4


def test_connection_keys_and_redaction() -> None:
    conn = s3.Connection("bkt", prefix="/cc-lite/backups/", access_key="AKIAEXAMPLE", secret_key="s3cr3t/KEY+value")
    assert conn.key("postgresql", "a.sql.gz") == "cc-lite/backups/postgresql/a.sql.gz"
    assert conn.store_prefix("redis") == "cc-lite/backups/redis/"
    assert conn.url("qdrant") == "s3://bkt/cc-lite/backups/qdrant"
    assert "s3cr3t" not in conn.redact("bad signature for s3cr3t/KEY+value")
    assert "s3cr3t" not in repr(conn.describe())
    with pytest.raises(ConfigError, match="both"):
        s3.Connection("bkt", access_key="AKIA")
    with pytest.raises(ConfigError, match="backup_s3_bucket"):
        s3.Connection("")


def test_connection_from_params() -> None:
    params = {name: spec.get("default") for name, spec in s3.connection_argument_spec().items()}
    params.update(bucket="bkt", addressing_style="path", retries=0)
    conn = s3.connection_from(params)
    assert conn.addressing_style == "path" and conn.max_attempts == 1
    secret_options = {n for n, spec in s3.connection_argument_spec().items() if spec.get("no_log")}
    assert secret_options == {"access_key", "secret_key", "session_token", "encryption_key"}
