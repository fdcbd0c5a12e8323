#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qdrant_backup_adopt
short_description: Deep-check legacy Qdrant backups and give the good ones a manifest
version_added: 0.1.0
description:
  - Finds the legacy backups of one series under C(<backup_root>/qdrant/) - tars of collection
    snapshots made by the guide's scripts (snapshots created and downloaded through the API,
    then C(tar -czf)), which have no C(<file>.manifest.json) - and checks each one - the size
    rules (O(min_size_bytes), O(size_drop_ratio); not the age rule), one read of the whole file
    (the gzip or zstd stream is intact, the tar is complete and holds only C(.snapshot) files,
    at most one per collection, the sha256 of the stored bytes and of every snapshot), and a
    load of every snapshot with Qdrant Edge (the C(qdrant_edge) Python module, package
    C(qdrant-edge-py)) in a scratch directory next to the backups, removed afterwards.
  - The collection of each snapshot is read from its file name as Qdrant makes it
    (C(<collection>-<peer id>-<YYYY-MM-DD-HH-MM-SS>.snapshot)). A tar holding a full-storage
    snapshot is not adopted.
  - For each backup that passes every check, writes its manifest (atomically) - kind
    C(adopted), the sha256 and size read, the points count of every collection Qdrant Edge
    loaded, the date in the file name as start and the file's modification time as end.
    Later verifications and restores compare against these, as for the backups the collection
    makes. The old scripts recorded no aliases and no server version, so neither can be
    recorded.
  - Never contacts the Qdrant server; the connection options are accepted so that one
    C(module_defaults) group serves every Qdrant module. A managed host whose Python cannot
    import C(qdrant_edge) cannot make the deep check, so nothing is adopted there.
  - Never changes, moves or renames a backup file. A backup that fails a check stays legacy and
    is listed in RV(failed_adoption) with its problems; it is not deleted. A backup that
    changed while it was checked is not adopted. Backups with a manifest are left alone.
  - Holds the store's lock while it works, so that no backup, retention or restore runs at the
    same time on this host.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.qdrant
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.ADOPT
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs every check (the Qdrant Edge load included) and returns what would be adopted, in
        the same shape; writes no manifest and takes no lock.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run finds no legacy backup that passes (the first adopted them) and reports
        no change. Backups that failed are checked again each time.
seealso:
  - module: cclite.backup.qdrant_backup_info
  - module: cclite.backup.qdrant_restore
"""

EXAMPLES = r"""
- name: See which legacy Qdrant backups would be adopted (nothing is written)
  cclite.backup.qdrant_backup_adopt:
    backup_root: /var/backups/cc-lite
  check_mode: true
  register: qdrant_adopt

- name: Adopt the legacy Qdrant backups; fail when one does not pass
  cclite.backup.qdrant_backup_adopt:
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
      description: The collection's version (a collection snapshot names no server version).
      type: dict
    source:
      description:
        - What Qdrant Edge loaded - C(collections) (C(points_count) per collection),
          C(collection_count), C(total_points), C(kind).
      type: dict
    checks:
      description: Each check and its outcome.
      type: dict
    notes:
      description: Checks that could not be compared, and why.
      type: list
      elements: str
  sample:
    - name: qdrant_backup_20251226_020000.tar.gz
      path: /var/backups/cc-lite/qdrant/qdrant_backup_20251226_020000.tar.gz
      manifest: /var/backups/cc-lite/qdrant/qdrant_backup_20251226_020000.tar.gz.manifest.json
      size: 88213
      sha256: 9f2c4e0b8a1d3f5e7c9b2a4d6f8e0c1b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e
      started: "2025-12-26T02:00:00+00:00"
      ended: "2025-12-26T02:00:09+00:00"
      versions: {collection: "0.1.0"}
      source: {kind: collections, server_version: null, collections: {docs: {points_count: 5}}, collection_count: 1, total_points: 5}
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
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as qd_ops


def main() -> None:
    argument_spec: dict = {}
    argument_spec.update(qd.connection_argument_spec())
    argument_spec.update(_module.adopt_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        out = qd_ops.adopt(
            qd_ops.catalog(p["backup_root"], p["series"]),
            _module.adopt_rules_from(p),
            module.check_mode,
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
        )
        return _adopt.result(out, module.check_mode, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
