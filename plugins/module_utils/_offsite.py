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

The manifest is uploaded last, once the artifact is complete and its checksum checked: a copy
without a manifest is incomplete and never counts as good. The local artifact stays as it was
(plaintext): it remains the good copy when an upload fails.
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
from ansible_collections.cclite.backup.plugins.module_utils._artifact import CHUNK, EXTENSIONS, algorithm_of, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._catalog import POSTGRESQL, QDRANT, REDIS, SERIES_RE, STAMP, Catalog, Layout, local_now
from ansible_collections.cclite.backup.plugins.module_utils._errors import BackupError, ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._lock import StoreLock

LAYOUTS = {layout.store: layout for layout in (POSTGRESQL, REDIS, QDRANT)}
STORES = tuple(LAYOUTS)
STALE_UPLOAD = datetime.timedelta(days=1)


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
            "legacy": self.manifest is None and self.manifest_error is None,
            "manifest": conn.url(self.store, self.name + _manifest.SUFFIX) if self.manifest_key else None,
            "encrypted": enc is not None,
            "key_id": enc.get("key_id") if enc else None,
            "storage_class": self.record.get("storage_class"),
        }


class Remote:
    """The objects of the off-site copy, with the calls that read and write them."""

    def __init__(self, conn: s3.Connection, client: t.Any = None) -> None:
        self.conn = conn
        self.client = client if client is not None else conn.client()

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
            )
            if load_manifests and entry.manifest_key:
                try:
                    entry.manifest = self.get_json(entry.manifest_key)
                except VerifyError as exc:
                    entry.manifest_error = exc.msg
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


def new_report(entry: RemoteEntry) -> dict[str, t.Any]:
    return {"state": "unverified", "checks": {}, "problems": [], "notes": []}


def settle(report: dict[str, t.Any]) -> dict[str, t.Any]:
    if report["problems"]:
        report["state"] = "bad"
    elif report["checks"].get("checksum") == "ok" or report["checks"].get("download") == "ok":
        report["state"] = "good"
    return report


def is_good(remote: Remote, entry: RemoteEntry) -> bool:
    report = new_report(entry)
    check_object(remote, entry, report)
    return settle(report)["state"] == "good"


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
        downloads = {e.name for e in newest.values() if e.manifest}
        others = [e.name for e in entries if e.manifest and e.name not in downloads]
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
            if entry.name in downloads and not report["problems"]:
                try:
                    download(remote, entry, key, None)
                    report["checks"]["download"] = "ok"
                except BackupError as exc:
                    report["checks"]["download"] = "failed"
                    report["problems"].append("%s: %s" % (entry.name, exc.msg))
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


def resolve(remote: Remote, store: str, name: str, series: t.Sequence[str]) -> list[RemoteEntry]:
    """What to download: the newest good copy of each series for ``latest``, or one named copy."""
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
            good = next((e for e in by_series.get(one, []) if is_good(remote, e)), None)
            if good is None:
                raise ConfigError(
                    "no good %s copy%s on %s: list.yml shows what is there"
                    % (store, " of series %s" % one if one else "", remote.conn.url(store))
                )
            chosen.append(good)
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
    return [found]


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
    layout = layout_for(store)
    chosen = resolve(remote, store, name, series)
    # every key problem shows before the first byte is downloaded
    for entry in chosen:
        enc = entry.encryption
        if enc:
            _crypto.check_key(key, enc.get("key_id", "?"), remote.conn.url(store, entry.name))
    fetched = []
    changed = False
    for entry in chosen:
        catalog = Catalog(root, layout, entry.series)
        path = os.path.join(catalog.directory, entry.name)
        item = {"name": entry.name, "path": path, "url": remote.conn.url(store, entry.name), "series": entry.series,
                "size": entry.manifest["artifact"]["size"], "sha256": entry.manifest["artifact"]["sha256"],
                "encrypted": entry.encryption is not None, "downloaded": False, "latest": None}
        if os.path.isfile(path) and _same_file(path, item["sha256"]):
            item["state"] = "present"
        elif os.path.lexists(path):
            raise VerifyError(
                "%s exists locally with other content than the copy on S3: move it away first; nothing was downloaded" % path
            )
        else:
            item["state"] = "download"
        if check_mode:
            changed = changed or item["state"] == "download"
            fetched.append(item)
            continue
        catalog.ensure()
        with StoreLock(catalog.directory, store, "%s download from S3" % store, lock_timeout):
            if item["state"] == "download":
                _download_into(remote, entry, key, path, file_mode)
                item["downloaded"] = True
                changed = True
            elif _manifest.read(path) is None:
                _write_local_manifest(remote, entry, path, file_mode)
                changed = True
            if move_latest and is_latest(name):
                link = os.path.join(catalog.directory, catalog.latest_name(EXTENSIONS[algorithm_of(entry.name)]))
                if not (os.path.islink(link) and os.readlink(link) == entry.name):
                    catalog.point_latest(path)
                    changed = True
                item["latest"] = link
        fetched.append(item)
    names = ", ".join(i["name"] for i in fetched)
    if check_mode:
        msg = "would download %s from %s (check mode)" % (names, remote.conn.url(store))
    elif any(i["downloaded"] for i in fetched):
        msg = "downloaded %s from %s; sha256 matches the manifest" % (names, remote.conn.url(store))
    else:
        msg = "%s already in %s with the same sha256" % (names, os.path.join(root, layout.relative_dir))
    return {"changed": changed, "store": store, "backups": fetched, "msg": msg}


def _same_file(path: str, sha256: str) -> bool:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest() == sha256


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
