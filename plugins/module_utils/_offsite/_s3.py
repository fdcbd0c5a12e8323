# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 transport for the off-site copies: connection, part sizes, checksums, streamed transfers.

Why not ``amazon.aws.s3_object``: it uploads through boto3's transfer manager, whose part size
is fixed by configuration (8 MiB by default, so 10,000 parts end at 78 GiB), which keeps whole
parts in memory across threads, and which cannot be told to send a SHA-256 for every part and
check the object's composite checksum against a manifest. Here:

- the part size follows the file size (at least ``size / 9000`` and 8 MiB, rounded up to a
  MiB), so a file of any size S3 accepts (5 TiB) fits in 10,000 parts with room to spare;
- each part is sent with its SHA-256 (S3 refuses a part whose bytes do not match), and the
  object's checksum that S3 reports after the upload is compared with the one computed here:
  ``base64(sha256(part digests concatenated))-N`` for a multipart object (COMPOSITE), or the
  plain SHA-256 of the bytes for a single PUT (FULL_OBJECT);
- for S3-compatible stores without additional checksums, ``checksum: md5`` sends Content-MD5
  with every part and checks the multipart ETag (``md5(part md5s)-N``) instead;
- memory stays constant: a part is streamed from the file, or from a spool file when the bytes
  are produced on the fly (encryption), never held whole.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError


class _NoBoto(Exception):
    """What ``BotoCoreError`` and ``ClientError`` are without boto3: never raised."""


_BOTO: dict[str, t.Any] = {}


def _boto() -> dict[str, t.Any]:
    """boto3 and botocore, imported on first use: importing them takes about 0.3 s, which a
    module that reads only the local catalog (``backup_set_info`` of a local restore) need not pay."""
    if not _BOTO:
        try:
            import boto3  # pylint: disable=import-outside-toplevel
            import botocore.config  # pylint: disable=import-outside-toplevel
            import botocore.exceptions  # pylint: disable=import-outside-toplevel

            _BOTO.update(ok=True, boto3=boto3, exceptions=botocore.exceptions, Config=botocore.config.Config,
                         BotoCoreError=botocore.exceptions.BotoCoreError, ClientError=botocore.exceptions.ClientError)
        except ImportError:
            _BOTO.update(ok=False, BotoCoreError=_NoBoto, ClientError=_NoBoto)
    return _BOTO


def __getattr__(name: str) -> t.Any:
    """``HAS_BOTO3``, ``BotoCoreError`` and ``ClientError`` for the other modules (their ``except``
    clauses look them up only when something was raised)."""
    if name == "HAS_BOTO3":
        return _boto()["ok"]
    if name in ("BotoCoreError", "ClientError"):
        return _boto()[name]
    raise AttributeError(name)


MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART = 5 * MiB  # S3's floor for every part but the last
MAX_PART = 5 * GiB
MAX_PARTS = 10000
TARGET_PARTS = 9000  # leaves headroom below S3's 10,000
DEFAULT_MIN_PART = 8 * MiB
MAX_OBJECT = 5 * 1024 * GiB
IO_CHUNK = MiB


