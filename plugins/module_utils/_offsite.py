# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Off-site copies on S3: upload, the remote catalog, checks, download into the local catalog,
and retention with the local guard.

Layout: ``s3://<bucket>/<prefix>/<store>/<file>`` next to ``<file>.manifest.json``, the same
names as in ``<backup_root>/<store>/``. The remote manifest is the local one plus two records:

- ``offsite``: the object's key, stored size and SHA-256, and the checksum S3 keeps for it
  (``SHA256`` COMPOSITE ``...-N`` for our multipart uploads, or the multipart ETag with
  ``checksum: md5``), with the part size;
- ``encryption``: ``null``, or the algorithm, key id (never the key) and the size and SHA-256
  of the ciphertext. ``artifact`` keeps the size and SHA-256 of the plaintext, so a download is
  checked twice: the stored bytes, then the decrypted ones.

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
import hashlib
import json
import os
import random
import re
import tempfile
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils import _crypto, _manifest
from ansible_collections.cclite.backup.plugins.module_utils import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._artifact import CHUNK, EXTENSIONS, ArtifactReader, algorithm_of, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._catalog import POSTGRESQL, QDRANT, REDIS, SERIES_RE, STAMP, Catalog, Layout, local_now
from ansible_collections.cclite.backup.plugins.module_utils._errors import BackupError, ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._lock import StoreLock

LAYOUTS = {layout.store: layout for layout in (POSTGRESQL, REDIS, QDRANT)}
STORES = tuple(LAYOUTS)
STALE_UPLOAD = datetime.timedelta(days=1)
# Object metadata (x-amz-meta-*) that marks an upload of this collection; cclite-sha256 marks
# the uploads of 0.1.0 before the marker had its own name.
MARKERS = ("cclite-backup", "cclite-sha256")
# The size floor of a copy without a manifest (the store roles' *_backup_min_size_bytes).
MIN_SIZE = {"postgresql": 1024, "redis": 128, "qdrant": 1024}
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


def name_pattern(layout: Layout) -> t.Pattern[str]:
    """Backup file names of a store, any series: ``<prefix>[_<series>]_<stamp><content><ext>``."""
    return re.compile(
        r"%s(?:_(?P<series>%s))?_(?P<stamp>\d{8}_\d{6})%s(?P<comp>%s)"
        % (
            re.escape(layout.prefix),
            SERIES_RE.pattern,
            re.escape(layout.content),
            "|".join(re.escape(e) for e in EXTENSIONS.values()),
        )
    )


