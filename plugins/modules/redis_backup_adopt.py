#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_backup_adopt
short_description: Deep-check legacy Redis backups and give the good ones a manifest
version_added: 0.1.0
description:
  - Finds the legacy RDB backups of one series under C(<backup_root>/redis/) - copies of
    C(dump.rdb) gzipped by the guide's scripts, which have no C(<file>.manifest.json) - and
    checks each one - the size rules (O(min_size_bytes), O(size_drop_ratio); not the age rule),
    one read of the whole file (the gzip or zstd stream is intact, the RDB header and end
    marker, C(redis-check-rdb) on the stream, the sha256 of the stored bytes), and a load into
    a throwaway C(redis-server) on this host (Unix socket only), removed afterwards.
  - For each backup that passes every check, writes its manifest (atomically) - kind
    C(adopted), the sha256 and size read, the keys and keys with a TTL of every database the
    throwaway server loaded, the RDB format version, the Redis version the RDB names, the date
    in the file name as start and the file's modification time as end. Later verifications and
    restores compare against these, as for the backups the collection makes.
  - Never contacts the Redis server. O(mode=docker) only decides where C(redis-check-rdb) runs
    (in the container when it runs; else on this host). A host without C(redis-server) cannot
    make the deep check, so nothing is adopted there.
  - Never changes, moves or renames a backup file. A backup that fails a check stays legacy and
    is listed in RV(failed_adoption) with its problems; it is not deleted. A backup that
    changed while it was checked is not adopted. Backups with a manifest are left alone.
  - Holds the store's lock while it works, so that no backup, retention or restore runs at the
    same time on this host.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.redis
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.ADOPT
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs every check (the throwaway server included) and returns what would be adopted, in
        the same shape; writes no manifest and takes no lock.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run finds no legacy backup that passes (the first adopted them) and reports
        no change. Backups that failed are checked again each time.
options:
  method:
    description:
      - Which backups to adopt. The guide's scripts made only RDB copies (C(.rdb.gz)); logical
        dumps are made by this collection, with a manifest, so only V(rdb) is accepted. The
        option exists so that one C(module_defaults) group serves every Redis module.
    type: str
    choices: [rdb]
    default: rdb
seealso:
  - module: cclite.backup.redis_backup_info
  - module: cclite.backup.redis_restore
"""

EXAMPLES = r"""
- name: See which legacy RDB backups would be adopted (nothing is written)
  cclite.backup.redis_backup_adopt:
    backup_root: /var/backups/cc-lite
  check_mode: true
  register: redis_adopt

- name: Adopt the legacy RDB backups; fail when one does not pass
  cclite.backup.redis_backup_adopt:
    backup_root: /var/backups/cc-lite
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
      description: The Redis version the RDB names (C(server)), and the collection's.
      type: dict
    source:
      description:
        - What the throwaway server loaded - C(databases) (C(keys) and C(expires) per database),
          C(keys) (in the file), C(expires), C(rdb_version), C(method), C(counts_exact).
      type: dict
    checks:
      description: Each check and its outcome.
      type: dict
    notes:
      description: Checks that could not be compared, and why.
      type: list
      elements: str
  sample:
    - name: redis_backup_20251226_020000.rdb.gz
      path: /var/backups/cc-lite/redis/redis_backup_20251226_020000.rdb.gz
      manifest: /var/backups/cc-lite/redis/redis_backup_20251226_020000.rdb.gz.manifest.json
      size: 18213
      sha256: 9f2c4e0b8a1d3f5e7c9b2a4d6f8e0c1b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e
      started: "2025-12-26T02:00:00+00:00"
      ended: "2025-12-26T02:00:01+00:00"
      versions: {server: "7.0.15", collection: "0.1.0"}
      source: {method: rdb, rdb_version: 10, databases: {db0: {keys: 42, expires: 3}}, keys: 42, expires: 3, counts_exact: true}
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
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops


def main() -> None:
    argument_spec = dict(
        method=dict(type="str", default="rdb", choices=["rdb"]),
    )
    argument_spec.update(rd.connection_argument_spec())
    argument_spec.update(_module.adopt_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        out = rd_ops.adopt(
            rd_ops.catalog(p["backup_root"], "rdb", p["series"]),
            _module.adopt_rules_from(p),
            rd.connection_from(p),
            module.check_mode,
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
        )
        return _adopt.result(out, module.check_mode, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
