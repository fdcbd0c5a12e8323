# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Client-side streaming encryption of the copies that leave the host.

The library is PyCA ``cryptography`` (AES-256-GCM and HKDF-SHA256): it is already on every
Ansible controller (ansible-core depends on it), every distribution packages it
(``python3-cryptography``), and PyCA maintains it. The streaming construction around it is
the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizar) as age and Tink use it.

Format ``cclite-aead-v1`` (all integers big-endian)::

    header  = MAGIC (22 bytes) || key_id (8 bytes) || chunk_size (4 bytes) || salt (32 bytes)
    file_key = HKDF-SHA256(ikm=secret, salt=salt, info=INFO, length=32)
    chunk i  = AES-256-GCM(file_key, nonce = i (11 bytes) || last (1 byte: 1 or 0),
                           plaintext chunk i (chunk_size bytes; the last may be shorter),
                           associated data = header)

The random salt gives each file its own key, so the counter nonces never repeat under one key.
The last-chunk flag makes truncation at a chunk boundary detectable, the counter makes
reordering detectable, and the header is authenticated by every chunk. ``key_id`` is an HMAC
of the secret (it names the key without revealing it): a file is checked against the
configured key before any byte is decrypted, so a wrong key fails with a clear message.

The secret is a string of at least 32 characters of key material (for example
``openssl rand -base64 32``), from a vaulted variable or a key file. It is used as HKDF input
keying material, not stretched: it must be random, not a memorable passphrase.

The same format and key encrypt local backups at rest (``backup_local_encryption``): the
artifact writer adds an :class:`Encryptor` stage after the compressor, and the artifact reader
(``_artifact.ArtifactReader``, the one place every check, restore, drill and adoption reads a
backup through) decrypts any artifact that starts with :data:`MAGIC`, with the key the module
was given (:func:`configure`, :func:`configured`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError

# PyCA cryptography is imported on first use (require()), not with this file: every module
# imports it, most runs encrypt nothing, and the import costs each module start about 8 ms.
AESGCM: t.Any = None
HKDF: t.Any = None
InvalidTag: t.Any = None
hashes: t.Any = None

ALGORITHM = "cclite-aead-v1"
CIPHER = "AES-256-GCM"
KDF = "HKDF-SHA256"
MAGIC = b"cclite.backup/aead-v1\n"
INFO = b"cclite.backup aead-v1 file key"
KEY_ID_INFO = b"cclite.backup key id"
TAG = 16
SALT = 32
KEY_ID = 8
HEADER = len(MAGIC) + KEY_ID + 4 + SALT
DEFAULT_CHUNK = 1024 * 1024
MIN_SECRET = 32


class WrongKey(VerifyError):
    """The configured key is not the one a file was encrypted with."""


def require() -> None:
    """Import the library (once), or say how to install it."""
    global AESGCM, HKDF, InvalidTag, hashes  # pylint: disable=global-statement
    if AESGCM is not None:
        return
    try:
        from cryptography.exceptions import InvalidTag as invalid_tag
        from cryptography.hazmat.primitives import hashes as hash_algorithms
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM as aesgcm
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF as hkdf
    except ImportError:
        raise ConfigError(
            "encryption needs the Python library cryptography on the managed host: "
            "install python3-cryptography (Debian, Ubuntu, RHEL) or pip install cryptography"
        ) from None
    InvalidTag, hashes, HKDF, AESGCM = invalid_tag, hash_algorithms, hkdf, aesgcm


class Key:
    """A secret and its public id; the secret never appears in ``repr`` or messages."""

    def __init__(self, secret: bytes) -> None:
        secret = secret.strip()
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                "the encryption key is too short (%d characters): use at least %d characters of random key "
                "material, for example the output of 'openssl rand -base64 32'" % (len(secret), MIN_SECRET)
            )
        self._secret = secret
        self.key_id = hmac.new(secret, KEY_ID_INFO, hashlib.sha256).digest()[:KEY_ID].hex()

    def __repr__(self) -> str:
        return "Key(id=%s)" % self.key_id

    @classmethod
    def load(cls, secret: str = "", path: str = "") -> "Key | None":
        """The key from a secret string or a key file; ``None`` when neither is given."""
        if secret and path:
            raise ConfigError("give the encryption key either as a value or as a key file, not both")
        if path:
            try:
                with open(path, "rb") as handle:
                    return cls(handle.read())
            except OSError as exc:
                raise ConfigError("cannot read the encryption key file %s: %s" % (path, exc.strerror or exc)) from exc
        if secret:
            return cls(secret.encode("utf-8"))
        return None

    def file_key(self, salt: bytes) -> bytes:
        require()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO).derive(self._secret)


def describe(key: Key, chunk_size: int = DEFAULT_CHUNK) -> dict[str, t.Any]:
    """What the manifest records about the encryption (never the key)."""
    return {"algorithm": ALGORITHM, "cipher": CIPHER, "kdf": KDF, "chunk_size": chunk_size, "key_id": key.key_id}


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Exact size of the encrypted form of ``plaintext_size`` bytes."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER + plaintext_size + chunks * TAG


