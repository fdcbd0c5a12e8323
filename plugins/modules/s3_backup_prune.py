#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_prune
short_description: Apply retention to the off-site copies on S3, never deleting the newest good one
version_added: 0.1.0
description:
  - Deletes the copies of each store older than O(retention_days) (from the manifest's end
    time, else the time in the file name), with their manifests, except the newest copy of
    each series that checks out as good (manifest on S3, size and checksum match). When no copy
    of a series checks out as good, none of its copies is deleted.
  - "Copies made by the guide's scripts (no manifest on S3) are pruned like any other. One
    counts as the newest good copy only when it is not smaller than O(min_size_bytes) and its
    compressed stream decompresses to the end: that costs a download of the object, made only
    when no newer copy of its series is good (copies are judged newest first). An upload of this
    collection that did not finish (marker, no manifest) is never good."
  - Deletes only objects named like backups of the store (and their manifests), and multipart
    uploads under the prefix that were started more than a day ago and never finished.
  - "The alternative is an S3 lifecycle rule (the role can install one): it needs no delete
    permission for the backup credentials, but it deletes by age alone, even the last copy when
    backups have stopped. See the role's README for when to use which."
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.s3.MIN_SIZE
  - cclite.backup.catalog.RETENTION
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns what would be deleted; nothing is deleted.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  stores:
    description: Stores to prune.
    type: list
    elements: str
    choices: [postgresql, redis, qdrant, postgresql_base]
    default: [postgresql, redis, qdrant, postgresql_base]
  retention_days:
    description:
      - Keep copies made within this many days.
      - At least V(1); V(0) or less is refused before anything is done.
    type: int
    required: true
notes:
  - Needs C(s3:DeleteObject), C(s3:ListBucket), C(s3:ListBucketMultipartUploads) and C(s3:AbortMultipartUpload) on the prefix.
  - On a versioned bucket a delete leaves a noncurrent version; expire those with a lifecycle
    rule (C(noncurrent_version_expiration_days)).
seealso:
  - module: cclite.backup.s3_backup_upload
  - module: amazon.aws.s3_lifecycle
"""

EXAMPLES = r"""
- name: Keep 30 days of copies on S3, and always the newest good one
  cclite.backup.s3_backup_prune:
    bucket: my-backups
    retention_days: 30

- name: Keep 7 days, then one copy a week for 8 weeks and one a month for a year
  cclite.backup.s3_backup_prune:
    bucket: my-backups
    retention_days: 7
    retention_keep:
      weekly: 8
      monthly: 12
"""

RETURN = r"""
stores:
  description: For each store, what was deleted and kept.
  returned: always
  type: dict
  contains:
    deleted: {description: Names of the copies deleted (or that would be in check mode)., type: list, elements: str}
    protected: {description: The newest good copy of each series (kept whatever its age)., type: list, elements: str}
    aborted_uploads: {description: Keys of stale multipart uploads aborted., type: list, elements: str}
    reason: {description: Why (per series)., type: str}
    generations:
      description: Copies older than O(retention_days) kept by O(retention_keep), each with the rules that keep it.
      type: dict
deleted:
  description: Every copy deleted, as C(store/name).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core import _retention
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _prune, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


def main() -> None:
    argument_spec = dict(
        stores=dict(type="list", elements="str", default=list(_remote.STORES), choices=list(_remote.STORES)),
        retention_days=dict(type="int", required=True),
    )
    argument_spec.update(_module.retention_keep_argument_spec())
    argument_spec.update(_remote.min_size_argument_spec())
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        retention_days = _module.retention_days_from(p)
        remote = _remote.Remote(s3.connection_from(p), min_size=_remote.min_sizes_from(p))
        keep = _retention.keep_from(p)
        stores = {store: _prune.prune(remote, store, retention_days, dry_run=module.check_mode, keep=keep) for store in p["stores"]}
        deleted = ["%s/%s" % (store, name) for store, result in stores.items() for name in result["deleted"]]
        aborted = [key for result in stores.values() for key in result["aborted_uploads"]]
        verb = "would delete" if module.check_mode else "deleted"
        msg = "%s %d copy(ies) older than %d days%s on %s" % (
            verb, len(deleted), p["retention_days"], " (generations kept: %s)" % keep.describe() if keep else "", remote.conn.describe())
        return {"changed": bool(deleted or aborted), "stores": stores, "deleted": deleted, "msg": msg}

    _module.run(module, action)


if __name__ == "__main__":
    main()
