#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_backup_adopt
short_description: Deep-check legacy PostgreSQL backups and give the good ones a manifest
version_added: 0.1.0
description:
  - Finds the legacy backups of one series under C(<backup_root>/postgresql/) - dumps made by
    the guide's scripts (C(pg_dump | gzip)), which have no C(<file>.manifest.json) - and checks
    each one - the size rules (O(min_size_bytes), O(size_drop_ratio); not the age rule), one read
    of the whole file (the gzip or zstd stream is intact, the SQL ends with pg_dump's closing
    line, the sha256 of the stored bytes), and a restore into a scratch database on the server,
    which is dropped afterwards.
  - For each backup that passes every check, writes its manifest (atomically) - kind
    C(adopted), the sha256 and size read, the row count of every table the scratch restore
    found, the server and pg_dump versions named in the dump's header, the date in the file
    name as start and the file's modification time as end. Later verifications and restores
    compare against these, as for the backups the collection makes.
  - Never changes, moves or renames a backup file. A backup that fails a check stays legacy and
    is listed in RV(failed_adoption) with its problems; it is not deleted. A backup that
    changed while it was checked is not adopted. Backups with a manifest are left alone.
  - Holds the store's lock while it works, so that no backup, retention or restore runs at the
    same time on this host.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.ADOPT
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs every check (the scratch database included) and returns what would be adopted, in
        the same shape; writes no manifest and takes no lock.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run finds no legacy backup that passes (the first adopted them) and reports
        no change. Backups that failed are checked again each time.
options:
  database:
    description: Database the series belongs to; recorded in the manifests and names the scratch database.
    type: str
    default: ""
seealso:
  - module: cclite.backup.postgresql_backup_info
  - module: cclite.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: See which legacy dumps would be adopted (nothing is written)
  cclite.backup.postgresql_backup_adopt:
    backup_root: /var/backups/cc-lite
    database: operator_demo
  check_mode: true
  register: pg_adopt

- name: Adopt the legacy dumps; fail when one does not pass
  cclite.backup.postgresql_backup_adopt:
    backup_root: /var/backups/cc-lite
    database: operator_demo
    fail_on_problems: true
"""

RETURN = r"""
directory:
  description: Directory of the store.
  returned: always
  type: str
adopted:
  description: The legacy backups that passed every check and got (in check mode, would get) a manifest.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name.
      type: str
    path:
      description: Absolute path of the backup (unchanged).
      type: str
    manifest:
      description: Path of the manifest written.
      type: str
    size:
      description: Size in bytes.
      type: int
    sha256:
      description: SHA-256 of the file, as recorded in the manifest.
      type: str
    started:
      description: The date in the file name (ISO 8601).
      type: str
    ended:
      description: The file's modification time (ISO 8601).
      type: str
    versions:
      description: The server and pg_dump versions the dump names, and the collection's.
      type: dict
    source:
      description: What the scratch restore found - C(tables) (rows per table), C(table_count), C(total_rows).
      type: dict
    checks:
      description: Each check and its outcome.
      type: dict
    notes:
      description: Checks that could not be compared, and why.
      type: list
      elements: str
  sample:
    - name: postgres_backup_20251226_020000.sql.gz
      path: /var/backups/cc-lite/postgresql/postgres_backup_20251226_020000.sql.gz
      manifest: /var/backups/cc-lite/postgresql/postgres_backup_20251226_020000.sql.gz.manifest.json
      size: 48213
      sha256: 9f2c4e0b8a1d3f5e7c9b2a4d6f8e0c1b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e
      started: "2025-12-26T02:00:00+00:00"
      ended: "2025-12-26T02:00:04+00:00"
      versions: {server: "15.8", tool: "15.8", collection: "0.1.0"}
      source: {tables: {public.users: 120}, table_count: 1, total_rows: 120}
      checks: {size: ok, manifest: skipped, stream: ok, sha256: skipped, content: ok, deep: ok}
      notes: []
failed_adoption:
  description: The legacy backups that did not pass; they stay legacy and are not deleted.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name.
      type: str
    path:
      description: Absolute path.
      type: str
    problems:
      description: Why it was not adopted.
      type: list
      elements: str
    checks:
      description: Each check and its outcome.
      type: dict
    notes:
      description: Checks that could not be made, and why.
      type: list
      elements: str
not_legacy:
  description: Backups that are not legacy (they have a manifest, or one that cannot be read), with the reason.
  returned: always
  type: list
  elements: dict
problems:
  description: Every problem found, one sentence each.
  returned: always
  type: list
  elements: str
msg:
  description: What was adopted and what was not.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt
from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops


def main() -> None:
    argument_spec = dict(
        database=dict(type="str", default=""),
    )
    argument_spec.update(pg.connection_argument_spec())
    argument_spec.update(_module.adopt_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        out = pg_ops.adopt(
            pg_ops.catalog(p["backup_root"], p["series"]),
            _module.adopt_rules_from(p),
            pg.connection_from(p),
            p["database"],
            module.check_mode,
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
        )
        return _adopt.result(out, module.check_mode, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
