#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_upload
short_description: Copy a backup and its manifest to S3, checksummed and optionally encrypted
version_added: 0.1.0
description:
  - Uploads one backup of the local catalog to C(s3://<bucket>/<prefix>/<store>/<file>), then
    its manifest next to it. The store comes from the backup's manifest.
  - "Why a module of our own and not M(amazon.aws.s3_object): that module cannot set the part
    size from the file size (its fixed 8 MiB parts end at 78 GiB, 10,000 parts), keeps whole
    parts in memory, and cannot send a SHA-256 with every part and check the object's
    composite checksum against the manifest. This module streams with constant memory, picks
    a part size of at least C(size / 9000) and 8 MiB (any object up to S3's 5 TiB fits), sends
    every part with its SHA-256 (S3 refuses a part whose bytes differ), and after the upload
    compares the checksum S3 reports for the object with the one computed from the bytes sent."
  - The sha256 of the local backup is computed part by part as it is sent and compared with its
    manifest before the upload is completed; a local file that changed, an upload that fails, or
    an object whose checksum or size differs fails the task,
    removes the incomplete remote copy, and leaves the local backup untouched as the good copy.
  - The manifest is uploaded last - a copy without a manifest on S3 never counts as good. The
    remote manifest adds an C(offsite) record (key, stored size and sha256, checksum, part size)
    and, when encrypted, an C(encryption) record (algorithm, key id, ciphertext size and sha256).
  - A directory backup (PostgreSQL's C(directory) format, C(<name>.dir/)) is copied as one
    object under the same name - the tar of the files its manifest lists, made while the parts
    are sent (constant memory, no tar on disk; each file is checked against its sha256 as it is
    read, so a changed file fails the upload). The remote manifest adds an C(archive) record
    (C(format=tar), C(of=directory), the tar's size and sha256), which the checks and the fetch
    hold the downloaded bytes to.
  - With O(encryption_key) or O(encryption_key_file) the copy is encrypted on the managed host
    before it leaves (AES-256-GCM in 1 MiB chunks, format C(cclite-aead-v1)); the local backup
    stays plaintext. The object metadata records the plaintext sha256 and the key id.
  - A backup already encrypted at rest (C(backup_local_encryption), its manifest's
    C(artifact.encryption)) is uploaded as it is, never encrypted a second time. The remote
    manifest's C(encryption) is null, its C(artifact) names the encrypted bytes, and
    M(cclite.backup.s3_backup_fetch) brings those bytes back unchanged.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the local manifest and looks for the remote copy; reports whether an upload would
        happen. Nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A copy that is already on S3 with the same sha256 and a matching checksum is not
        uploaded again (O(force) uploads anyway).
options:
  path:
    description: The local backup to copy (a file, or a C(.dir) directory, of the catalog with its C(.manifest.json)).
    type: path
    required: true
  force:
    description: Upload even when a good copy is already on S3.
    type: bool
    default: false
  checksum:
    description:
      - V(sha256) sends a SHA-256 additional checksum with every part and checks the object's
        COMPOSITE checksum (AWS S3 and most current S3-compatible stores).
      - V(md5) sends Content-MD5 with every part and checks the multipart ETag, for stores
        without additional checksums. With SSE-KMS the ETag is not an MD5, and only sizes are checked.
    type: str
    choices: [sha256, md5]
    default: sha256
  part_size:
    description:
      - Part size in bytes (5 MiB to 5 GiB). V(0) computes it from the size - at least
        C(size / 9000) and 8 MiB, rounded up to a MiB.
    type: int
    default: 0
  storage_class:
    description: Storage class of the objects, for example C(STANDARD_IA) or C(GLACIER_IR). Empty uses the bucket's default.
    type: str
    default: ""
  server_side_encryption:
    description: V(AES256) (SSE-S3) or V(aws:kms) (SSE-KMS); empty uses the bucket's default.
    type: str
    choices: ["", AES256, "aws:kms"]
    default: ""
  sse_kms_key_id:
    description: KMS key for O(server_side_encryption=aws:kms); empty uses the AWS managed key.
    type: str
    default: ""
  spool_dir:
    description:
      - Directory for the spool file that holds one part before it is sent (an encrypted copy, or
        the tar of a directory backup). Empty uses the backup's directory.
    type: path
    default: ""
  object_lock:
    description:
      - S3 Object Lock on the copy and its manifest - V(governance) (a principal with
        C(s3:BypassGovernanceRetention) can still delete it) or V(compliance) (nobody can, the
        root account included, until the date). Each object version stays locked
        O(object_lock_days) from its upload, so a host whose credentials leak cannot destroy its
        own off-site history. The bucket must have Object Lock enabled (at creation).
      - Empty writes no lock.
    type: str
    choices: ["", governance, compliance]
    default: ""
  object_lock_days:
    description: Days each object stays locked with O(object_lock); match the retention (C(backup_retention_days)).
    type: int
    default: 0
notes:
  - Needs C(s3:PutObject), C(s3:GetObject), C(s3:ListBucket) and C(s3:AbortMultipartUpload) on the prefix,
    and C(s3:PutObjectRetention) with O(object_lock). No delete permission is needed.
seealso:
  - module: cclite.backup.s3_backup_info
  - module: cclite.backup.s3_backup_fetch
  - module: cclite.backup.s3_backup_prune
"""

EXAMPLES = r"""
- name: Copy the new backup off-site, encrypted
  cclite.backup.s3_backup_upload:
    path: /var/backups/cc-lite/postgresql/postgres_backup_20251226_020000.sql.gz
    bucket: my-backups
    region: eu-central-1
    encryption_key: "{{ vault_backup_encryption_key }}"
    storage_class: STANDARD_IA

- name: Copy to MinIO
  cclite.backup.s3_backup_upload:
    path: /var/backups/cc-lite/redis/redis_backup_20251226_020000.rdb.gz
    bucket: backups
    endpoint_url: https://minio.internal:9000
    addressing_style: path
    access_key: "{{ vault_minio_access_key }}"
    secret_key: "{{ vault_minio_secret_key }}"
"""

RETURN = r"""
artifact:
  description: The copy.
  returned: always
  type: dict
  contains:
    path: {description: The local backup., type: str}
    name: {description: File name., type: str}
    store: {description: The store (postgresql or redis or qdrant)., type: str}
    url: {description: C(s3://bucket/key) of the copy., type: str}
    key: {description: Object key., type: str}
    size: {description: Size of the backup (plaintext)., type: int}
    sha256: {description: SHA-256 of the backup (plaintext) as in the manifest., type: str}
    stored_size: {description: Size of the object (the ciphertext when encrypted)., type: int}
    stored_sha256: {description: SHA-256 of the object's bytes (null in check mode)., type: str}
    checksum:
      description: The checksum S3 keeps for the object and that was checked (algorithm, type, value, parts, part_size).
      type: dict
    part_size: {description: Part size used., type: int}
    parts: {description: Number of parts., type: int}
    encrypted: {description: Whether the copy is encrypted., type: bool}
    key_id: {description: Id of the encryption key (not the key)., type: str}
    duration: {description: Seconds the upload took (null when nothing was uploaded)., type: float}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _module
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _remote, _upload
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


def main() -> None:
    argument_spec = dict(
        path=dict(type="path", required=True),
        force=dict(type="bool", default=False),
        checksum=dict(type="str", default="sha256", choices=["sha256", "md5"]),
        part_size=dict(type="int", default=0),
        storage_class=dict(type="str", default=""),
        server_side_encryption=dict(type="str", default="", choices=["", "AES256", "aws:kms"]),
        sse_kms_key_id=dict(type="str", default=""),
        spool_dir=dict(type="path", default=""),
        object_lock=dict(type="str", default="", choices=["", "governance", "compliance"]),
        object_lock_days=dict(type="int", default=0),
    )
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        options = _remote.Options(
            checksum=p["checksum"],
            part_size=p["part_size"],
            storage_class=p["storage_class"],
            sse=p["server_side_encryption"],
            sse_kms_key_id=p["sse_kms_key_id"],
            spool_dir=p["spool_dir"] or "",
            object_lock=p["object_lock"].upper(),
            object_lock_days=p["object_lock_days"],
        )
        key = _crypto.Key.load(p["encryption_key"], p["encryption_key_file"] or "")
        remote = _remote.Remote(s3.connection_from(p))
        return _upload.upload(remote, options, key, p["path"], p["force"], module.check_mode)

    _module.run(module, action)


if __name__ == "__main__":
    main()
