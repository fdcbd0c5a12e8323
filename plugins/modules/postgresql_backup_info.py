#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_backup_info
short_description: List and verify the PostgreSQL backups in the backup catalog
version_added: 0.1.0
description:
  - Lists the backups of one series under C(<backup_root>/postgresql/), newest first, with
    date, size, sha256 and whether each is a legacy backup (no manifest).
  - Verifies them at the level chosen with O(verify), applying the guide's rules and more
    (see O(verify)). Reports every problem found; fails only with O(fail_on_problems).
  - Never changes the catalog. The V(deep) check creates a scratch database on the server and
    drops it afterwards.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
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
  verify:
    description:
      - V(none) lists only.
      - V(quick) applies the rules that need no read of the data - the newest backup is not
        older than O(max_age_hours); no backup is smaller than O(min_size_bytes) or sharply
        smaller than the ones before it (O(size_drop_ratio)); sizes match the manifests.
      - V(full) adds a read of every backup - the gzip (or zstd) stream is intact, the sha256
        matches the manifest, and the SQL ends with pg_dump's closing line.
      - V(deep) adds, for the newest backup, a restore into a scratch database and a comparison
        of every table's row count with the manifest; the scratch database is dropped.
    type: str
    choices: [none, quick, full, deep]
    default: full
  database:
    description: Database the series belongs to; names the scratch database of the deep check.
    type: str
    default: ""
  fail_on_problems:
    description: Fail when any check finds a problem, listing every problem.
    type: bool
    default: false
seealso:
  - module: cclite.backup.postgresql_backup
  - module: cclite.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: Verify the PostgreSQL backups as the guide's verify-backups.sh does, and more
  cclite.backup.postgresql_backup_info:
    backup_root: /var/backups/cc-lite
    verify: full
  register: pg_backups

- name: Restore the newest backup into a scratch database and compare row counts
  cclite.backup.postgresql_backup_info:
    verify: deep
    database: operator_demo
    fail_on_problems: true
"""

RETURN = r"""
directory:
  description: Directory of the store.
  returned: always
  type: str
backups:
  description: The backups of the series, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name.
      type: str
      returned: always
    path:
      description: Absolute path.
      type: str
      returned: always
    created:
      description: When it was made (ISO 8601).
      type: str
      returned: always
    size:
      description: Size in bytes.
      type: int
      returned: always
    sha256:
      description: SHA-256 from the manifest (null for legacy backups).
      type: str
      returned: always
    duration:
      description: Seconds the backup took, from the manifest (null for legacy backups).
      type: float
      returned: always
    compression:
      description: gzip, zstd or none; directory for a directory-format backup.
      type: str
      returned: always
    series:
      description: The series.
      type: str
      returned: always
    legacy:
      description: True when the backup has no manifest (made by the old scripts).
      type: bool
      returned: always
    encrypted:
      description: Whether the backup is encrypted at rest (its manifest's C(artifact.encryption)).
      returned: always
      type: bool
    manifest:
      description: Path of the manifest.
      type: str
      returned: always
    verification:
      description: Result of the checks (absent with O(verify=none)).
      type: dict
      returned: when O(verify) is not V(none)
      contains:
        state:
          description: good, bad or unverified.
          type: str
          returned: always
        checks:
          description: Each check and its outcome (ok, failed, skipped).
          type: dict
          returned: always
        problems:
          description: What failed.
          type: list
          elements: str
          returned: always
        notes:
          description: Checks that could not be made, and why.
          type: list
          elements: str
          returned: always
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
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops


def main() -> None:
    argument_spec = dict(
        database=dict(type="str", default=""),
    )
    argument_spec.update(pg.connection_argument_spec())
    argument_spec.update(_module.info_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        result = pg_ops.info(
            pg_ops.catalog(p["backup_root"], p["series"]),
            _module.rules_from(p),
            p["verify"],
            pg.connection_from(p),
            p["database"],
        )
        return _module.info_result(result, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