@dataclasses.dataclass
class Options:
    """How objects are written."""

    checksum: str = "sha256"  # sha256: additional checksums; md5: Content-MD5 and the ETag
    part_size: int = 0  # 0: computed from the size
    storage_class: str = ""
    sse: str = ""  # "", AES256, aws:kms
    sse_kms_key_id: str = ""
    spool_dir: str = ""

    def __post_init__(self) -> None:
        if self.checksum not in ("sha256", "md5"):
            raise ConfigError("checksum must be sha256 or md5, got %r" % self.checksum)
        if self.sse not in ("", "AES256", "aws:kms"):
            raise ConfigError("server-side encryption must be AES256 or aws:kms, got %r" % self.sse)
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ConfigError("a KMS key id needs server-side encryption aws:kms")

    def object_args(self) -> dict[str, t.Any]:
        args: dict[str, t.Any] = {}
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


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
    def record(self) -> dict[str, t.Any]:
        return (self.manifest or {}).get("offsite") or {}

    def as_dict(self, conn: s3.Connection) -> dict[str, t.Any]:
        enc = self.encryption
        return {
            "name": self.name,
            "path": conn.url(self.store, self.name),
            "key": self.key,
            "created": self.created.isoformat(),
            "size": self.size,
            "sha256": (self.manifest or {}).get("artifact", {}).get("sha256"),
            "stored_sha256": self.record.get("sha256"),
            "compression": algorithm_of(self.name),
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
        pattern = name_pattern(layout)
        prefix = self.conn.store_prefix(store)
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
            if load_manifests and entry.manifest_key:
                try:
                    entry.manifest = self.get_json(entry.manifest_key)
                except VerifyError as exc:
                    entry.manifest_error = exc.msg
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


def check_object(remote: Remote, entry: RemoteEntry, report: dict[str, t.Any]) -> None:
    """Existence, size and checksum of the stored object against its manifest, without a download."""
    checks, problems = report["checks"], report["problems"]
    if entry.manifest_error:
        checks["manifest"] = "failed"
        problems.append("%s: %s" % (entry.name, entry.manifest_error))
        return
    if entry.legacy:
        check_legacy(remote, entry, report)
        return
    if entry.manifest is None:
        checks["manifest"] = "failed"
        problems.append("%s: no manifest on S3: the upload did not finish; this copy cannot be trusted" % entry.name)
        return
    record = entry.record
    if not record:
        checks["manifest"] = "failed"
        problems.append("%s: the manifest on S3 has no offsite record" % entry.name)
        return
    checks["manifest"] = "ok"
    head = remote.head(entry.key, "checking %s" % entry.key)
    if head is None:
        checks["exists"] = "failed"
        problems.append("%s: the object is gone from S3" % entry.name)
        return
    checks["exists"] = "ok"
    size = int(head.get("ContentLength", -1))
    if size != record.get("size"):
        checks["size"] = "failed"
        problems.append("%s: S3 holds %d bytes, the manifest says %s: the copy is incomplete or was replaced" % (entry.name, size, record.get("size")))
    else:
        checks["size"] = "ok"
    checksum = record.get("checksum") or {}
    if checksum.get("algorithm") == "SHA256":
        reported = head.get("ChecksumSHA256")
        if not reported:
            checks["checksum"] = "failed"
            problems.append("%s: S3 reports no SHA-256 checksum for the object (expected %s)" % (entry.name, checksum.get("value")))
        elif not s3.same_checksum(reported, checksum.get("value", "")):
            checks["checksum"] = "failed"
            problems.append(
                "%s: S3's SHA-256 checksum %s differs from the manifest's %s: the object was changed"
                % (entry.name, reported, checksum.get("value"))
            )
        else:
            checks["checksum"] = "ok"
    elif checksum.get("algorithm") == "MD5":
        etag = str(head.get("ETag", "")).strip('"')
        if record.get("server_side_encryption") == "aws:kms":
            checks["checksum"] = "skipped"
            report["notes"].append("%s: the ETag of an SSE-KMS object is not an MD5; size checked only" % entry.name)
        elif etag != checksum.get("value"):
            checks["checksum"] = "failed"
            problems.append("%s: the ETag %s differs from the manifest's %s: the object was changed" % (entry.name, etag, checksum.get("value")))
        else:
            checks["checksum"] = "ok"
    else:
        checks["checksum"] = "failed"
        problems.append("%s: the manifest records no checksum of the object" % entry.name)


def check_legacy(remote: Remote, entry: RemoteEntry, report: dict[str, t.Any]) -> None:
    """The checks a copy made by the guide's scripts allows without a download: it exists, and
    it is not smaller than the store's floor. Says which checks it cannot do."""
    checks, problems = report["checks"], report["problems"]
    checks["manifest"] = "skipped"
    checks["checksum"] = "skipped"
    report["notes"].append(
        "%s: no manifest on S3 (a copy made by the guide's scripts): checksum not compared; "
        "s3_backup_adopt can make it a first-class copy" % entry.name
    )
    head = entry.head if entry.head is not None else remote.head(entry.key, "checking %s" % entry.key)
    if head is None:
        checks["exists"] = "failed"
        problems.append("%s: the object is gone from S3" % entry.name)
        return
    checks["exists"] = "ok"
    size = int(head.get("ContentLength", entry.size))
    floor = remote.min_size_for(entry.store)
    if size < floor:
        checks["size"] = "failed"
        problems.append("%s: only %d bytes on S3 (floor %d): the dump is probably empty" % (entry.name, size, floor))
    else:
        checks["size"] = "ok"
    if entry.stream is not None:
        apply_stream(entry, report)


def apply_stream(entry: RemoteEntry, report: dict[str, t.Any]) -> None:
    """Record a legacy copy's stream check (made by :func:`check_stream`) in a report."""
    stream = entry.stream or {}
    if stream.get("error"):
        report["checks"]["stream"] = "failed"
        report["problems"].append("%s: %s" % (entry.name, stream["error"]))
    else:
        report["checks"]["stream"] = "ok"
        report["notes"].append(
            "%s: downloaded and decompressed to the end (%d bytes of content, sha256 %s); "
            "content not compared with a manifest" % (entry.name, stream["content_size"], stream["sha256"])
        )


def new_report(entry: RemoteEntry) -> dict[str, t.Any]:
    return {"state": "unverified", "checks": {}, "problems": [], "notes": []}


def settle(report: dict[str, t.Any]) -> dict[str, t.Any]:
    checks = report["checks"]
    if report["problems"]:
        report["state"] = "bad"
    elif "ok" in (checks.get("checksum"), checks.get("download"), checks.get("stream")):
        report["state"] = "good"
    return report


def is_good(remote: Remote, entry: RemoteEntry) -> bool:
    """Whether a copy can be trusted. A legacy copy must pass its cheap checks, then be
    downloaded and decompressed to the end: this costs a download of the whole object."""
    report = new_report(entry)
    check_object(remote, entry, report)
    if entry.legacy and not report["problems"] and entry.stream is None:
        check_stream(remote, entry)
        apply_stream(entry, report)
    return settle(report)["state"] == "good"


def check_stream(remote: Remote, entry: RemoteEntry, sink: Sink | None = None) -> dict[str, t.Any]:
    """Download a copy without a manifest and decompress it to the end (constant memory),
    writing the stored bytes to ``sink``. Records the result in ``entry.stream`` (``error`` set
    when the stream is cut, corrupt or empty) and returns it; S3 errors raise."""
    what = remote.conn.url(entry.store, entry.name)
    digest = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    counted = {"size": 0}
    body = remote.call("downloading %s" % entry.key, "get_object", Bucket=remote.conn.bucket, Key=entry.key)["Body"]

    def raw() -> t.Iterator[bytes]:
        while True:
            data = body.read(CHUNK)
            if not data:
                return
            digest.update(data)
            md5.update(data)
            counted["size"] += len(data)
            if sink is not None:
                sink.write(data)
            yield data

    content_size = 0
    error = None
    try:
        for chunk in ArtifactReader(what, algorithm_of(entry.name)).decompress(raw()):
            content_size += len(chunk)
        for _rest in raw():  # an uncompressed copy, or bytes after the end of the stream
            pass
        if content_size == 0:
            error = "the copy is empty once decompressed"
    except VerifyError as exc:
        error = exc.msg
    except (s3.ClientError, s3.BotoCoreError) as exc:
        raise remote.conn.error(exc, "downloading %s" % entry.key) from exc
    finally:
        body.close()
    if error is None and counted["size"] != entry.size:
        error = "%d bytes downloaded, the listing said %d: the object changed meanwhile" % (counted["size"], entry.size)
    entry.stream = {"error": error, "size": counted["size"], "sha256": digest.hexdigest(), "md5": md5.hexdigest(),
                    "content_size": content_size}
    return entry.stream


class Sink(t.Protocol):
    def write(self, data: bytes) -> t.Any: ...


def download(remote: Remote, entry: RemoteEntry, key: _crypto.Key | None, sink: Sink | None) -> dict[str, t.Any]:
    """Stream an object, check the stored bytes and (after decryption) the plaintext against the
    manifest, and write the plaintext to ``sink``. Raises :class:`VerifyError` on any mismatch."""
    manifest = entry.manifest or {}
    record = entry.record
    what = remote.conn.url(entry.store, entry.name)
    enc = entry.encryption
    decryptor = None
    if enc:
        if enc.get("algorithm") != _crypto.ALGORITHM:
            raise VerifyError("%s is encrypted with %s, which this version cannot read" % (what, enc.get("algorithm")))
        decryptor = _crypto.Decryptor(_crypto.check_key(key, enc.get("key_id", "?"), what), what)
    body = remote.call("downloading %s" % entry.key, "get_object", Bucket=remote.conn.bucket, Key=entry.key)["Body"]
    stored, plain = hashlib.sha256(), hashlib.sha256()
    stored_size = plain_size = 0
    try:
        while True:
            data = body.read(CHUNK)
            if not data:
                break
            stored.update(data)
            stored_size += len(data)
            out = decryptor.update(data) if decryptor else data
            if out:
                plain.update(out)
                plain_size += len(out)
                if sink is not None:
                    sink.write(out)
        if decryptor:
            out = decryptor.finish()
            plain.update(out)
            plain_size += len(out)
            if sink is not None and out:
                sink.write(out)
    except (s3.ClientError, s3.BotoCoreError) as exc:
        raise remote.conn.error(exc, "downloading %s" % entry.key) from exc
    finally:
        body.close()
    if record.get("sha256") and stored.hexdigest() != record["sha256"]:
        raise VerifyError("%s: the downloaded bytes have sha256 %s, the manifest says %s" % (what, stored.hexdigest(), record["sha256"]))
    expected = manifest.get("artifact", {})
    if plain_size != expected.get("size") or plain.hexdigest() != expected.get("sha256"):
        raise VerifyError(
            "%s: the backup read back has %d bytes and sha256 %s, the manifest says %s bytes and %s"
            % (what, plain_size, plain.hexdigest(), expected.get("size"), expected.get("sha256"))
        )
    return {"stored_size": stored_size, "stored_sha256": stored.hexdigest(), "size": plain_size, "sha256": plain.hexdigest()}


# Upload -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Planned:
    path: str
    store: str
    name: str
    manifest: dict[str, t.Any]
    stored_size: int
    part_size: int
    parts: int


class Uploader:
    def __init__(self, remote: Remote, options: Options, key: _crypto.Key | None = None) -> None:
        self.remote = remote
        self.conn = remote.conn
        self.options = options
        self.key = key

    def plan(self, path: str) -> Planned:
        if not os.path.isfile(path):
            raise ConfigError("%s does not exist: nothing to copy off-site" % path)
        manifest = _manifest.read(path)
        if manifest is None:
            raise ConfigError("%s has no manifest: only backups made by cclite.backup are copied off-site" % path)
        store = manifest.get("store", "")
        layout_for(store)
        name = os.path.basename(path)
        size = os.path.getsize(path)
        if size != manifest.get("artifact", {}).get("size"):
            raise VerifyError(
                "%s has %d bytes, its manifest says %s: the local backup changed or is cut; nothing was uploaded"
                % (path, size, manifest.get("artifact", {}).get("size"))
            )
        stored = _crypto.ciphertext_size(size) if self.key else size
        part_size = s3.part_size_for(stored, self.options.part_size)
        return Planned(path, store, name, manifest, stored, part_size, s3.part_count(stored, part_size))

    def existing(self, plan: Planned) -> RemoteEntry | None:
        """The remote copy when it is already there, complete and good."""
        prefix = self.conn.store_prefix(plan.store)
        manifest_key = prefix + plan.name + _manifest.SUFFIX
        if self.remote.head(manifest_key, "checking %s" % manifest_key) is None:
            head = self.remote.head(prefix + plan.name, "checking %s" % (prefix + plan.name))
            metadata = {k.lower() for k in ((head or {}).get("Metadata") or {})}
            if head is not None and not metadata & set(MARKERS) and int(head.get("ContentLength", -1)) != plan.stored_size:
                raise VerifyError(
                    "%s already exists on S3 without a manifest (a copy made by the guide's scripts) and with another "
                    "size (%s bytes, local %d): refusing to overwrite it"
                    % (self.conn.url(plan.store, plan.name), head.get("ContentLength"), plan.stored_size)
                )
            return None
        entry = RemoteEntry(plan.store, plan.name, prefix + plan.name, "", local_now(), 0, None, manifest_key)
        try:
            entry.manifest = self.remote.get_json(manifest_key)
        except VerifyError:
            return None
        if entry.manifest.get("artifact", {}).get("sha256") != plan.manifest.get("artifact", {}).get("sha256"):
            raise VerifyError(
                "%s already exists on S3 with other content (sha256 %s, local %s): refusing to overwrite it"
                % (self.conn.url(plan.store, plan.name), entry.manifest.get("artifact", {}).get("sha256"),
                   plan.manifest.get("artifact", {}).get("sha256"))
            )
        return entry if is_good(self.remote, entry) else None

    def upload(self, plan: Planned) -> dict[str, t.Any]:
        started = utcnow()
        key = self.conn.key(plan.store, plan.name)
        expected_sha = plan.manifest["artifact"]["sha256"]
        metadata = {
            "cclite-backup": _manifest.COLLECTION_VERSION,  # marks our uploads (see MARKERS)
            "cclite-store": plan.store,
            "cclite-sha256": expected_sha,
            "cclite-encryption": _crypto.ALGORITHM if self.key else "none",
        }
        if self.key:
            metadata["cclite-key-id"] = self.key.key_id
        create = dict(Bucket=self.conn.bucket, Key=key, Metadata=metadata, ContentType="application/octet-stream", **self.options.object_args())
        if self.options.checksum == "sha256":
            create["ChecksumAlgorithm"] = "SHA256"
        upload_id = self.remote.call("starting the upload of %s" % key, "create_multipart_upload", **create)["UploadId"]
        try:
            parts, stored_sha, plain_sha = self._send_parts(plan, key, upload_id)
            if plain_sha != expected_sha:
                raise VerifyError(
                    "%s read back with sha256 %s, its manifest says %s: the local backup changed or is corrupt; "
                    "nothing was uploaded" % (plan.path, plain_sha, expected_sha)
                )
            done = []
            for part in parts:
                item: dict[str, t.Any] = {"PartNumber": part.number, "ETag": part.etag}
                if self.options.checksum == "sha256":
                    item["ChecksumSHA256"] = s3.b64(part.sha256)
                done.append(item)
            self.remote.call(
                "completing the upload of %s" % key, "complete_multipart_upload",
                Bucket=self.conn.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
            )
        except BaseException:
            self.client_abort(key, upload_id)
            raise
        if self.options.checksum == "sha256":
            checksum = {"algorithm": "SHA256", "type": "COMPOSITE", "value": s3.composite_sha256([p.sha256 for p in parts])}
        else:
            checksum = {"algorithm": "MD5", "type": "ETAG", "value": s3.multipart_etag([p.md5 for p in parts])}
        checksum.update(parts=len(parts), part_size=plan.part_size)
        record = {
            "bucket": self.conn.bucket,
            "key": key,
            "size": plan.stored_size,
            "sha256": stored_sha,
            "checksum": checksum,
            "uploaded": utcnow().isoformat(),
            "storage_class": self.options.storage_class or "STANDARD",
            "server_side_encryption": self.options.sse or None,
        }
        remote_manifest = dict(plan.manifest)
        remote_manifest["offsite"] = record
        if self.key:
            remote_manifest["encryption"] = dict(_crypto.describe(self.key), ciphertext={"size": plan.stored_size, "sha256": stored_sha})
        else:
            remote_manifest["encryption"] = None
        entry = RemoteEntry(plan.store, plan.name, key, "", local_now(), plan.stored_size, None, None, remote_manifest)
        report = new_report(entry)
        check_object(self.remote, entry, report)
        if report["problems"]:
            self._drop(key)
            raise VerifyError(
                "the copy of %s on S3 does not match what was sent (%s); the remote object was deleted and "
                "the local backup is the only good copy" % (plan.name, "; ".join(report["problems"]))
            )
        self._put_manifest(plan, remote_manifest)
        ended = utcnow()
        return {
            "path": plan.path,
            "name": plan.name,
            "store": plan.store,
            "url": self.conn.url(plan.store, plan.name),
            "key": key,
            "size": plan.manifest["artifact"]["size"],
            "sha256": expected_sha,
            "stored_size": plan.stored_size,
            "stored_sha256": stored_sha,
            "checksum": checksum,
            "encrypted": self.key is not None,
            "key_id": self.key.key_id if self.key else None,
            "duration": round((ended - started).total_seconds(), 3),
        }

    def client_abort(self, key: str, upload_id: str) -> None:
        try:
            self.remote.client.abort_multipart_upload(Bucket=self.conn.bucket, Key=key, UploadId=upload_id)
        except (s3.ClientError, s3.BotoCoreError):
            pass  # the prune entry point removes stale uploads later

    def _drop(self, key: str) -> None:
        try:
            self.remote.delete(key)
        except BackupError:
            pass

    def _put_manifest(self, plan: Planned, manifest: dict[str, t.Any]) -> None:
        key = self.conn.key(plan.store, plan.name + _manifest.SUFFIX)
        body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
        args = dict(Bucket=self.conn.bucket, Key=key, Body=body, ContentType="application/json", **self.options.object_args())
        digest = hashlib.sha256(body).digest()
        if self.options.checksum == "sha256":
            args.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=s3.b64(digest))
        else:
            args["ContentMD5"] = s3.b64(hashlib.md5(body, usedforsecurity=False).digest())
        self.remote.call("uploading the manifest %s" % key, "put_object", **args)
        head = self.remote.head(key, "checking %s" % key)
        ok = head is not None and int(head.get("ContentLength", -1)) == len(body)
        if ok and self.options.checksum == "sha256":
            ok = s3.same_checksum(head.get("ChecksumSHA256"), s3.b64(digest))
        if not ok:
            self._drop(key)
            self._drop(self.conn.key(plan.store, plan.name))
            raise VerifyError("the manifest of %s did not arrive intact on S3; the copy was removed, the local backup is the good copy" % plan.name)

    def _stored_chunks(self, plan: Planned, plain: t.Any) -> t.Iterator[bytes]:
        encryptor = _crypto.Encryptor(self.key) if self.key else None
        with open(plan.path, "rb") as handle:
            while True:
                data = handle.read(CHUNK)
                if not data:
                    break
                plain.update(data)
                out = encryptor.update(data) if encryptor else data
                if out:
                    yield out
        if encryptor:
            yield encryptor.finish()

    def _send_parts(self, plan: Planned, key: str, upload_id: str) -> tuple[list[t.Any], str, str]:
        """Send the stored bytes part by part; returns the parts, the stored and plaintext sha256."""
        if self.key is None:
            return self._send_file_parts(plan, key, upload_id)
        return self._send_spooled_parts(plan, key, upload_id)

    def _upload_part(self, key: str, upload_id: str, number: int, body: t.Any, size: int, sha: bytes, md5: bytes) -> SentPart:
        args: dict[str, t.Any] = dict(Bucket=self.conn.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=size)
        if self.options.checksum == "sha256":
            args.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=s3.b64(sha))
        else:
            args["ContentMD5"] = s3.b64(md5)
        response = self.remote.call("uploading part %d of %s" % (number, key), "upload_part", **args)
        return SentPart(number, size, sha, md5, response["ETag"])

    def _send_file_parts(self, plan: Planned, key: str, upload_id: str) -> tuple[list[t.Any], str, str]:
        """Plaintext: each part is read twice from the backup itself - once to hash it, once to
        send it - so nothing is copied. S3 refuses a part whose bytes differ from its SHA-256
        (or Content-MD5), so a file that changes between the two reads cannot slip through."""
        whole = hashlib.sha256()
        parts: list[t.Any] = []
        with open(plan.path, "rb") as handle:
            for index in range(plan.parts):
                start = index * plan.part_size
                size = min(plan.part_size, plan.stored_size - start)
                sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
                handle.seek(start)
                left = size
                while left:
                    data = handle.read(min(CHUNK, left))
                    if not data:
                        raise StageError("%s ended early while reading part %d: it changed during the upload" % (plan.path, index + 1))
                    sha.update(data)
                    md5.update(data)
                    whole.update(data)
                    left -= len(data)
                body = s3.FileRange(handle, start, size)
                parts.append(self._upload_part(key, upload_id, index + 1, body, size, sha.digest(), md5.digest()))
            if handle.read(1):
                raise StageError("%s grew during the upload" % plan.path)
        digest = whole.hexdigest()
        return parts, digest, digest

    def _send_spooled_parts(self, plan: Planned, key: str, upload_id: str) -> tuple[list[t.Any], str, str]:
        """Encrypted: the ciphertext of one part goes to a spool file while it is hashed, then is
        sent from there; memory stays at one chunk, disk at one part."""
        plain, stored = hashlib.sha256(), hashlib.sha256()
        parts: list[t.Any] = []
        spool_dir = self.options.spool_dir or os.path.dirname(os.path.abspath(plan.path))
        chunks = self._stored_chunks(plan, plain)
        pending = b""
        number = 0
        total = 0
        with tempfile.TemporaryFile(dir=spool_dir, prefix=".cclite-offsite-") as spool:
            while True:
                spool.seek(0)
                spool.truncate()
                sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
                size = 0
                while size < plan.part_size:
                    if not pending:
                        pending = next(chunks, b"")
                        if not pending:
                            break
                    take = pending[: plan.part_size - size]
                    pending = pending[len(take):]
                    spool.write(take)
                    sha.update(take)
                    md5.update(take)
                    stored.update(take)
                    size += len(take)
                if size == 0 and number > 0:
                    break
                number += 1
                total += size
                spool.flush()
                parts.append(self._upload_part(key, upload_id, number, s3.FileRange(spool, 0, size), size, sha.digest(), md5.digest()))
                if size < plan.part_size:
                    break
        if total != plan.stored_size:
            raise StageError("%s: sent %d bytes, expected %d: the file changed during the upload" % (plan.path, total, plan.stored_size))
        return parts, stored.hexdigest(), plain.hexdigest()


