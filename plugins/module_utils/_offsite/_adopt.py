# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Adopting the guide's S3 copies: check each and upload a manifest beside it, never rewriting the object."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._offsite._checks import check_object, check_stream, new_report
from ansible_collections.cclite.backup.plugins.module_utils._offsite._fetch import download_legacy_into, matches_local
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import Remote, RemoteEntry, layout_for


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
                    stream = download_legacy_into(remote, entry, path, file_mode)
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
    match, how, local = matches_local(remote, entry, path)
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
    if report.state != "good" and not (record["server_side_encryption"] == "aws:kms" and not report.problems):
        try:
            remote.delete(manifest_key)
        except BackupError:
            pass
        return {"state": "mismatch", "reason": "the adopted copy does not check out (%s); its manifest was removed again"
                                               % "; ".join(report.problems or report.notes)}
    return result


# Retention ----------------------------------------------------------------------------------
