# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checking a copy on S3: its object and manifest, the stream of a legacy copy, and downloads checked on the way."""

from __future__ import annotations

import hashlib
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import CHUNK, ArtifactReader, algorithm_of
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import Remote, RemoteEntry


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