@dataclasses.dataclass
class SentPart(s3.Part):
    etag: str = ""


def upload(remote: Remote, options: Options, key: _crypto.Key | None, path: str, force: bool, check_mode: bool) -> dict[str, t.Any]:
    try:
        return _upload(remote, options, key, path, force, check_mode)
    except BackupError as exc:
        if "local backup" not in exc.msg:
            exc.msg = "%s; %s was not copied off-site, the local backup is unchanged" % (exc.msg, os.path.basename(path))
            exc.args = (exc.msg,)
        raise


def _upload(remote: Remote, options: Options, key: _crypto.Key | None, path: str, force: bool, check_mode: bool) -> dict[str, t.Any]:
    uploader = Uploader(remote, options, key)
    if check_mode and not os.path.exists(path):  # the backup of this check-mode run was only predicted
        return {"changed": True, "artifact": {"path": path, "name": os.path.basename(path), "duration": None},
                "msg": "would upload %s once it exists (check mode)" % os.path.basename(path)}
    plan = uploader.plan(path)
    existing = None if force else uploader.existing(plan)
    base = {
        "path": plan.path,
        "name": plan.name,
        "store": plan.store,
        "url": remote.conn.url(plan.store, plan.name),
        "key": remote.conn.key(plan.store, plan.name),
        "size": plan.manifest["artifact"]["size"],
        "sha256": plan.manifest["artifact"]["sha256"],
        "part_size": plan.part_size,
        "parts": plan.parts,
        "encrypted": key is not None,
        "key_id": key.key_id if key else None,
        "duration": None,
    }
    if existing is not None:
        rec = existing.record
        enc = existing.encryption
        base.update(stored_size=rec.get("size"), stored_sha256=rec.get("sha256"), checksum=rec.get("checksum"),
                    encrypted=enc is not None, key_id=enc.get("key_id") if enc else None)
        return {"changed": False, "artifact": base, "msg": "%s is already on S3 and verifies; nothing to do" % plan.name}
    if check_mode:
        base.update(stored_size=plan.stored_size, stored_sha256=None, checksum=None)
        return {"changed": True, "artifact": base, "msg": "would upload %s to %s (check mode)" % (plan.name, base["url"])}
    with StoreLock(os.path.dirname(os.path.abspath(path)), plan.store, "%s off-site upload" % plan.store, 600):
        result = uploader.upload(plan)
    result.update(part_size=plan.part_size, parts=plan.parts)
    how = "encrypted (key id %s), " % key.key_id if key else ""
    return {
        "changed": True,
        "artifact": result,
        "msg": "uploaded %s to %s, %s%d part(s) of %d bytes, checksum %s verified"
        % (plan.name, result["url"], how, plan.parts, plan.part_size, result["checksum"]["value"]),
    }