def _nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise VerifyError("the stream has too many chunks for one file")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Encryptor:
    """Encrypts a stream: feed plaintext, collect ciphertext; ``finish`` seals the last chunk."""

    def __init__(self, key: Key, chunk_size: int = DEFAULT_CHUNK, salt: bytes | None = None) -> None:
        require()
        if not 1024 <= chunk_size <= 1 << 30:
            raise ConfigError("encryption chunk size %d is out of range" % chunk_size)
        self.chunk_size = chunk_size
        salt = salt if salt is not None else os.urandom(SALT)
        self.header = MAGIC + bytes.fromhex(key.key_id) + struct.pack(">I", chunk_size) + salt
        self._aead = AESGCM(key.file_key(salt))
        self._buffer = bytearray()
        self._counter = 0
        self._started = False
        self._finished = False

    def _seal(self, chunk: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._counter, last), chunk, self.header)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        out = bytearray()
        if not self._started:
            out += self.header
            self._started = True
        self._buffer += data
        # a chunk is sealed only once more data follows it: the last one gets the flag
        while len(self._buffer) > self.chunk_size:
            out += self._seal(bytes(self._buffer[: self.chunk_size]), False)
            del self._buffer[: self.chunk_size]
        return bytes(out)

    def finish(self) -> bytes:
        if self._finished:
            return b""
        out = bytearray()
        if not self._started:
            out += self.header
            self._started = True
        out += self._seal(bytes(self._buffer), True)
        self._buffer.clear()
        self._finished = True
        return bytes(out)


def parse_header(header: bytes) -> tuple[str, int]:
    """The key id and chunk size a header names."""
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise VerifyError("the data is not in the %s format (wrong header): it is not an encrypted cclite.backup copy" % ALGORITHM)
    key_id = header[len(MAGIC): len(MAGIC) + KEY_ID].hex()
    (chunk_size,) = struct.unpack(">I", header[len(MAGIC) + KEY_ID: len(MAGIC) + KEY_ID + 4])
    return key_id, chunk_size


KEY_SETTINGS = "backup_s3_encryption_key (vaulted) or backup_s3_encryption_key_file (the modules' encryption_key or encryption_key_file)"


def check_key(key: Key | None, expected_id: str, what: str) -> Key:
    """Fail clearly, before reading any data, when ``key`` cannot decrypt ``what``."""
    if key is None:
        raise WrongKey(
            "%s is encrypted (key id %s) and no key is configured: set %s to the key it was encrypted with"
            % (what, expected_id, KEY_SETTINGS)
        )
    if key.key_id != expected_id:
        raise WrongKey(
            "%s was encrypted with key id %s but the configured key has id %s: wrong key, nothing was "
            "restored or changed; configure the key the backup was made with" % (what, expected_id, key.key_id)
        )
    return key


def check_file_key(path: str, key: Key | None = None) -> None:
    """Read only the header of the file at ``path``: when it is encrypted, fail (``WrongKey``)
    unless ``key`` (by default the configured one) is the one it was encrypted with."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER)
    except OSError as exc:
        raise VerifyError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
    if sealed(head):
        check_key(key if key is not None else configured(), parse_header(head)[0], path)


class Decryptor:
    """Decrypts a stream made by :class:`Encryptor`; ``finish`` checks that it was complete."""

    def __init__(self, key: Key | None, what: str = "the copy") -> None:
        require()
        self.key = key
        self.what = what
        self._buffer = bytearray()
        self._aead: t.Any = None
        self._header = b""
        self._chunk = 0
        self._counter = 0
        self._done = False

    def _open(self, sealed: bytes, last: bool) -> bytes:
        try:
            plain = self._aead.decrypt(_nonce(self._counter, last), sealed, self._header)
        except InvalidTag:
            if last:
                raise VerifyError(
                    "%s does not decrypt: it is truncated or was altered (chunk %d failed authentication)" % (self.what, self._counter)
                ) from None
            raise VerifyError(
                "%s does not decrypt: chunk %d failed authentication; the data was altered or the key is wrong"
                % (self.what, self._counter)
            ) from None
        self._counter += 1
        return plain

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        if self._aead is None:
            if len(self._buffer) < HEADER:
                return b""
            self._header = bytes(self._buffer[:HEADER])
            key_id, self._chunk = parse_header(self._header)
            self.key = check_key(self.key, key_id, self.what)
            self._aead = AESGCM(self.key.file_key(self._header[HEADER - SALT:]))
            del self._buffer[:HEADER]
        sealed = self._chunk + TAG
        while len(self._buffer) > sealed:
            out += self._open(bytes(self._buffer[:sealed]), False)
            del self._buffer[:sealed]
        return bytes(out)

    def finish(self) -> bytes:
        if self._aead is None:
            raise VerifyError("%s is truncated: it ends inside the encryption header" % self.what)
        if len(self._buffer) < TAG:
            raise VerifyError("%s is truncated: the last encrypted chunk is missing" % self.what)
        out = self._open(bytes(self._buffer), True)
        self._buffer.clear()
        self._done = True
        return out


# The key of this module run (one process per module run), for reading encrypted artifacts.
_CONFIGURED: list[Key | None] = [None]


def configure(key: Key | None) -> None:
    """Make ``key`` the one the artifact reader decrypts with (``None``: no key)."""
    _CONFIGURED[0] = key


def configured() -> Key | None:
    return _CONFIGURED[0]


def sealed(head: bytes) -> bool:
    """Whether data starting with ``head`` is in this format (``head``: its first bytes)."""
    return head.startswith(MAGIC)


def decrypt_stream(raw: t.Iterable[bytes], what: str, key: Key | None = None) -> t.Iterator[bytes]:
    """The plaintext of ``raw`` (the stored bytes, chunk by chunk) when it starts with the
    format's header, else ``raw`` unchanged. Decrypts with ``key``, by default the configured
    one; a missing or wrong key fails before any byte is yielded, a cut or altered stream at
    the chunk that shows it, naming ``what``."""
    chunks = iter(raw)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= len(MAGIC):
            break
    if not sealed(head):
        if head:
            yield head
        yield from chunks
        return
    decryptor = Decryptor(key if key is not None else configured(), what)
    out = decryptor.update(head)
    if out:
        yield out
    for chunk in chunks:
        out = decryptor.update(chunk)
        if out:
            yield out
    out = decryptor.finish()
    if out:
        yield out
