#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_fetch
short_description: Download a backup from S3 into the local catalog, for a restore
version_added: 0.1.0
description:
  - The step before a restore on a host that lost its backups (or never had them). Downloads
    the newest good copy of each series of a store (O(name=latest)) or one named copy, with its
    manifest, into C(<backup_root>/<store>/), where the store's restore module finds it.
  - Before any byte is downloaded - the copy must have its manifest on S3, and its size and
    the checksum S3 keeps must match it; an encrypted copy must have been made with the
    configured key (same key id), so a wrong or missing key fails here, before any restore step.
  - While downloading, the stored bytes are hashed and decrypted, and the plaintext is hashed;
    both must match the manifest. The file is written to a temp file and renamed into place
    only then, next to a local manifest (the copy's manifest, with the remote record kept under
    C(fetched_from)). The local file is plaintext.
  - A directory backup's copy (a tar, see M(cclite.backup.s3_backup_upload)) is extracted as it
    downloads into a hidden temp directory beside the tree - only regular files the manifest
    lists, with plain relative names (links and paths leaving the directory are refused), each
    checked against its sha256 - and renamed into place once the whole object checked out.
  - With O(name=latest), the catalog's C(latest) link of each series points at the downloaded
    copy afterwards, so the store's restore of C(latest) restores it.
  - "A copy made by the guide's scripts (no manifest on S3, see M(cclite.backup.s3_backup_info))
    can be fetched by name, or as V(latest) when no newer copy of its series is good. It must
    not be smaller than O(min_size_bytes); it is downloaded into a temp file while its
    compressed stream is decompressed to the end, and renamed into place only when the stream
    is intact - without a local manifest: it becomes a local legacy backup, which the store's
    restore reads in full before any change, as any legacy backup. For V(latest), a copy whose
    stream is broken is skipped for the next older one."
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.s3.MIN_SIZE
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Resolves the name on S3 and checks the copy and the key; downloads nothing, except that
        a legacy copy is downloaded and its stream checked (nothing is written).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A copy already in the catalog with the same sha256 is not downloaded again.
options:
  store:
    description: The store.
    type: str
    required: true
    choices: [postgresql, redis, qdrant, postgresql_base]
  name:
    description:
      - V(latest) (or a latest link name such as C(latest.sql.gz)) for the newest good copy of
        each series, or a file name from the listing, for example
        C(postgres_backup_20251225_020000.sql.gz).
    type: str
    default: latest
  series:
    description: With O(name=latest), the series to fetch; empty fetches every series found on S3.
    type: list
    elements: str
    default: []
  backup_root:
    description: Root of the local backup tree.
    type: path
    default: /var/backups/cc-lite
  move_latest:
    description: With O(name=latest), point the local C(latest) link at the downloaded copy.
    type: bool
    default: true
  file_mode:
    description: Mode of the downloaded backup and manifest (octal string).
    type: raw
    default: "0600"
  lock_timeout:
    description: Seconds to wait for another run on the same store to finish.
    type: int
    default: 600
seealso:
  - module: cclite.backup.s3_backup_info
  - module: cclite.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: Bring the newest PostgreSQL backup back from S3 onto a new host
  cclite.backup.s3_backup_fetch:
    bucket: my-backups
    store: postgresql
    encryption_key: "{{ vault_backup_encryption_key }}"

- name: Then restore it
  cclite.backup.postgresql_restore:
    database: operator_demo
    name: latest
    confirm: true
"""

RETURN = r"""
store:
  description: The store.
  returned: always
  type: str
backups:
  description: The copies fetched.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: File name., type: str}
    path: {description: Local path., type: str}
    url: {description: C(s3://) URL of the copy., type: str}
    series: {description: The series., type: str}
    size: {description: Size of the backup (plaintext)., type: int}
    sha256: {description: "SHA-256 of the backup (checked against the manifest; of a legacy copy, computed while downloading).", type: str}
    legacy: {description: Whether the copy has no manifest on S3 (made by the guide's scripts); it lands without a local manifest., type: bool}
    skipped: {description: "Newer legacy copies skipped for O(name=latest) because their stream is broken, with why.", type: list, elements: str}
    encrypted: {description: Whether the copy on S3 is encrypted., type: bool}
    downloaded: {description: Whether it was downloaded in this run., type: bool}
    state: {description: V(download) or V(present) (already in the catalog with the same sha256)., type: str}
    latest: {description: The local latest link that now points at it., type: str}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _module
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _fetch, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


def main() -> None:
    argument_spec = dict(
        store=dict(type="str", required=True, choices=list(_remote.STORES)),
        name=dict(type="str", default="latest"),
        series=dict(type="list", elements="str", default=[]),
        backup_root=dict(type="path", default="/var/backups/cc-lite"),
        move_latest=dict(type="bool", default=True),
        file_mode=dict(type="raw", default="0600"),
        lock_timeout=dict(type="int", default=600),
    )
    argument_spec.update(_remote.min_size_argument_spec())
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        key = _crypto.Key.load(p["encryption_key"], p["encryption_key_file"] or "")
        remote = _remote.Remote(s3.connection_from(p), min_size=_remote.min_sizes_from(p))
        return _fetch.fetch(
            remote, p["backup_root"], p["store"], p["name"], key, p["series"], p["move_latest"],
            _module.file_mode_from(p), module.check_mode, p["lock_timeout"],
        )

    _module.run(module, action)


if __name__ == "__main__":
    main()