def part_size_for(size: int, forced: int = 0) -> int:
    """The part size for an object of ``size`` bytes: ``forced`` when given, else at least
    ``size / 9000`` and 8 MiB, rounded up to a whole MiB."""
    if size > MAX_OBJECT:
        raise ConfigError("%d bytes is more than S3 accepts in one object (5 TiB)" % size)
    if forced:
        if not MIN_PART <= forced <= MAX_PART:
            raise ConfigError("part size %d is out of range: S3 takes parts of 5 MiB to 5 GiB" % forced)
        if -(-size // forced) > MAX_PARTS:
            raise ConfigError(
                "part size %d splits %d bytes into more than 10,000 parts: use a larger part size, or 0 for automatic"
                % (forced, size)
            )
        return forced
    needed = -(-size // TARGET_PARTS)
    size_mib = -(-max(needed, DEFAULT_MIN_PART) // MiB)
    return size_mib * MiB


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_sha256(part_digests: t.Sequence[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: base64 of the SHA-256 of the part digests
    concatenated, then ``-<parts>``."""
    return "%s-%d" % (b64(hashlib.sha256(b"".join(part_digests)).digest()), len(part_digests))


def multipart_etag(part_md5s: t.Sequence[bytes]) -> str:
    """The ETag S3 gives a multipart object stored without SSE-KMS: md5 of the part md5s, ``-N``."""
    return "%s-%d" % (hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest(), len(part_md5s))


def same_checksum(reported: str | None, expected: str) -> bool:
    """Compare a checksum S3 reported with ours. S3 may leave out the ``-N`` suffix of a
    composite checksum (GetObjectAttributes, some compatible stores): then the digests must
    match, and the part count is checked elsewhere."""
    if not reported:
        return False
    reported = reported.strip('"')
    if reported == expected:
        return True
    return "-" not in reported and reported == expected.split("-", 1)[0]


HOST_RESERVED = ("postgresql", "redis", "qdrant", "logs")


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the bucket is and how to reach it. Credentials are never part of ``describe``."""

    bucket: str
    prefix: str = "cc-lite/backups"
    endpoint_url: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""
    profile: str = ""
    addressing_style: str = "auto"
    validate_certs: bool = True
    ca_bundle: str = ""
    connect_timeout: int = 10
    read_timeout: int = 60
    max_attempts: int = 5
    # Whose copies: with a host, copies whose manifest names another host are left out of every
    # listing (so never fetched, checked or pruned); with host_dir, the host is part of the key.
    host: str = ""
    host_dir: bool = False

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ConfigError("no bucket given: set backup_s3_bucket")
        if self.host_dir and not self.host:
            raise ConfigError("backup_s3_host_dir needs the host's name (host): set it, or turn backup_s3_host_dir off")
        if self.host_dir and ("/" in self.host or self.host in (".", "..") or self.host in HOST_RESERVED):
            raise ConfigError(
                "cannot use the host name %r as a directory of the S3 keys: it has a '/' or is a store's name; "
                "set backup_s3_host_dir: false, or rename the host in the inventory" % self.host
            )
        if self.bool_keys() == 1:
            raise ConfigError("give both the S3 access key and the secret key, or neither (to use the usual AWS sources)")

    def bool_keys(self) -> int:
        return int(bool(self.access_key)) + int(bool(self.secret_key))

    @property
    def base(self) -> str:
        return self.prefix.strip("/")

    def key(self, store: str, name: str = "") -> str:
        parts = [p for p in (self.base, self.host if self.host_dir else "", store, name) if p]
        return "/".join(parts)

    def store_prefix(self, store: str) -> str:
        return self.key(store) + "/"

    def url(self, store: str = "", name: str = "") -> str:
        return "s3://%s/%s" % (self.bucket, self.key(store, name))

    def describe(self) -> str:
        where = " at %s" % self.endpoint_url if self.endpoint_url else ""
        return "s3://%s%s" % (self.bucket, where)

    def secrets(self) -> list[str]:
        return [s for s in (self.secret_key, self.session_token, self.access_key) if s]

    def client(self) -> t.Any:
        boto = _boto()
        if not boto["ok"]:
            raise ConfigError(
                "the off-site copy needs the Python library boto3 on the managed host: install python3-boto3 "
                "(Debian, Ubuntu) or pip install boto3, or set offsite_install_dependencies: true"
            )
        options: dict[str, t.Any] = {
            "s3": {"addressing_style": self.addressing_style},
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "retries": {"max_attempts": self.max_attempts, "mode": "standard"},
        }
        try:
            # botocore >= 1.36 adds a CRC32 to every request unless told otherwise; several
            # S3-compatible stores refuse that. We send our own SHA-256 where we want one.
            config = boto["Config"](request_checksum_calculation="when_required", response_checksum_validation="when_required", **options)
        except TypeError:
            config = boto["Config"](**options)
        session_args: dict[str, t.Any] = {}
        if self.profile:
            session_args["profile_name"] = self.profile
        if self.access_key:
            session_args.update(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
            if self.session_token:
                session_args["aws_session_token"] = self.session_token
        client_args: dict[str, t.Any] = {"config": config}
        if self.region:
            client_args["region_name"] = self.region
        if self.endpoint_url:
            client_args["endpoint_url"] = self.endpoint_url
        if not self.validate_certs:
            client_args["verify"] = False
        elif self.ca_bundle:
            client_args["verify"] = self.ca_bundle
        try:
            session = boto["boto3"].session.Session(**session_args)
            return session.client("s3", **client_args)
        except (boto["BotoCoreError"], ValueError) as exc:
            raise ConfigError("cannot set up the S3 client for %s: %s" % (self.describe(), self.redact(str(exc)))) from exc

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, "********")
        return text

    def error(self, exc: BaseException, doing: str) -> BackupError:
        """One sentence for a failed S3 call: what we were doing, what S3 said, what to check."""
        boto = _boto()
        if isinstance(exc, boto["ClientError"]):
            err = getattr(exc, "response", {}).get("Error", {})
            code = err.get("Code", "?")
            hint = {
                "NoSuchBucket": "create the bucket or fix backup_s3_bucket",
                "AccessDenied": "check the credentials and the bucket policy (s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject)",
                "InvalidAccessKeyId": "check the access key",
                "SignatureDoesNotMatch": "check the secret key and the region",
                "BadDigest": "the bytes changed on the way: run again",
                "InvalidRequest": "the store may not support SHA-256 checksums: try offsite_checksum: md5",
            }.get(code, "see the S3 error code")
            text = "%s failed on %s: %s (%s): %s" % (doing, self.describe(), code, err.get("Message", "").strip(), hint)
        elif boto["ok"] and isinstance(exc, boto["exceptions"].NoCredentialsError):
            text = (
                "%s failed: no AWS credentials found; set backup_s3_access_key and backup_s3_secret_key (vaulted) "
                "or configure an AWS profile or instance role" % doing
            )
        elif boto["ok"] and isinstance(exc, (boto["exceptions"].EndpointConnectionError, boto["exceptions"].ConnectTimeoutError)):
            text = "%s failed: cannot reach %s (%s); check backup_s3_endpoint_url and the network" % (doing, self.describe(), exc)
        else:
            text = "%s failed on %s: %s" % (doing, self.describe(), exc)
        return StageError(self.redact(text))


# Parts ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Part:
    number: int
    size: int
    sha256: bytes
    md5: bytes


class FileRange(io.RawIOBase):
    """A read-only window on a file, for an upload body that must not be read into memory."""

    def __init__(self, handle: t.BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._handle = handle
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        if size is None or size < 0 or size > left:
            size = left
        if size <= 0:
            return b""
        self._handle.seek(self._start + self._pos)
        data = self._handle.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: t.Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self._length


# Module options ---------------------------------------------------------------------------


def connection_argument_spec() -> dict[str, t.Any]:
    """Options every S3 module shares (doc fragment cclite.backup.s3)."""
    return {
        "bucket": {"type": "str", "required": True},
        "prefix": {"type": "str", "default": "cc-lite/backups"},
        "endpoint_url": {"type": "str", "default": ""},
        "region": {"type": "str", "default": ""},
        "access_key": {"type": "str", "default": "", "no_log": True, "aliases": ["aws_access_key"]},
        "secret_key": {"type": "str", "default": "", "no_log": True, "aliases": ["aws_secret_key"]},
        "session_token": {"type": "str", "default": "", "no_log": True},
        "profile": {"type": "str", "default": ""},
        "addressing_style": {"type": "str", "default": "auto", "choices": ["auto", "path", "virtual"]},
        "validate_certs": {"type": "bool", "default": True},
        "ca_bundle": {"type": "path", "default": ""},
        "retries": {"type": "int", "default": 5},
        "encryption_key": {"type": "str", "default": "", "no_log": True},
        "encryption_key_file": {"type": "path", "default": ""},
        "host": {"type": "str", "default": ""},
        "host_dir": {"type": "bool", "default": False},
    }


def connection_from(params: t.Mapping[str, t.Any]) -> Connection:
    return Connection(
        bucket=params["bucket"],
        prefix=params["prefix"],
        endpoint_url=params["endpoint_url"] or "",
        region=params["region"] or "",
        access_key=params["access_key"] or "",
        secret_key=params["secret_key"] or "",
        session_token=params["session_token"] or "",
        profile=params["profile"] or "",
        addressing_style=params["addressing_style"],
        validate_certs=params["validate_certs"],
        ca_bundle=params["ca_bundle"] or "",
        max_attempts=max(1, params["retries"]),
        host=(params.get("host") or "").strip(),
        host_dir=bool(params.get("host_dir")),
    )
