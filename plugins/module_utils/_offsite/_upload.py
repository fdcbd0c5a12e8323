# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Uploading a backup to S3: multipart with a SHA-256 per part, encrypted when a key is set (a
backup already encrypted at rest goes as it is), the manifest last.

A directory backup (``_tree``) is uploaded as one object, the tar stream of its files made while
the parts are sent (``_tree.tar_chunks``: its length is known beforehand, each file is checked
against the manifest as it is read, nothing but the one-part spool touches the disk); the remote
manifest's ``archive`` record gives the tar's size and sha256, which the checks and the fetch
hold the plaintext to."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import CHUNK, read_chunks, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._offsite._checks import check_object, is_good, new_report
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import MARKERS, Options, Remote, RemoteEntry, layout_for


@dataclasses.dataclass
class Planned:
    path: str
    store: str
    name: str
    manifest: dict[str, t.Any]
    stored_size: int
    part_size: int
    parts: int
    layer: _crypto.Key | None = None  # the key of the copy's encryption layer; None: the bytes go as they are
    files: list[dict[str, t.Any]] | None = None  # a directory backup's file list: the object is their tar
    mtime: int = 0  # the tar's member mtime (the backup's end)

    @property
    def at_rest(self) -> dict[str, t.Any] | None:
        """How the backup is encrypted at rest (then uploaded as it is); ``None``: it is plaintext."""
        return (self.manifest.get("artifact") or {}).get("encryption") or None

    @property
    def key_id(self) -> str | None:
        return self.layer.key_id if self.layer else (self.at_rest or {}).get("key_id")

    def plaintext(self) -> t.Iterator[bytes]:
        """The bytes to store (before the copy's encryption): the file, or the tar of the directory."""
        if self.files is not None:
            yield from _tree.tar_chunks(self.path, self.files, self.mtime)
            return
        with open(self.path, "rb") as handle:
            yield from read_chunks(handle)


