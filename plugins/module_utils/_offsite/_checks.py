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
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, algorithm_of, read_chunks
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import Remote, RemoteEntry


GOOD_WHEN = ("checksum", "download", "stream")  # a copy on S3 is good once one of these passed


def new_report(entry: RemoteEntry) -> Report:
    """An empty verification report for a copy on S3 (the model local backups use too)."""
    return Report(entry.name, entry.key, good_when=GOOD_WHEN)


def check_object(remote: Remote, entry: RemoteEntry, report: Report) -> None:
    """Existence, size and checksum of the stored object against its manifest, without a download."""
    if entry.manifest_error:
        report.failed("manifest", entry.manifest_error)
        return
    if entry.legacy:
        check_legacy(remote, entry, report)
        return
    if entry.manifest is None:
        report.failed("manifest", "no manifest on S3: the upload did not finish; this copy cannot be trusted")
        return
    record = entry.record
    if not record:
        report.failed("manifest", "the manifest on S3 has no offsite record")
        return
    report.passed("manifest")
    head = remote.head(entry.key, "checking %s" % entry.key)
    if head is None:
        report.failed("exists", "the object is gone from S3")
        return
    report.passed("exists")
    size = int(head.get("ContentLength", -1))
    if size != record.get("size"):
        report.failed("size", "S3 holds %d bytes, the manifest says %s: the copy is incomplete or was replaced" % (size, record.get("size")))
    else:
        report.passed("size")
    checksum = record.get("checksum") or {}
    if checksum.get("algorithm") == "SHA256":
        reported = head.get("ChecksumSHA256")
        if not reported:
            report.failed("checksum", "S3 reports no SHA-256 checksum for the object (expected %s)" % checksum.get("value"))
        elif not s3.same_checksum(reported, checksum.get("value", "")):
            report.failed(
                "checksum",
                "S3's SHA-256 checksum %s differs from the manifest's %s: the object was changed" % (reported, checksum.get("value")),
            )
        else:
            report.passed("checksum")
    elif checksum.get("algorithm") == "MD5":
        etag = str(head.get("ETag", "")).strip('"')
        if record.get("server_side_encryption") == "aws:kms":
            report.skipped("checksum", note="the ETag of an SSE-KMS object is not an MD5; size checked only")
        elif etag != checksum.get("value"):
            report.failed("checksum", "the ETag %s differs from the manifest's %s: the object was changed" % (etag, checksum.get("value")))
        else:
            report.passed("checksum")
    else:
        report.failed("checksum", "the manifest records no checksum of the object")


def check_legacy(remote: Remote, entry: RemoteEntry, report: Report) -> None:
    """The checks a copy made by the guide's scripts allows without a download: it exists, and
    it is not smaller than the store's floor. Says which checks it cannot do."""
    report.checks["manifest"] = "skipped"
    report.skipped(
        "checksum",
        note="no manifest on S3 (a copy made by the guide's scripts): checksum not compared; "
        "s3_backup_adopt can make it a first-class copy",
    )
    head = entry.head if entry.head is not None else remote.head(entry.key, "checking %s" % entry.key)
    if head is None:
        report.failed("exists", "the object is gone from S3")
        return
    report.passed("exists")
    size = int(head.get("ContentLength", entry.size))
    floor = remote.min_size_for(entry.store)
    if size < floor:
        report.failed("size", "only %d bytes on S3 (floor %d): the dump is probably empty" % (size, floor))
    else:
        report.passed("size")
    if entry.stream is not None:
        apply_stream(entry, report)


def apply_stream(entry: RemoteEntry, report: Report) -> None:
    """Record a legacy copy's stream check (made by :func:`check_stream`) in a report."""
    stream = entry.stream or {}
    if stream.get("error"):
        report.failed("stream", stream["error"])
    else:
        report.passed("stream")
        report.note(
            "downloaded and decompressed to the end (%d bytes of content, sha256 %s); "
            "content not compared with a manifest" % (stream["content_size"], stream["sha256"])
        )


def is_good(remote: Remote, entry: RemoteEntry) -> bool:
    """Whether a copy can be trusted. A legacy copy must pass its cheap checks, then be
    downloaded and decompressed to the end: this costs a download of the whole object."""
    report = new_report(entry)
    check_object(remote, entry, report)
    if entry.legacy and not report.problems and entry.stream is None:
        check_stream(remote, entry)
        apply_stream(entry, report)
    return report.state == "good"


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
        for data in read_chunks(body):
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
    result: dict[str, t.Any] = {}
    for data in download_chunks(remote, entry, key, result):
        if sink is not None:
            sink.write(data)
    return result


def download_chunks(remote: Remote, entry: RemoteEntry, key: _crypto.Key | None, result: dict[str, t.Any]) -> t.Iterator[bytes]:
    """:func:`download` as chunks of plaintext; the checks run when the last chunk has been
    taken (they raise then), and fill ``result``. The plaintext is the artifact, or for a
    directory backup the tar the manifest's ``archive`` describes."""
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
        for data in read_chunks(body):
            stored.update(data)
            stored_size += len(data)
            out = decryptor.update(data) if decryptor else data
            if out:
                plain.update(out)
                plain_size += len(out)
                yield out
        if decryptor:
            out = decryptor.finish()
            plain.update(out)
            plain_size += len(out)
            if out:
                yield out
    except (s3.ClientError, s3.BotoCoreError) as exc:
        raise remote.conn.error(exc, "downloading %s" % entry.key) from exc
    finally:
        body.close()
    if record.get("sha256") and stored.hexdigest() != record["sha256"]:
        raise VerifyError("%s: the downloaded bytes have sha256 %s, the manifest says %s" % (what, stored.hexdigest(), record["sha256"]))
    expected = entry.plaintext
    if plain_size != expected.get("size") or plain.hexdigest() != expected.get("sha256"):
        raise VerifyError(
            "%s: the %s read back has %d bytes and sha256 %s, the manifest says %s bytes and %s"
            % (what, "tar of the backup" if entry.archive else "backup", plain_size, plain.hexdigest(), expected.get("size"),
               expected.get("sha256"))
        )
    result.update(stored_size=stored_size, stored_sha256=stored.hexdigest(), size=plain_size, sha256=plain.hexdigest())


# Upload -------------------------------------------------------------------------------------
