#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_backup_info
short_description: List and verify the Redis backups in the backup catalog
version_added: 0.1.0
description:
  - Lists the backups of one method and series under C(<backup_root>/redis/), newest first,
    with date, size, sha256 and whether each is a legacy backup (no manifest).
  - Verifies them at the level chosen with O(verify), applying the guide's rules and more
    (see O(verify)). Reports every problem found; fails only with O(fail_on_problems).
  - Never changes the catalog and never contacts the Redis server. O(mode=docker) only decides
    where C(redis-check-rdb) runs (in the container when it runs, so its version matches the
    server's; else on this host). The V(deep) check starts a throwaway C(redis-server) on this
    host and removes it afterwards.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.redis
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.RULES
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
  method:
    description: Which backups to list - RDB snapshots (C(.rdb.gz)) or logical dumps (C(.keys.gz)).
    type: str
    choices: [rdb, logical]
    default: rdb
  verify:
    description:
      - V(none) lists only.
      - V(quick) applies the rules that need no read of the data - the newest backup is not
        older than O(max_age_hours); no backup is smaller than O(min_size_bytes) or sharply
        smaller than the ones before it (O(size_drop_ratio)); sizes match the manifests.
      - V(full) adds a read of every backup - the gzip (or zstd) stream is intact, the sha256
        matches the manifest, the RDB has its header and end marker and passes
        C(redis-check-rdb) (streamed to it, no temp copy); a logical dump parses to its end
        record and its counts agree.
      - V(deep) adds, for the newest backup, a throwaway C(redis-server) on a Unix socket in a
        private temp directory (no TCP port) that loads it (an RDB directly, a logical dump
        through C(RESTORE)); the key count of every database is compared with the manifest
        (keys with a TTL may have expired since), the RDB's total with the keys Redis read
        from it, and the sampled keys' type, length, value digest and expiry. The server is
        then shut down and its directory removed. It needs C(redis-server) on this host and as
        much memory as the dataset.
    type: str
    choices: [none, quick, full, deep]
    default: full
  fail_on_problems:
    description: Fail when any check finds a problem, listing every problem.
    type: bool
    default: false
seealso:
  - module: cclite.backup.redis_backup
  - module: cclite.backup.redis_restore
"""

EXAMPLES = r"""
- name: Verify the Redis backups as the guide's verify-backups.sh does, and more
  cclite.backup.redis_backup_info:
    backup_root: /var/backups/cc-lite
    verify: full
  register: redis_backups

- name: Load the newest backup into a throwaway server and compare it with its manifest
  cclite.backup.redis_backup_info:
    verify: deep
    fail_on_problems: true
"""

RETURN = r"""
directory:
  description: Directory of the store.
  returned: always
  type: str
method:
  description: The method whose backups are listed.
  returned: always
  type: str
backups:
  description: The backups of the method and series, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name.
      returned: always
      type: str
    path:
      description: Absolute path.
      returned: always
      type: str
    created:
      description: When it was made (ISO 8601).
      returned: always
      type: str
    size:
      description: Size in bytes.
      returned: always
      type: int
    sha256:
      description: SHA-256 from the manifest (null for legacy backups).
      returned: always
      type: str
    duration:
      description: Seconds the backup took, from the manifest (null for legacy backups).
      returned: always
      type: float
    compression:
      description: gzip, zstd or none.
      returned: always
      type: str
    series:
      description: The series.
      returned: always
      type: str
    legacy:
      description: True when the backup has no manifest (made by the old scripts).
      returned: always
      type: bool
    encrypted:
      description: Whether the backup is encrypted at rest (its manifest's C(artifact.encryption)).
      returned: always
      type: bool
    manifest:
      description: Path of the manifest.
      returned: always
      type: str
    verification:
      description: Result of the checks (absent with O(verify=none)).
      returned: when O(verify) is not V(none)
      type: dict
      contains:
        state:
          description: good, bad or unverified.
          returned: always
          type: str
        checks:
          description: Each check and its outcome (ok, failed, skipped).
          returned: always
          type: dict
        problems:
          description: What failed.
          returned: always
          type: list
          elements: str
        notes:
          description: Checks that could not be made, and what the deep check saw.
          returned: always
          type: list
          elements: str
latest:
  description: The backup C(latest) points to.
  returned: always
  type: dict
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

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops


def main() -> None:
    argument_spec = dict(
        method=dict(type="str", default="rdb", choices=["rdb", "logical"]),
    )
    argument_spec.update(rd.connection_argument_spec())
    argument_spec.update(_module.info_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        result = rd_ops.info(
            rd_ops.catalog(p["backup_root"], p["method"], p["series"]),
            _module.rules_from(p),
            p["verify"],
            rd.connection_from(p),
            p["method"],
        )
        return _module.info_result(result, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
