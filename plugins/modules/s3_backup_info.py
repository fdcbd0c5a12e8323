#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_info
short_description: List and check the off-site copies on S3 without restoring them
version_added: 0.1.0
description:
  - Lists the copies of each store under C(<prefix>/<store>/), newest first, with date, size,
    sha256, encryption and key id.
  - Checks them at the level chosen with O(verify) and reports every problem found; fails only
    with O(fail_on_problems). Never changes anything, on S3 or on the host.
  - "Copies made by the guide's scripts (C(aws s3 cp), no manifest) are listed with
    C(legacy: true). They get every check that needs no manifest - exists, age, the size floor
    O(min_size_bytes), and with O(verify=full) a download decompressed to the end of the stream -
    and a note says which checks could not be made (checksum, sha256). An object without a
    manifest that carries this collection's upload marker (C(x-amz-meta-cclite-backup)) is an
    upload that did not finish: C(incomplete: true), bad."
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.s3.MIN_SIZE
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs the same checks in check mode; it changes nothing in either mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  stores:
    description: Stores to list.
    type: list
    elements: str
    choices: [postgresql, redis, qdrant, postgresql_base]
    default: [postgresql, redis, qdrant, postgresql_base]
  verify:
    description:
      - V(none) lists only.
      - V(quick) checks, without downloading - every copy has its manifest on S3; the object
        exists, its size and the SHA-256 (or ETag) S3 keeps for it match the manifest; the newest
        copy of each series is not older than O(max_age_hours); encrypted copies can be
        decrypted with the configured key (same key id).
      - V(full) adds a complete download of O(sample) copies per store (the newest of each series
        first, then others at random), decrypted and hashed in memory-constant streaming, and
        compared with the manifest's sha256; nothing is written to disk. A legacy copy in the
        sample is decompressed to the end of its stream instead (state V(good) when intact).
    type: str
    choices: [none, quick, full]
    default: quick
  sample:
    description: With O(verify=full), how many copies per store to download completely.
    type: int
    default: 1
  max_age_hours:
    description: The newest copy of each series must not be older than this.
    type: float
    default: 25
  fail_on_problems:
    description: Fail when any check finds a problem, listing every problem.
    type: bool
    default: false
seealso:
  - module: cclite.backup.s3_backup_upload
  - module: cclite.backup.s3_backup_fetch
"""

EXAMPLES = r"""
- name: Check the off-site copies without downloading them
  cclite.backup.s3_backup_info:
    bucket: my-backups
    verify: quick
  register: offsite

- name: Download and check the newest copy of each store, and two more at random
  cclite.backup.s3_backup_info:
    bucket: my-backups
    verify: full
    sample: 3
    encryption_key: "{{ vault_backup_encryption_key }}"
    fail_on_problems: true
"""

RETURN = r"""
stores:
  description: For each store, its copies and what the checks found.
  returned: always
  type: dict
  contains:
    directory: {description: C(s3://bucket/prefix/store)., type: str}
    backups:
      description: The copies, newest first.
      type: list
      elements: dict
      contains:
        name: {description: File name., type: str}
        path: {description: C(s3://) URL of the copy., type: str}
        created: {description: When the backup was made (ISO 8601)., type: str}
        size: {description: Size of the object., type: int}
        sha256: {description: "SHA-256 of the backup (plaintext) from the manifest; of a directory backup, the digest of its file list.", type: str}
        compression: {description: "gzip, zstd or none; directory for a directory backup (one tar object on S3).", type: str}
        encrypted: {description: Whether the copy is encrypted., type: bool}
        key_id: {description: Id of the key it was encrypted with., type: str}
        legacy: {description: True when the copy has no manifest on S3 and no upload marker (made by the guide's scripts)., type: bool}
        incomplete: {description: "True when the copy is an upload of this collection that did not finish (marker, no manifest).", type: bool}
        adopted: {description: True when the manifest on S3 was written by M(cclite.backup.s3_backup_adopt) for a legacy copy., type: bool}
        verification:
          description: state (good, bad, unverified), checks, problems, notes.
          type: dict
          returned: when O(verify) is not V(none)
    problems: {description: Problems of this store., type: list, elements: str}
    healthy: {description: True when no check found a problem., type: bool}
backups:
  description: Every store's result as a list, in the shape of the local info modules (for listings).
  returned: always
  type: list
  elements: dict
problems:
  description: Every problem found, one sentence each.
  returned: always
  type: list
  elements: str
healthy:
  description: True when no check found a problem.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _module
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _listing, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError


def main() -> None:
    argument_spec = dict(
        stores=dict(type="list", elements="str", default=list(_remote.STORES), choices=list(_remote.STORES)),
        verify=dict(type="str", default="quick", choices=["none", "quick", "full"]),
        sample=dict(type="int", default=1),
        max_age_hours=dict(type="float", default=25.0),
        fail_on_problems=dict(type="bool", default=False),
    )
    argument_spec.update(_remote.min_size_argument_spec())
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        key = _crypto.Key.load(p["encryption_key"], p["encryption_key_file"] or "")
        remote = _remote.Remote(s3.connection_from(p), min_size=_remote.min_sizes_from(p))
        stores = {}
        for store in p["stores"]:
            stores[store] = _listing.inspect(remote, store, p["verify"], p["max_age_hours"], key, p["sample"])
        problems = [problem for result in stores.values() for problem in result["problems"]]
        result = {"stores": stores, "backups": list(stores.values()), "problems": problems, "healthy": not problems}
        if p["fail_on_problems"] and problems:
            raise VerifyError("%d problem(s) with the copies on S3: %s" % (len(problems), "; ".join(problems)), **result)
        count = sum(len(r["backups"]) for r in stores.values())
        result["msg"] = "%d copy(ies) on %s; %s" % (
            count, remote.conn.describe(), "healthy" if not problems else "%d problem(s)" % len(problems))
        return dict(changed=False, **result)

    _module.run(module, action)


if __name__ == "__main__":
    main()
