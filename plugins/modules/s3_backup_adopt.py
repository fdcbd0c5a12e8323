#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_adopt
short_description: Make the S3 copies made by the guide's scripts first-class by writing their manifests
version_added: 0.1.0
description:
  - The guide's scripts copy each backup with C(aws s3 cp) to C(<prefix>/<store>/<file>), the
    collection's layout, but without a manifest. This module gives such a I(legacy) copy the
    remote manifest an upload of this collection would have written, so it is checked by its
    checksum from then on. It never rewrites, moves or deletes an object.
  - "For each legacy copy of each store: when the local catalog (O(backup_root)) holds the same
    file name with a manifest - made by a backup of this collection or by the local adopt of
    the store's role - the copy must be proven to hold the same bytes: the same size, and its
    ETag equal to the local file's MD5 (a single-part upload) or to the multipart ETag computed
    from the local file with the aws cli's 8 MiB parts; otherwise (SSE-KMS, another part size)
    the copy is downloaded and its sha256 compared. The local file must still match its own
    manifest. Then the remote manifest - the local one plus an C(offsite) record with the key,
    the size, the sha256 and the ETag as the object's MD5 checksum, and C(adopted: true) - is
    uploaded and the copy checked against it."
  - A legacy copy whose name the local catalog holds with another content is reported as
    V(mismatch) and left as it is.
  - "A legacy copy without a local counterpart with a manifest is downloaded and decompressed to
    the end of its stream (nothing written), and reported as V(needs_local_adoption) - or, with
    O(fetch_missing), downloaded into the local catalog as a legacy backup (V(fetched)), so the
    store's local adopt can deep-check it and write its manifest; running this module again then
    adopts the copy on S3."
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Makes the same comparisons (reading the local files, and downloading a copy where its
        ETag proves nothing) and reports what would be adopted or fetched; writes nothing, on
        S3 or on the host.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - An adopted copy has its manifest and is no longer legacy; a second run changes nothing.
options:
  stores:
    description: Stores whose legacy copies to adopt.
    type: list
    elements: str
    choices: [postgresql, redis, qdrant, postgresql_base]
    default: [postgresql, redis, qdrant, postgresql_base]
  backup_root:
    description: Root of the local backup tree (C(<backup_root>/<store>/)) holding the counterparts.
    type: path
    default: /var/backups/cc-lite
  fetch_missing:
    description:
      - Download a legacy copy that has no local counterpart into the local catalog, as a legacy
        backup without a manifest, when its compressed stream is intact.
    type: bool
    default: false
  file_mode:
    description: Mode of a downloaded backup (octal string).
    type: raw
    default: "0600"
  lock_timeout:
    description: Seconds to wait for another run on the same store to finish, before a download.
    type: int
    default: 600
notes:
  - Needs C(s3:ListBucket), C(s3:GetObject) and C(s3:PutObject) on the prefix.
  - The copies of a store with client-side encryption were made by this collection; the guide's
    scripts upload plaintext, so a legacy copy is never encrypted.
seealso:
  - module: cclite.backup.s3_backup_info
  - module: cclite.backup.s3_backup_fetch
"""

EXAMPLES = r"""
- name: Adopt the copies the guide's scripts put on S3 whose local backups have manifests
  cclite.backup.s3_backup_adopt:
    bucket: my-backups
  register: adopted

- name: Bring the others into the local catalog, for the local adopt
  cclite.backup.s3_backup_adopt:
    bucket: my-backups
    stores: [postgresql]
    fetch_missing: true
"""

RETURN = r"""
stores:
  description: For each store, what happened to each legacy copy.
  returned: always
  type: dict
  contains:
    directory: {description: C(s3://bucket/prefix/store)., type: str}
    backups:
      description: The legacy copies found, newest first.
      type: list
      elements: dict
      contains:
        name: {description: File name., type: str}
        url: {description: C(s3://) URL of the copy., type: str}
        key: {description: Key of the object., type: str}
        series: {description: The series., type: str}
        size: {description: Size of the object., type: int}
        local: {description: The local path of the same name., type: str}
        state:
          description:
            - V(adopted) - its manifest was uploaded (or would be, in check mode).
            - V(needs_local_adoption) - no local backup of that name with a manifest; its stream is intact.
            - V(fetched) - downloaded into the local catalog as a legacy backup (O(fetch_missing)).
            - V(mismatch) - the local file of that name holds other bytes, or no longer matches its manifest.
            - V(bad) - its compressed stream is cut or corrupt.
          type: str
        sha256: {description: "SHA-256 of the copy, when it was computed.", type: str}
        matched_by: {description: "How the copy was proven equal to the local backup: etag, multipart etag or sha256.", type: str}
        reason: {description: One sentence on what was found and what to do., type: str}
    adopted: {description: Names adopted., type: list, elements: str}
    waiting: {description: Names that need the local adopt first (or were fetched for it)., type: list, elements: str}
    problems: {description: Copies that could not be adopted and why., type: list, elements: str}
adopted:
  description: Every copy adopted, as C(store/name).
  returned: always
  type: list
  elements: str
problems:
  description: Every problem found, one sentence each.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _adopt, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


def main() -> None:
    argument_spec = dict(
        stores=dict(type="list", elements="str", default=list(_remote.STORES), choices=list(_remote.STORES)),
        backup_root=dict(type="path", default="/var/backups/cc-lite"),
        fetch_missing=dict(type="bool", default=False),
        file_mode=dict(type="raw", default="0600"),
        lock_timeout=dict(type="int", default=600),
    )
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        remote = _remote.Remote(s3.connection_from(p))
        stores = {
            store: _adopt.adopt(remote, p["backup_root"], store, p["fetch_missing"], _module.file_mode_from(p),
                                module.check_mode, p["lock_timeout"])
            for store in p["stores"]
        }
        adopted = ["%s/%s" % (store, name) for store, result in stores.items() for name in result["adopted"]]
        waiting = sum(len(result["waiting"]) for result in stores.values())
        problems = [problem for result in stores.values() for problem in result["problems"]]
        verb = "would adopt" if module.check_mode else "adopted"
        msg = "%s %d legacy copy(ies) on %s; %d need(s) the local adopt first; %d problem(s)" % (
            verb, len(adopted), remote.conn.describe(), waiting, len(problems))
        changed = False
        for result in stores.values():  # every store's flag leaves its result
            changed = bool(result.pop("changed")) or changed
        return {"changed": changed, "stores": stores, "adopted": adopted, "problems": problems, "msg": msg}

    _module.run(module, action)


if __name__ == "__main__":
    main()
