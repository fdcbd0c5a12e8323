# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The streaming encryption of off-site copies: round trips, sizes, wrong keys, tampering."""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError

SECRET = "k" * 16 + "0123456789abcdefXYZ="
OTHER = "o" * 16 + "0123456789abcdefXYZ="


def encrypt(data: bytes, key: _crypto.Key, chunk: int = 1024, pieces: int = 7) -> bytes:
    enc = _crypto.Encryptor(key, chunk)
    out = bytearray()
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        out += enc.update(data[i:i + step])
    out += enc.finish()
    return bytes(out)


def decrypt(blob: bytes, key: _crypto.Key, step: int = 333) -> bytes:
    dec = _crypto.Decryptor(key, "the test copy")
    out = bytearray()
    for i in range(0, len(blob), step):
        out += dec.update(blob[i:i + step])
    out += dec.finish()
    return bytes(out)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 10000])
def test_round_trip_and_exact_size(size: int) -> None:
    key = _crypto.Key(SECRET.encode())
    data = os.urandom(size)
    blob = encrypt(data, key)
    assert len(blob) == _crypto.ciphertext_size(size, 1024)
    assert decrypt(blob, key) == data
    assert size < 16 or data not in blob


def test_each_file_gets_its_own_key() -> None:
    key = _crypto.Key(SECRET.encode())
    data = b"same plaintext" * 200
    assert encrypt(data, key) != encrypt(data, key)


def test_header_names_the_key_id_not_the_key() -> None:
    key = _crypto.Key(SECRET.encode())
    blob = encrypt(b"x" * 5000, key)
    key_id, chunk = _crypto.parse_header(blob[: _crypto.HEADER])
    assert key_id == key.key_id and chunk == 1024
    assert SECRET.encode() not in blob
    assert SECRET not in repr(key)
    assert len(key.key_id) == 16


def test_wrong_key_fails_before_decrypting() -> None:
    blob = encrypt(b"secret data" * 100, _crypto.Key(SECRET.encode()))
    other = _crypto.Key(OTHER.encode())
    with pytest.raises(_crypto.WrongKey, match="wrong key"):
        decrypt(blob, other)


def test_no_key_is_reported() -> None:
    with pytest.raises(_crypto.WrongKey, match="no key is configured"):
        _crypto.check_key(None, "abcd", "s3://b/k")


@pytest.mark.parametrize("cut", ["boundary", "inside", "header"])
def test_truncation_is_detected(cut: str) -> None:
    key = _crypto.Key(SECRET.encode())
    blob = encrypt(os.urandom(4096), key)  # 4 full chunks
    sealed = 1024 + _crypto.TAG
    length = {"boundary": _crypto.HEADER + 2 * sealed, "inside": len(blob) - 100, "header": 20}[cut]
    with pytest.raises(VerifyError, match="truncated"):
        decrypt(blob[:length], key)


def test_tampering_is_detected() -> None:
    key = _crypto.Key(SECRET.encode())
    blob = bytearray(encrypt(os.urandom(3000), key))
    blob[_crypto.HEADER + 10] ^= 1
    with pytest.raises(VerifyError, match="failed authentication"):
        decrypt(bytes(blob), key)


def test_swapped_chunks_are_detected() -> None:
    key = _crypto.Key(SECRET.encode())
    blob = encrypt(os.urandom(4096), key)
    sealed = 1024 + _crypto.TAG
    h = _crypto.HEADER
    swapped = blob[:h] + blob[h + sealed:h + 2 * sealed] + blob[h:h + sealed] + blob[h + 2 * sealed:]
    with pytest.raises(VerifyError):
        decrypt(swapped, key)


def test_not_an_encrypted_copy() -> None:
    key = _crypto.Key(SECRET.encode())
    with pytest.raises(VerifyError, match="not in the cclite-aead-v1 format"):
        decrypt(b"\x1f\x8b" + b"\x00" * 200, key)


def test_short_keys_are_refused(tmp_path: t.Any) -> None:
    with pytest.raises(ConfigError, match="too short"):
        _crypto.Key(b"short")
    keyfile = tmp_path / "key"
    keyfile.write_text(SECRET + "\n")
    assert _crypto.Key.load(path=str(keyfile)).key_id == _crypto.Key.load(SECRET).key_id
    assert _crypto.Key.load() is None
    with pytest.raises(ConfigError, match="either"):
        _crypto.Key.load(SECRET, str(keyfile))
    with pytest.raises(ConfigError, match="cannot read"):
        _crypto.Key.load(path=str(tmp_path / "missing"))


def test_describe_records_no_secret() -> None:
    key = _crypto.Key(SECRET.encode())
    described = _crypto.describe(key)
    assert described["key_id"] == key.key_id
    assert described["algorithm"] == "cclite-aead-v1"
    assert SECRET not in repr(described)


def test_the_library_is_imported_when_encryption_is_used_not_with_the_module():
    # every module imports _crypto; a run that encrypts nothing must not pay for PyCA's import
    probe = (
        "import sys\n"
        "from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto\n"
        "print('cryptography' in sys.modules)\n"
        "key = _crypto.Key(%r.encode())\n"
        "enc = _crypto.Encryptor(key, 1024)\n"
        "sealed = enc.update(b'x' * 3000) + enc.finish()\n"
        "dec = _crypto.Decryptor(key)\n"
        "print('cryptography' in sys.modules, dec.update(sealed) + dec.finish() == b'x' * 3000)\n" % SECRET
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True).stdout
    assert out.split("\n")[:2] == ["False", "True True"]