# Listing and checks -------------------------------------------------------------------------


def inspect(
    remote: Remote,
    store: str,
    level: str,
    max_age_hours: float,
    key: _crypto.Key | None,
    sample: int = 1,
    now: datetime.datetime | None = None,
    rng: random.Random | None = None,
) -> dict[str, t.Any]:
    """List a store's copies on S3 and check them at ``level`` (none, quick, full)."""
    now = now or local_now()
    entries = remote.entries(store, load_manifests=level != "none")
    backups = []
    problems: list[str] = []
    if not entries and level != "none":
        problems.append("no %s copy on %s" % (store, remote.conn.url(store)))
    newest: dict[str, RemoteEntry] = {}
    for entry in entries:
        newest.setdefault(entry.series, entry)
    downloads: set[str] = set()
    if level == "full" and sample > 0:
        # the newest copy of each series always, then others at random up to ``sample``
        downloads = {e.name for e in newest.values() if e.manifest or e.legacy}
        others = [e.name for e in entries if (e.manifest or e.legacy) and e.name not in downloads]
        (rng or random.Random()).shuffle(others)
        downloads.update(others[: max(0, sample - len(downloads))])
    for entry in entries:
        item = entry.as_dict(remote.conn)
        if level != "none":
            report = new_report(entry)
            if newest.get(entry.series) is entry:
                age = (now - entry.created).total_seconds() / 3600.0
                if age > max_age_hours:
                    report["checks"]["age"] = "failed"
                    report["problems"].append(
                        "%s: the newest copy on S3 is %.1f hours old (limit %g): off-site copies are not being made"
                        % (entry.name, age, max_age_hours)
                    )
                else:
                    report["checks"]["age"] = "ok"
            check_object(remote, entry, report)
            enc = entry.encryption
            if enc and not report["problems"]:
                if key is None or key.key_id != enc.get("key_id"):
                    report["checks"]["key"] = "failed"
                    report["problems"].append(
                        "%s: encrypted with key id %s, which the configured key (%s) cannot decrypt: a restore would fail"
                        % (entry.name, enc.get("key_id"), key.key_id if key else "none")
                    )
                else:
                    report["checks"]["key"] = "ok"
            if entry.name in downloads and not report["problems"] and entry.legacy:
                if entry.stream is None:
                    check_stream(remote, entry)
                apply_stream(entry, report)
            elif entry.name in downloads and not report["problems"]:
                try:
                    download(remote, entry, key, None)
                    report["checks"]["download"] = "ok"
                except BackupError as exc:
                    report["checks"]["download"] = "failed"
                    report["problems"].append("%s: %s" % (entry.name, exc.msg))
            elif entry.legacy and level == "full" and not report["problems"]:
                report["checks"]["stream"] = "skipped"
                report["notes"].append("%s: stream not checked: not in this run's download sample" % entry.name)
            item["verification"] = settle(report)
            problems.extend(report["problems"])
        backups.append(item)
    return {
        "store": store,
        "directory": remote.conn.url(store),
        "backups": backups,
        "latest": backups[0] if backups else None,
        "problems": problems,
        "healthy": not problems,
    }


