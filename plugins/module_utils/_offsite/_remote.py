# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Off-site copies on S3: the layout, the options, and the remote catalog every other part works on.

The parts: ``_upload``, ``_checks``, ``_listing``, ``_fetch``, ``_adopt`` and ``_prune`` (retention with
the local guard), over ``_s3`` (the S3 client calls).

Layout: ``s3://<bucket>/<prefix>/<store>/<file>`` next to ``<file>.manifest.json``, the same
names as in ``<backup_root>/<store>/`` (the guide's layout); with ``host_dir`` the inventory host
comes first, ``<prefix>/<host>/<store>/<file>``, so hosts sharing a bucket and prefix never
share a key. Either way a listing keeps only the copies of ``Connection.host``: a manifest with a
run id names its host, and copies of other hosts are left out (never fetched, checked or
pruned); copies without one (the guide's scripts, manifests older than run ids) belong to any
host of the layout. The remote manifest is the local one plus two records:

- ``offsite``: the object's key, stored size and SHA-256, and the checksum S3 keeps for it
  (``SHA256`` COMPOSITE ``...-N`` for our multipart uploads, or the multipart ETag with
  ``checksum: md5``), with the part size;
- ``encryption``: ``null``, or the algorithm, key id (never the key) and the size and SHA-256
  of the ciphertext. ``artifact`` keeps the size and SHA-256 of the plaintext, so a download is
  checked twice: the stored bytes, then the decrypted ones.

A backup encrypted at rest (``artifact.encryption``, ``backup_local_encryption``) is uploaded as
it is, never encrypted a second time: its ``encryption`` is ``null``, ``artifact`` holds the
size and SHA-256 of the encrypted bytes (those on S3), and a fetch brings those bytes back as
they were, to be decrypted when they are read.

The manifest is uploaded last, once the artifact is complete and its checksum checked. Every
object this collection uploads carries the metadata ``x-amz-meta-cclite-backup`` (older
versions: ``cclite-sha256``): such an object without its manifest is an upload that did not
finish and never counts as good. The local artifact stays as it was (plaintext): it remains the
good copy when an upload fails.

Copies made by the guide's scripts (``aws s3 cp`` to the same layout) have neither manifest nor
marker: they are *legacy* copies. They are listed as such; the checks that need no manifest
apply (exists, age, size floor, and - with a download - the compressed stream to its end); a
legacy copy counts as good for retention and ``latest`` only once its stream checked out, which
costs a download (done only when no newer copy of its series is good). ``adopt`` turns them
into first-class copies by uploading a manifest for them, never rewriting the object.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, POSTGRESQL_BASE, QDRANT, REDIS, STAMP, Layout
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError


LAYOUTS = {layout.store: layout for layout in (POSTGRESQL, REDIS, QDRANT, POSTGRESQL_BASE)}
STORES = tuple(LAYOUTS)
STALE_UPLOAD = datetime.timedelta(days=1)
# Object metadata (x-amz-meta-*) that marks an upload of this collection; cclite-sha256 marks
# the uploads of 0.1.0 before the marker had its own name.
MARKERS = ("cclite-backup", "cclite-sha256")
# The size floor of a copy without a manifest (the store roles' *_backup_min_size_bytes).
MIN_SIZE = {"postgresql": 1024, "redis": 128, "qdrant": 1024, "postgresql_base": 1024}
AWS_CLI_PART = 8 * 1024 * 1024  # the part size of ``aws s3 cp`` and boto3's upload_file


def min_size_argument_spec() -> dict[str, t.Any]:
    """The size floor of copies without a manifest, per store (modules that judge them)."""
    return {"min_size_bytes": {"type": "dict", "default": {}}}


def min_sizes_from(params: t.Mapping[str, t.Any]) -> dict[str, int]:
    sizes = {}
    for store, value in (params.get("min_size_bytes") or {}).items():
        layout_for(store)
        try:
            sizes[store] = int(value)
        except (TypeError, ValueError):
            raise ConfigError("min_size_bytes.%s must be a number of bytes, got %r" % (store, value)) from None
    return sizes


def layout_for(store: str) -> Layout:
    try:
        return LAYOUTS[store]
    except KeyError:
        raise ConfigError("unknown store %r: use %s" % (store, ", ".join(STORES))) from None


@dataclasses.dataclass
class Options:
    """How objects are written."""

    checksum: str = "sha256"  # sha256: additional checksums; md5: Content-MD5 and the ETag
    part_size: int = 0  # 0: computed from the size
    storage_class: str = ""
    sse: str = ""  # "", AES256, aws:kms
    sse_kms_key_id: str = ""
    spool_dir: str = ""
    object_lock: str = ""  # "", GOVERNANCE, COMPLIANCE: S3 Object Lock on every object written
    object_lock_days: int = 0  # how long each object stays locked, from its upload

    def __post_init__(self) -> None:
        if self.checksum not in ("sha256", "md5"):
            raise ConfigError("checksum must be sha256 or md5, got %r" % self.checksum)
        if self.sse not in ("", "AES256", "aws:kms"):
            raise ConfigError("server-side encryption must be AES256 or aws:kms, got %r" % self.sse)
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ConfigError("a KMS key id needs server-side encryption aws:kms")
        if self.object_lock not in ("", "GOVERNANCE", "COMPLIANCE"):
            raise ConfigError("object_lock must be governance or compliance, got %r" % self.object_lock)
        if self.object_lock and self.object_lock_days < 1:
            raise ConfigError("object_lock needs object_lock_days of at least 1 (how long each copy stays locked), got %r; "
                              "nothing was uploaded" % self.object_lock_days)

    def object_args(self) -> dict[str, t.Any]:
        args: dict[str, t.Any] = {}
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.object_lock:
            args.update(ObjectLockMode=self.object_lock, ObjectLockRetainUntilDate=self._until())
        return args

    def _until(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=self.object_lock_days)

    def lock(self, remote: "Remote", key: str, version: str | None) -> dict[str, t.Any] | None:
        """Set the Object Lock retention on the version just written (a multipart upload's lock
        headers are not honoured by every S3 implementation) and read it back: a copy reported
        as locked is locked."""
        if not self.object_lock:
            return None
        version_arg = {"VersionId": version} if version else {}
        remote.call("locking %s" % key, "put_object_retention", Bucket=remote.conn.bucket, Key=key, ChecksumAlgorithm="SHA256",
                    Retention={"Mode": self.object_lock, "RetainUntilDate": self._until()}, **version_arg)
        head = remote.call("checking the lock of %s" % key, "head_object", Bucket=remote.conn.bucket, Key=key, **version_arg)
        if head.get("ObjectLockMode") != self.object_lock or not head.get("ObjectLockRetainUntilDate"):
            raise VerifyError("%s was uploaded but S3 does not report it locked (%s): is Object Lock enabled on bucket %s? "
                              "It must be enabled when the bucket is created" % (key, head.get("ObjectLockMode") or "no lock", remote.conn.bucket))
        return {"mode": self.object_lock.lower(), "until": head["ObjectLockRetainUntilDate"].isoformat(), "version": version}


# The remote catalog -------------------------------------------------------------------------


@dataclasses.dataclass
class RemoteEntry:
    store: str
    name: str
    key: str
    series: str
    stamp: datetime.datetime
    size: int
    last_modified: datetime.datetime | None
    manifest_key: str | None
    manifest: dict[str, t.Any] | None = None
    manifest_error: str | None = None
    etag: str = ""
    head: dict[str, t.Any] | None = None  # read for objects without a manifest only
    marked: bool = False  # carries the metadata of an upload of this collection
    stream: dict[str, t.Any] | None = None  # a legacy copy's stream check, once made

    @property
    def legacy(self) -> bool:
        """A copy made by the guide's scripts: no manifest, no marker of ours."""
        return self.manifest_key is None and not self.marked

    @property
    def incomplete(self) -> bool:
        """An upload of ours that did not finish: marked, but no manifest."""
        return self.manifest_key is None and self.marked

    @property
    def created(self) -> datetime.datetime:
        ended = _manifest.ended(self.manifest) if self.manifest else None
        return ended or self.stamp

    @property
    def encryption(self) -> dict[str, t.Any] | None:
        return (self.manifest or {}).get("encryption") or None

    @property
    def at_rest(self) -> dict[str, t.Any] | None:
        """How the backup itself is encrypted at rest (uploaded as it is); ``None``: it is not."""
        return ((self.manifest or {}).get("artifact") or {}).get("encryption") or None

    @property
    def record(self) -> dict[str, t.Any]:
        return (self.manifest or {}).get("offsite") or {}

    @property
    def archive(self) -> dict[str, t.Any] | None:
        """A directory backup's copy is a tar of its files: ``{"format": "tar", "of": "directory",
        "size", "sha256"}`` of the tar's bytes; ``None`` for a single-file backup."""
        return (self.manifest or {}).get("archive") or None

    @property
    def plaintext(self) -> dict[str, t.Any]:
        """The size and sha256 the object's bytes have once decrypted: the tar's, or the artifact's."""
        return self.archive or (self.manifest or {}).get("artifact", {})

    def as_dict(self, conn: s3.Connection) -> dict[str, t.Any]:
        enc = self.encryption or self.at_rest
        return {
            "name": self.name,
            "path": conn.url(self.store, self.name),
            "key": self.key,
            "created": self.created.isoformat(),
            "size": self.size,
            "sha256": (self.manifest or {}).get("artifact", {}).get("sha256"),
            "stored_sha256": self.record.get("sha256"),
            "compression": _tree.algorithm_of(self.name),
            "series": self.series,
            "legacy": self.legacy,
            "incomplete": self.incomplete,
            "adopted": bool(self.record.get("adopted")),
            "manifest": conn.url(self.store, self.name + _manifest.SUFFIX) if self.manifest_key else None,
            "encrypted": enc is not None,
            "key_id": enc.get("key_id") if enc else None,
            "storage_class": self.record.get("storage_class"),
        }


class Remote:
    """The objects of the off-site copy, with the calls that read and write them."""

    def __init__(self, conn: s3.Connection, client: t.Any = None, min_size: t.Mapping[str, int] | None = None) -> None:
        self.conn = conn
        self.client = client if client is not None else conn.client()
        self.min_size = dict(MIN_SIZE, **(min_size or {}))
        self.others: dict[str, int] = {}  # per store: copies of other hosts left out of the listing

    def min_size_for(self, store: str) -> int:
        """The size floor of a copy without a manifest (one with a manifest is held to its size)."""
        return int(self.min_size.get(store, 1024))

    def call(self, doing: str, method: str, **kwargs: t.Any) -> t.Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (s3.ClientError, s3.BotoCoreError) as exc:
            raise self.conn.error(exc, doing) from exc

    def head(self, key: str, doing: str) -> dict[str, t.Any] | None:
        try:
            return self.client.head_object(Bucket=self.conn.bucket, Key=key, ChecksumMode="ENABLED")
        except s3.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self.conn.error(exc, doing) from exc
        except s3.BotoCoreError as exc:
            raise self.conn.error(exc, doing) from exc

    def get_json(self, key: str) -> dict[str, t.Any]:
        body = self.call("reading %s" % key, "get_object", Bucket=self.conn.bucket, Key=key)["Body"]
        try:
            data = json.loads(body.read(16 * 1024 * 1024).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerifyError("the manifest %s cannot be read (%s)" % (self.conn.url() + key, exc)) from exc
        if not isinstance(data, dict) or data.get("schema") != _manifest.SCHEMA:
            raise VerifyError("%s is not a cclite.backup manifest" % key)
        return data

    def entries(self, store: str, load_manifests: bool = True) -> list[RemoteEntry]:
        """The backups of a store on S3, every series, newest first."""
        layout = layout_for(store)
        pattern = layout.pattern()
        prefix = self.conn.store_prefix(store)
        self.others.pop(store, None)  # counted again by this listing
        objects: dict[str, dict[str, t.Any]] = {}
        token = None
        while True:
            args = {"Bucket": self.conn.bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            page = self.call("listing %s" % self.conn.url(store), "list_objects_v2", **args)
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if "/" not in name:
                    objects[name] = obj
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        found = []
        for name, obj in objects.items():
            match = pattern.fullmatch(name)
            if not match:
                continue
            try:
                stamp = datetime.datetime.strptime(match.group("stamp"), STAMP).astimezone()
            except ValueError:
                continue
            manifest_name = name + _manifest.SUFFIX
            entry = RemoteEntry(
                store, name, obj["Key"], match.group("series") or "", stamp, int(obj["Size"]),
                obj.get("LastModified"), prefix + manifest_name if manifest_name in objects else None,
                etag=str(obj.get("ETag", "")).strip('"'),
            )
            # in a layout shared by hosts, the manifests say whose a copy is: read them anyway
            if (load_manifests or (self.conn.host and not self.conn.host_dir)) and entry.manifest_key:
                try:
                    entry.manifest = self.get_json(entry.manifest_key)
                except VerifyError as exc:
                    entry.manifest_error = exc.msg
                owner = _manifest.owner(entry.manifest)
                if self.conn.host and owner and owner != self.conn.host:
                    self.others[store] = self.others.get(store, 0) + 1
                    continue
            elif entry.manifest_key is None:
                # one HEAD per object without a manifest: ours (an unfinished upload) or the scripts'
                entry.head = self.head(entry.key, "checking %s" % entry.key)
                if entry.head is None:
                    continue  # deleted since the listing
                metadata = {k.lower(): v for k, v in (entry.head.get("Metadata") or {}).items()}
                entry.marked = any(m in metadata for m in MARKERS)
                entry.etag = str(entry.head.get("ETag", entry.etag)).strip('"')
            found.append(entry)
        found.sort(key=lambda e: (e.stamp, e.name), reverse=True)
        return found

    def delete(self, key: str) -> None:
        self.call("deleting %s" % key, "delete_object", Bucket=self.conn.bucket, Key=key)


# Checks -------------------------------------------------------------------------------------
