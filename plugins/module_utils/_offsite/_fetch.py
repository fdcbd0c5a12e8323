# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bringing copies from S3 into the local catalog, checked against their manifests.

A file lands through a temp file renamed into place; a directory backup's tar is extracted into
a temp directory beside the tree (``_tree.untar``: links, paths leaving it and files the
manifest does not list are refused, every file's sha256 checked) and renamed into place only
when the whole object checked out."""

from __future__ import annotations

import hashlib
import os
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _manifest, _tree
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import in_place, read_chunks, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog, Layout
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._offsite._checks import check_stream, download, download_chunks
from ansible_collections.cclite.backup.plugins.module_utils._offsite._listing import is_latest, resolve
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import AWS_CLI_PART, Remote, RemoteEntry, layout_for


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
    if legacy and _tree.is_tree(entry.name):
        raise VerifyError("%s has no manifest on S3: a directory backup's copy cannot be checked without one; nothing was "
                          "downloaded" % remote.conn.url(layout.store, entry.name))
    item = {"name": entry.name, "path": path, "url": remote.conn.url(layout.store, entry.name), "series": entry.series,
            "size": entry.size if legacy else artifact["size"], "sha256": None if legacy else artifact["sha256"],
            "encrypted": entry.encryption is not None, "legacy": legacy, "downloaded": False, "latest": None,
            "changed": False}
    if _present(path) and (matches_local(remote, entry, path)[0] if legacy else _same_file(path, item["sha256"])):
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
                stream = download_legacy_into(remote, entry, path, file_mode)
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
            link = catalog.latest_for(entry.name)
            if not (os.path.islink(link) and os.readlink(link) == entry.name):
                catalog.point_latest(path)
                item["changed"] = True
            item["latest"] = link
    return item


def _present(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path) if _tree.is_tree(path) else os.path.isfile(path)


def _same_file(path: str, sha256: str) -> bool:
    if _tree.is_tree(path):
        try:
            return _tree.scan(path, decompress=False).sha256 == sha256
        except StageError:  # a link or special file in it: not the same backup
            return False
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in read_chunks(handle):
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
        for block in read_chunks(handle):
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


def matches_local(remote: Remote, entry: RemoteEntry, path: str) -> tuple[bool, str, dict[str, t.Any]]:
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
    record["archive"] = manifest.pop("archive", None)
    record["fetched"] = utcnow().isoformat()
    record["url"] = remote.conn.url(entry.store, entry.name)
    manifest["encryption"] = None  # the copy's layer is gone (artifact.encryption, at rest, stays)
    manifest["fetched_from"] = record
    return manifest


def _write_local_manifest(remote: Remote, entry: RemoteEntry, path: str, mode: int) -> None:
    _manifest.write(path, _local_manifest(remote, entry), mode)


def _download_into(remote: Remote, entry: RemoteEntry, key: _crypto.Key | None, path: str, mode: int) -> None:
    manifest_path = _manifest.path_for(path)
    try:
        if entry.archive is not None:
            _untar_into(remote, entry, key, path, mode)
            return
        with in_place(path, mode) as partial:
            download(remote, entry, key, partial.file)
            _write_local_manifest(remote, entry, path, mode)
    except BaseException:
        if os.path.exists(manifest_path) and not os.path.exists(path):
            os.unlink(manifest_path)
        raise


def _untar_into(remote: Remote, entry: RemoteEntry, key: _crypto.Key | None, path: str, mode: int) -> None:
    """A directory backup: its tar extracted into a temp directory as it downloads, every file
    checked, then the whole object's checksums; the manifest, then the rename."""
    what = remote.conn.url(entry.store, entry.name)
    archive = entry.archive or {}
    if archive.get("format") != "tar" or not _tree.is_tree(path):
        raise VerifyError("%s is packed as %s, which this version cannot read" % (what, archive.get("format")))
    artifact = (entry.manifest or {}).get("artifact", {})
    files = artifact.get("files") or []
    if not files or _tree.digest(files) != artifact.get("sha256"):
        raise VerifyError("the manifest of %s lists files that do not make its sha256 %s: it was changed; nothing was downloaded"
                          % (what, artifact.get("sha256")))
    try:
        with _tree.in_place(path) as tmp:
            _tree.untar(download_chunks(remote, entry, key, {}), tmp, files, what, mode)
            _tree.fsync_tree(tmp, mode)
            _write_local_manifest(remote, entry, path, mode)
    except OSError as exc:
        raise StageError("writing %s failed: %s; check free space and permissions there" % (path, exc.strerror or exc)) from exc


def download_legacy_into(remote: Remote, entry: RemoteEntry, path: str, mode: int) -> dict[str, t.Any]:
    """Download a legacy copy into a temp file while checking its stream; rename it into place
    only when the stream is intact. Returns the stream check (``error`` set: nothing written)."""
    try:
        with in_place(path, mode) as partial:
            stream = check_stream(remote, entry, partial.file)
            partial.keep = not stream.get("error")
        return stream
    except OSError as exc:
        raise StageError("writing %s failed: %s; check free space and permissions there" % (path, exc.strerror or exc)) from exc


# Adopting the copies made by the guide's scripts ------------------------------------------