# Download into the local catalog ------------------------------------------------------------


def is_latest(name: str) -> bool:
    return name == "latest" or bool(re.fullmatch(r"latest(_.+)?\.[a-z]+(\.gz|\.zst)?", name))


def resolve(remote: Remote, store: str, name: str, series: t.Sequence[str]) -> list[list[RemoteEntry]]:
    """What to download: for ``latest``, the candidates of each series newest first - legacy
    copies that pass the cheap checks, ending with the newest good copy that has a manifest
    (the first one whose stream checks out is taken); or the one named copy."""
    if not name:
        raise ConfigError("no backup name given: use a file name from the list, or 'latest'")
    if "/" in name or name in (".", ".."):
        raise ConfigError("%r is not a backup file name: give a name from the list, without directories" % name)
    entries = remote.entries(store)
    if is_latest(name):
        named = re.fullmatch(r"latest_(.+?)\.[a-z]+(?:\.gz|\.zst)?", name)
        if named and not series:
            series = [named.group(1)]  # latest_<series>.sql.gz names one series
        chosen = []
        by_series: dict[str, list[RemoteEntry]] = {}
        for entry in entries:
            by_series.setdefault(entry.series, []).append(entry)
        wanted = list(series) or sorted(by_series)
        for one in wanted:
            candidates = []
            for entry in by_series.get(one, []):
                report = new_report(entry)
                check_object(remote, entry, report)
                if report["problems"]:
                    continue
                candidates.append(entry)
                if not entry.legacy and settle(report)["state"] == "good":
                    break
            if not candidates:
                raise ConfigError(
                    "no good %s copy%s on %s: list.yml shows what is there"
                    % (store, " of series %s" % one if one else "", remote.conn.url(store))
                )
            chosen.append(candidates)
        if not chosen:
            raise ConfigError("there is no %s copy on %s" % (store, remote.conn.url(store)))
        return chosen
    found = next((e for e in entries if e.name == name), None)
    if found is None:
        if not name_pattern(layout_for(store)).fullmatch(name):
            raise ConfigError("%r is not a %s backup name" % (name, store))
        raise ConfigError("%s is not on %s: list.yml shows what is there" % (name, remote.conn.url(store)))
    report = new_report(found)
    check_object(remote, found, report)
    if report["problems"]:
        raise VerifyError("refusing to download %s: %s" % (name, "; ".join(report["problems"])))
    return [[found]]