class Uploader:
    def __init__(self, remote: Remote, options: Options, key: _crypto.Key | None = None) -> None:
        self.remote = remote
        self.conn = remote.conn
        self.options = options
        self.key = key

    def plan(self, path: str) -> Planned:
        path = path.rstrip("/") or path  # a directory given as ``name.dir/``
        tree = os.path.isdir(path) and not os.path.islink(path) and _tree.is_tree(path)
        if os.path.isdir(path) and not tree:
            raise ConfigError("%s is a directory but not a directory backup (<name>%s, not a link): nothing to copy off-site"
                              % (path, _tree.SUFFIX))
        if not tree and not os.path.isfile(path):
            raise ConfigError("%s does not exist: nothing to copy off-site" % path)
        manifest = _manifest.read(path)
        if manifest is None:
            raise ConfigError("%s has no manifest: only backups made by cclite.backup are copied off-site" % path)
        store = manifest.get("store", "")
        layout_for(store)
        name = os.path.basename(path)
        files, mtime = None, 0
        if tree:
            files = manifest.get("artifact", {}).get("files")
            if not isinstance(files, list) or not files or _tree.digest(files) != manifest["artifact"].get("sha256"):
                raise VerifyError("the manifest of %s lists no files, or files that do not make its sha256: the local backup cannot be checked; "
                                  "nothing was uploaded" % path)
            problems = _tree.compare(files, _tree.names(path))
            if problems:
                raise VerifyError("%s differs from its manifest (%s): the local backup changed; nothing was uploaded" % (path, "; ".join(problems)))
            ended = _manifest.ended(manifest)
            mtime = int(ended.timestamp()) if ended else 0
            size = _tree.tar_size(files, mtime)
        else:
            size = os.path.getsize(path)
            if size != manifest.get("artifact", {}).get("size"):
                raise VerifyError(
                    "%s has %d bytes, its manifest says %s: the local backup changed or is cut; nothing was uploaded"
                    % (path, size, manifest.get("artifact", {}).get("size"))
                )
        # a backup encrypted at rest is sent as it is: a second layer would only cost time (never a directory)
        layer = None if (manifest.get("artifact") or {}).get("encryption") else self.key
        stored = _crypto.ciphertext_size(size) if layer else size
        part_size = s3.part_size_for(stored, self.options.part_size)
        return Planned(path, store, name, manifest, stored, part_size, s3.part_count(stored, part_size), layer, files, mtime)

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
        theirs = _manifest.owner(entry.manifest)
        if theirs and theirs != _manifest.owner(plan.manifest):
            raise VerifyError(
                "%s already exists on S3 as a backup of host %s: hosts sharing a bucket and prefix must not share keys; "
                "set backup_s3_host_dir: true (keys <prefix>/<host>/<store>/), or give each host its own "
                "backup_s3_prefix" % (self.conn.url(plan.store, plan.name), theirs)
            )
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
            "cclite-encryption": _crypto.ALGORITHM if plan.key_id else "none",
        }
        if plan.key_id:
            metadata["cclite-key-id"] = plan.key_id
        create = dict(Bucket=self.conn.bucket, Key=key, Metadata=metadata, ContentType="application/octet-stream", **self.options.object_args())
        if self.options.checksum == "sha256":
            create["ChecksumAlgorithm"] = "SHA256"
        upload_id = self.remote.call("starting the upload of %s" % key, "create_multipart_upload", **create)["UploadId"]
        try:
            parts, stored_sha, plain_sha = self._send_parts(plan, key, upload_id)
            # a directory's files were each checked against the manifest as the tar was made
            if plan.files is None and plain_sha != expected_sha:
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
            completed = self.remote.call(
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
        lock = self.options.lock(self.remote, key, completed.get("VersionId"))
        record = {
            "bucket": self.conn.bucket,
            "key": key,
            "size": plan.stored_size,
            "sha256": stored_sha,
            "checksum": checksum,
            "uploaded": utcnow().isoformat(),
            "storage_class": self.options.storage_class or "STANDARD",
            "server_side_encryption": self.options.sse or None,
            "object_lock": lock,
        }
        remote_manifest = dict(plan.manifest)
        remote_manifest["offsite"] = record
        if plan.files is not None:
            remote_manifest["archive"] = {"format": "tar", "of": "directory", "size": _tree.tar_size(plan.files, plan.mtime),
                                          "sha256": plain_sha}
        if plan.layer:
            remote_manifest["encryption"] = dict(_crypto.describe(plan.layer), ciphertext={"size": plan.stored_size, "sha256": stored_sha})
        else:  # plaintext, or encrypted at rest (artifact.encryption): the bytes on S3 are the backup's own
            remote_manifest["encryption"] = None
        entry = RemoteEntry(plan.store, plan.name, key, "", local_now(), plan.stored_size, None, None, remote_manifest)
        report = new_report(entry)
        check_object(self.remote, entry, report)
        if report.problems:
            self._drop(key)
            raise VerifyError(
                "the copy of %s on S3 does not match what was sent (%s); the remote object was deleted and "
                "the local backup is the only good copy" % (plan.name, "; ".join(report.problems))
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
            "encrypted": plan.key_id is not None,
            "key_id": plan.key_id,
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
        encryptor = _crypto.Encryptor(plan.layer) if plan.layer else None
        for data in plan.plaintext():
            plain.update(data)
            out = encryptor.update(data) if encryptor else data
            if out:
                yield out
        if encryptor:
            yield encryptor.finish()

    def _send_parts(self, plan: Planned, key: str, upload_id: str) -> tuple[list[t.Any], str, str]:
        """Send the stored bytes part by part; returns the parts, the stored and plaintext sha256."""
        if plan.layer is None and plan.files is None:
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
        """Encrypted, or the tar of a directory: the bytes of one part go to a spool file while
        they are hashed, then are sent from there; memory stays at one chunk, disk at one part."""
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
    owner = _manifest.owner(plan.manifest)
    if remote.conn.host and owner and owner != remote.conn.host:
        # fetched from another host's copies (restore_from_host): that host's series, not this one's
        return {"changed": False, "artifact": {"path": path, "name": plan.name, "duration": None},
                "msg": "%s is a backup of host %s (fetched from its copies), not of %s: not copied off-site as this "
                       "host's" % (plan.name, owner, remote.conn.host)}
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
        "encrypted": plan.key_id is not None,
        "key_id": plan.key_id,
        "duration": None,
    }
    if existing is not None:
        rec = existing.record
        enc = existing.encryption or existing.at_rest
        base.update(stored_size=rec.get("size"), stored_sha256=rec.get("sha256"), checksum=rec.get("checksum"),
                    encrypted=enc is not None, key_id=enc.get("key_id") if enc else None)
        return {"changed": False, "artifact": base, "msg": "%s is already on S3 and verifies; nothing to do" % plan.name}
    if check_mode:
        base.update(stored_size=plan.stored_size, stored_sha256=None, checksum=None)
        return {"changed": True, "artifact": base, "msg": "would upload %s to %s (check mode)" % (plan.name, base["url"])}
    with StoreLock(os.path.dirname(os.path.abspath(path)), plan.store, "%s off-site upload" % plan.store, 600):
        result = uploader.upload(plan)
    result.update(part_size=plan.part_size, parts=plan.parts)
    how = "as a tar of its %d files, " % len(plan.files) if plan.files is not None else ""
    how += ("encrypted (key id %s), " % plan.layer.key_id if plan.layer
            else "as it is (encrypted at rest, key id %s), " % plan.key_id if plan.at_rest else "")
    return {
        "changed": True,
        "artifact": result,
        "msg": "uploaded %s to %s, %s%d part(s) of %d bytes, checksum %s verified"
        % (plan.name, result["url"], how, plan.parts, plan.part_size, result["checksum"]["value"]),
    }


# Listing and checks -------------------------------------------------------------------------