def fetch(
    remote: Remote,
    root: str,
    store: str,
    name: str,
    key: _crypto.Key | None,
    series: t.Sequence[str] = (),
    move_latest: bool = True,
    file_mode: int = 0o600,
    check_mode: bool = False,
    lock_timeout: float = 600.0,
) -> dict[str, t.Any]:
    """Download copies into the local catalog. A copy with a manifest is checked against it and
    gets a local manifest; a legacy copy is checked to the end of its compressed stream and
    lands as a local legacy backup (no manifest: nothing vouches for its content but its
    stream, and the local adopt is the one place that makes a backup first-class)."""
    layout = layout_for(store)
    chosen = resolve(remote, store, name, series)
    # every key problem shows before the first byte is downloaded
    for candidates in chosen:
        for entry in candidates:
            enc = entry.encryption
            if enc:
                _crypto.check_key(key, enc.get("key_id", "?"), remote.conn.url(store, entry.name))
    fetched = []
    changed = False
    for candidates in chosen:
        skipped: list[str] = []
        for entry in candidates:
            item = _fetch_one(remote, root, layout, entry, key, name, move_latest, file_mode, check_mode, lock_timeout)
            if item is None:  # a legacy candidate whose stream is broken: the next one, if any
                skipped.append("%s: %s" % (entry.name, (entry.stream or {}).get("error")))
                continue
            item["skipped"] = skipped
            changed = changed or item.pop("changed")
            fetched.append(item)
            break
        else:
            if not is_latest(name):
                raise VerifyError("refusing %s: %s; nothing was downloaded into the catalog" % (name, "; ".join(skipped)))
            raise VerifyError(
                "no good %s copy on %s: %s; nothing was downloaded into the catalog"
                % (store, remote.conn.url(store), "; ".join(skipped))
            )
    names = ", ".join(i["name"] for i in fetched)
    if check_mode:
        msg = "would download %s from %s (check mode)" % (names, remote.conn.url(store))
    elif any(i["downloaded"] for i in fetched):
        how = "; ".join(
            "%s: %s" % (i["name"], "no manifest on S3 (a legacy copy), the compressed stream is intact" if i["legacy"]
                        else "sha256 matches the manifest")
            for i in fetched if i["downloaded"]
        )
        msg = "downloaded %s from %s; %s" % (names, remote.conn.url(store), how)
    else:
        msg = "%s already in %s with the same content" % (names, os.path.join(root, layout.relative_dir))
    return {"changed": changed, "store": store, "backups": fetched, "msg": msg}


def _fetch_one(
    remote: Remote, root: str, layout: Layout, entry: RemoteEntry, key: _crypto.Key | None, name: str,
    move_latest: bool, file_mode: int, check_mode: bool, lock_timeout: float,
) -> dict[str, t.Any] | None:
    catalog = Catalog(root, layout, entry.series)
    path = os.path.join(catalog.directory, entry.name)
    legacy = entry.legacy
    artifact = (entry.manifest or {}).get("artifact", {})
    item = {"name": entry.name, "path": path, "url": remote.conn.url(layout.store, entry.name), "series": entry.series,
            "size": entry.size if legacy else artifact["size"], "sha256": None if legacy else artifact["sha256"],
            "encrypted": entry.encryption is not None, "legacy": legacy, "downloaded": False, "latest": None,
            "changed": False}
    if os.path.isfile(path) and (_matches_local(remote, entry, path)[0] if legacy else _same_file(path, item["sha256"])):
        item["state"] = "present"
        if legacy:
            item["sha256"] = _file_digests(path, 0)["sha256"]
    elif os.path.lexists(path):
        raise VerifyError(
            "%s exists locally with other content than the copy on S3: move it away first; nothing was downloaded" % path
        )
    else:
        item["state"] = "download"
    if check_mode:
        if legacy and item["state"] == "download":
            # the prediction needs the stream checked: the download is made, nothing is written
            if entry.stream is None:
                check_stream(remote, entry)
            if entry.stream and entry.stream.get("error"):
                return None
            item["sha256"] = entry.stream["sha256"] if entry.stream else None
        item["changed"] = item["state"] == "download"
        return item
    catalog.ensure()
    with StoreLock(catalog.directory, layout.store, "%s download from S3" % layout.store, lock_timeout):
        if item["state"] == "download":
            if legacy:
                stream = _download_legacy_into(remote, entry, path, file_mode)
                if stream.get("error"):
                    return None
                item["sha256"] = stream["sha256"]
            else:
                _download_into(remote, entry, key, path, file_mode)
            item["downloaded"] = True
            item["changed"] = True
        elif not legacy and _manifest.read(path) is None:
            _write_local_manifest(remote, entry, path, file_mode)
            item["changed"] = True
        if move_latest and is_latest(name):
            link = os.path.join(catalog.directory, catalog.latest_name(EXTENSIONS[algorithm_of(entry.name)]))
            if not (os.path.islink(link) and os.readlink(link) == entry.name):
                catalog.point_latest(path)
                item["changed"] = True
            item["latest"] = link
    return item


def _same_file(path: str, sha256: str) -> bool:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest() == sha256


def _file_digests(path: str, part_size: int) -> dict[str, t.Any]:
    """One pass over a local file: its sha256 and md5, and with ``part_size`` the ETag S3
    gives it when uploaded in parts of that size."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    part_md5s: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
            while part_size and block:
                take = block[: part_size - in_part]
                block = block[len(take):]
                part.update(take)
                in_part += len(take)
                if in_part == part_size:
                    part_md5s.append(part.digest())
                    part = hashlib.md5(usedforsecurity=False)
                    in_part = 0
    if in_part:
        part_md5s.append(part.digest())
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(),
            "etag": s3.multipart_etag(part_md5s) if part_size and part_md5s else None}


def _part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes that split ``size`` bytes into ``parts`` parts: the aws cli's 8 MiB first,
    then the whole-MiB size the aws cli picks for files too big for 10,000 parts of 8 MiB."""
    found: list[int] = []
    if parts < 1:
        return found
    per_part = -(-size // parts)
    for part_size in (AWS_CLI_PART, -(-per_part // s3.MiB) * s3.MiB):
        if part_size >= s3.MIN_PART and -(-size // part_size) == parts and part_size not in found:
            found.append(part_size)
    return found


def _matches_local(remote: Remote, entry: RemoteEntry, path: str) -> tuple[bool, str, dict[str, t.Any]]:
    """Whether a legacy copy holds the same bytes as a local file, cheapest proof first: the
    size, then the ETag (the MD5 of a single-part upload, or the multipart ETag computed from
    the local file with the aws cli's part size), else a streamed download's sha256. Returns
    (match, how, the local file's digests)."""
    size = os.path.getsize(path)
    if size != entry.size:
        return False, "S3 holds %d bytes, the local file %d" % (entry.size, size), {}
    etag = entry.etag
    head = entry.head or {}
    kms = head.get("ServerSideEncryption") == "aws:kms"
    if etag and not kms and "-" not in etag:
        local = _file_digests(path, 0)
        if local["md5"] == etag:
            return True, "etag", local
        return False, "the ETag %s differs from the local file's MD5 %s" % (etag, local["md5"]), local
    if etag and not kms:
        try:
            parts = int(etag.rsplit("-", 1)[1])
        except ValueError:
            parts = 0
        local: dict[str, t.Any] = {}
        for part_size in _part_sizes(size, parts):
            local = _file_digests(path, part_size)
            if local["etag"] == etag:
                local["part_size"], local["parts"] = part_size, parts
                return True, "multipart etag", local
    # the ETag proves nothing here (SSE-KMS, unknown part size): compare a download's sha256
    local = _file_digests(path, 0)
    stream = check_stream(remote, entry)
    if stream["sha256"] != local["sha256"]:
        return False, "the downloaded copy has sha256 %s, the local file %s" % (stream["sha256"], local["sha256"]), local
    return True, "sha256", local


def _local_manifest(remote: Remote, entry: RemoteEntry) -> dict[str, t.Any]:
    manifest = dict(entry.manifest or {})
    record = dict(manifest.pop("offsite", {}) or {})
    record["encryption"] = manifest.get("encryption")
    record["fetched"] = utcnow().isoformat()
    record["url"] = remote.conn.url(entry.store, entry.name)
    manifest["encryption"] = None  # the local copy is plaintext
    manifest["fetched_from"] = record
    return manifest


def _write_local_manifest(remote: Remote, entry: RemoteEntry, path: str, mode: int) -> None:
    _manifest.write(path, _local_manifest(remote, entry), mode)


def _download_into(remote: Remote, entry: RemoteEntry, key: _crypto.Key | None, path: str, mode: int) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".partial")
    manifest_path = _manifest.path_for(path)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            fd = -1
            download(remote, entry, key, out)
            out.flush()
            os.fsync(out.fileno())
        _write_local_manifest(remote, entry, path, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(manifest_path) and not os.path.exists(path):
            os.unlink(manifest_path)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _download_legacy_into(remote: Remote, entry: RemoteEntry, path: str, mode: int) -> dict[str, t.Any]:
    """Download a legacy copy into a temp file while checking its stream; rename it into place
    only when the stream is intact. Returns the stream check (``error`` set: nothing written)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".partial")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            fd = -1
            stream = check_stream(remote, entry, out)
            out.flush()
            os.fsync(out.fileno())
        if not stream.get("error"):
            os.rename(tmp, path)
        return stream
    except OSError as exc:
        raise StageError("writing %s failed: %s; check free space and permissions there" % (path, exc.strerror or exc)) from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


# Adopting the copies made by the guide's scripts ------------------------------------------


def adopt(
    remote: Remote,
    root: str,
    store: str,
    fetch_missing: bool = False,
    file_mode: int = 0o600,
    check_mode: bool = False,
    lock_timeout: float = 600.0,
) -> dict[str, t.Any]:
    """Give each legacy copy of ``store`` a remote manifest when the local catalog holds the
    same file with a manifest (made by the collection or by the local adopt) and the object is
    proven to hold the same bytes. The object itself is never rewritten. A copy without such a
    local counterpart is checked to the end of its stream and reported as needing the local
    adopt first, or (``fetch_missing``) downloaded into the catalog as a local legacy backup."""
    layout = layout_for(store)
    items = []
    problems: list[str] = []
    changed = False
    for entry in remote.entries(store):
        if not entry.legacy:
            continue
        catalog = Catalog(root, layout, entry.series)
        path = os.path.join(catalog.directory, entry.name)
        item: dict[str, t.Any] = {"name": entry.name, "url": remote.conn.url(store, entry.name), "key": entry.key,
                                  "series": entry.series, "size": entry.size, "local": path, "sha256": None,
                                  "matched_by": None}
        try:
            local_manifest = _manifest.read(path) if os.path.isfile(path) else None
        except VerifyError as exc:
            item.update(state="mismatch", reason=exc.msg)
            problems.append("%s: %s" % (entry.name, exc.msg))
            items.append(item)
            continue
        if local_manifest is not None:
            item.update(_adopt_one(remote, entry, path, local_manifest, check_mode))
            if item["state"] == "adopted":
                changed = True
            else:
                problems.append("%s: %s" % (entry.name, item["reason"]))
        elif os.path.lexists(path):
            item.update(state="needs_local_adoption",
                        reason="the local catalog holds %s without a manifest: run the local adopt of %s, then this again" % (path, store))
        elif fetch_missing:
            if check_mode:
                item.update(state="fetched", reason="would download it into %s as a legacy backup (check mode)" % catalog.directory)
                changed = True
            else:
                catalog.ensure()
                with StoreLock(catalog.directory, store, "%s download from S3" % store, lock_timeout):
                    stream = _download_legacy_into(remote, entry, path, file_mode)
                if stream.get("error"):
                    item.update(state="bad", reason=stream["error"])
                    problems.append("%s: %s" % (entry.name, stream["error"]))
                else:
                    changed = True
                    item.update(state="fetched", sha256=stream["sha256"],
                                reason="downloaded into %s as a legacy backup (stream intact): run the local adopt of %s, "
                                       "then this again" % (catalog.directory, store))
        else:
            stream = entry.stream or check_stream(remote, entry)
            if stream.get("error"):
                item.update(state="bad", reason=stream["error"])
                problems.append("%s: %s" % (entry.name, stream["error"]))
            else:
                item.update(state="needs_local_adoption", sha256=stream["sha256"],
                            reason="no local backup of that name with a manifest: needs local adoption first - fetch it "
                                   "(s3_backup_fetch name=%s, or fetch_missing=true) and run the local adopt of %s"
                                   % (entry.name, store))
        items.append(item)
    adopted = [i["name"] for i in items if i["state"] == "adopted"]
    waiting = [i["name"] for i in items if i["state"] in ("needs_local_adoption", "fetched")]
    return {"store": store, "directory": remote.conn.url(store), "changed": changed, "backups": items,
            "adopted": adopted, "waiting": waiting, "problems": problems}


def _adopt_one(remote: Remote, entry: RemoteEntry, path: str, local_manifest: dict[str, t.Any], check_mode: bool) -> dict[str, t.Any]:
    """Prove a legacy copy holds the bytes of a local backup with a manifest, then upload the
    remote manifest for it (the local one plus the offsite record) and check the result."""
    expected = local_manifest.get("artifact", {})
    if local_manifest.get("encryption"):
        return {"state": "mismatch", "reason": "the local manifest describes an encrypted file; the copy on S3 is plaintext"}
    match, how, local = _matches_local(remote, entry, path)
    if not match:
        return {"state": "mismatch", "reason": "%s: the copy on S3 is not the local backup; left as it is" % how}
    if local.get("sha256") != expected.get("sha256") or os.path.getsize(path) != expected.get("size"):
        return {"state": "mismatch",
                "reason": "%s no longer matches its local manifest (sha256 %s, the manifest says %s): check the local backup first"
                          % (path, local.get("sha256"), expected.get("sha256"))}
    head = entry.head or remote.head(entry.key, "checking %s" % entry.key) or {}
    etag = entry.etag
    checksum: dict[str, t.Any] = {"algorithm": "MD5", "type": "ETAG", "value": etag}
    if "-" in etag:
        checksum.update(parts=local.get("parts"), part_size=local.get("part_size"))
    else:
        checksum.update(parts=1, part_size=entry.size)
    last_modified = head.get("LastModified") or entry.last_modified
    record = {
        "bucket": remote.conn.bucket,
        "key": entry.key,
        "size": entry.size,
        "sha256": local["sha256"],
        "checksum": checksum,
        "uploaded": last_modified.isoformat() if isinstance(last_modified, datetime.datetime) else None,
        "storage_class": head.get("StorageClass") or "STANDARD",
        "server_side_encryption": head.get("ServerSideEncryption"),
        "adopted": True,
        "adopted_at": utcnow().isoformat(),
        "matched_by": how,
    }
    remote_manifest = {k: v for k, v in local_manifest.items() if k != "fetched_from"}
    remote_manifest["offsite"] = record
    remote_manifest["encryption"] = None
    result = {"state": "adopted", "sha256": local["sha256"], "matched_by": how,
              "reason": "the copy on S3 matches the local backup (%s); %s" % (
                  how, "would upload its manifest (check mode)" if check_mode else "its manifest was uploaded")}
    if check_mode:
        return result
    manifest_key = entry.key + _manifest.SUFFIX
    body = (json.dumps(remote_manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    remote.call("uploading the manifest %s" % manifest_key, "put_object", Bucket=remote.conn.bucket, Key=manifest_key,
                Body=body, ContentType="application/json",
                ContentMD5=s3.b64(hashlib.md5(body, usedforsecurity=False).digest()))
    adopted = dataclasses.replace(entry, manifest_key=manifest_key, manifest=remote_manifest, head=None, stream=None)
    report = new_report(adopted)
    check_object(remote, adopted, report)
    if settle(report)["state"] != "good" and not (record["server_side_encryption"] == "aws:kms" and not report["problems"]):
        try:
            remote.delete(manifest_key)
        except BackupError:
            pass
        return {"state": "mismatch", "reason": "the adopted copy does not check out (%s); its manifest was removed again"
                                               % "; ".join(report["problems"] or report["notes"])}
    return result


# Retention ----------------------------------------------------------------------------------


def prune(
    remote: Remote,
    store: str,
    retention_days: int,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
) -> dict[str, t.Any]:
    """Delete copies older than ``retention_days`` from S3, never the newest good one of each
    series; when no copy of a series checks out as good, keep all of them."""
    now = now or local_now()
    cutoff = datetime.timedelta(days=retention_days)
    entries = remote.entries(store)
    by_series: dict[str, list[RemoteEntry]] = {}
    for entry in entries:
        by_series.setdefault(entry.series, []).append(entry)
    deleted: list[str] = []
    protected: list[str] = []
    reasons: list[str] = []
    for series, items in sorted(by_series.items()):
        label = "%s%s" % (store, " (%s)" % series if series else "")
        expired = [e for e in items if now - e.created > cutoff]
        if not expired:
            reasons.append("%s: no copy is older than %d days" % (label, retention_days))
            continue
        keep = next((e for e in items if is_good(remote, e)), None)
        if keep is None:
            reasons.append("%s: no copy on S3 checks out as good: kept all %d expired copies" % (label, len(expired)))
            continue
        protected.append(keep.name)
        for entry in expired:
            if entry is keep:
                continue
            deleted.append(entry.name)
            if not dry_run:
                if entry.manifest_key:
                    remote.delete(entry.manifest_key)  # the manifest first: a half-deleted copy is never "good"
                remote.delete(entry.key)
        reasons.append("%s: kept %s, the newest good copy" % (label, keep.name))
    aborted = [] if dry_run else _abort_stale_uploads(remote, store, now)
    return {
        "store": store,
        "deleted": deleted,
        "protected": protected,
        "aborted_uploads": aborted,
        "reason": "; ".join(reasons) or "no copy on S3",
    }


def _abort_stale_uploads(remote: Remote, store: str, now: datetime.datetime) -> list[str]:
    """Multipart uploads a killed run left behind (they cost storage but are invisible)."""
    try:
        page = remote.client.list_multipart_uploads(Bucket=remote.conn.bucket, Prefix=remote.conn.store_prefix(store))
    except (s3.ClientError, s3.BotoCoreError):
        return []  # some S3-compatible stores do not list uploads: a lifecycle rule covers it
    aborted = []
    for upload in page.get("Uploads", []):
        initiated = upload.get("Initiated")
        if initiated is not None and now - initiated > STALE_UPLOAD:
            remote.call("aborting a stale upload of %s" % upload["Key"], "abort_multipart_upload",
                        Bucket=remote.conn.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted.append(upload["Key"])
    return aborted


# Lifecycle rule -----------------------------------------------------------------------------


def lifecycle_rule(rule_id: str, prefix: str, days: int, abort_days: int) -> dict[str, t.Any]:
    rule: dict[str, t.Any] = {"ID": rule_id, "Filter": {"Prefix": prefix}, "Status": "Enabled", "Expiration": {"Days": days}}
    if abort_days > 0:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    return rule


def lifecycle(remote: Remote, rule_id: str, days: int, abort_days: int, state: str, check_mode: bool) -> dict[str, t.Any]:
    """Put (or remove) one rule of the bucket's lifecycle configuration, keeping the others."""
    if state == "present" and days < 1:
        raise ConfigError("a lifecycle rule needs at least 1 day of expiration, got %d" % days)
    bucket = remote.conn.bucket
    try:
        rules = remote.client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except s3.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise remote.conn.error(exc, "reading the lifecycle rules of %s" % bucket) from exc
        rules = []
    except s3.BotoCoreError as exc:
        raise remote.conn.error(exc, "reading the lifecycle rules of %s" % bucket) from exc
    others = [r for r in rules if r.get("ID") != rule_id]
    current = next((r for r in rules if r.get("ID") == rule_id), None)
    wanted = lifecycle_rule(rule_id, remote.conn.base + "/", days, abort_days) if state == "present" else None

    def normal(rule: dict[str, t.Any] | None) -> t.Any:
        if rule is None:
            return None
        keys = ("ID", "Filter", "Status", "Expiration", "AbortIncompleteMultipartUpload")
        return json.dumps({k: rule.get(k) for k in keys}, sort_keys=True, default=str)

    changed = normal(current) != normal(wanted)
    if changed and not check_mode:
        new_rules = others + ([wanted] if wanted else [])
        if new_rules:
            remote.call("writing the lifecycle rules of %s" % bucket, "put_bucket_lifecycle_configuration",
                        Bucket=bucket, LifecycleConfiguration={"Rules": new_rules})
        else:
            remote.call("removing the lifecycle rules of %s" % bucket, "delete_bucket_lifecycle", Bucket=bucket)
    return {"changed": changed, "rule": wanted, "previous": current, "other_rules": len(others)}
