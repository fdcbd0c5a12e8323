#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qdrant_backup_info
short_description: List and verify the Qdrant backups in the backup catalog
version_added: 0.1.0
description:
  - Lists the backups of one series under C(<backup_root>/qdrant/), newest first, with date,
    size, sha256 and whether each is a legacy backup (no manifest).
  - Verifies them at the level chosen with O(verify), applying the guide's rules and more
    (see O(verify)). Reports every problem found; fails only with O(fail_on_problems).
  - Never changes the catalog and never contacts the Qdrant server. The connection options
    are accepted so that one C(module_defaults) group serves every Qdrant module.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.qdrant
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
        matches the manifest, the tar is complete, C(manifest.json) is there, and every
        snapshot it lists is present with the size and the sha256 the server reported (also
        the snapshots inside a full-storage snapshot).
      - V(deep) adds, for the newest backup, a load of every collection snapshot with Qdrant
        Edge (the C(qdrant_edge) Python module, package C(qdrant-edge-py)) in a scratch
        directory next to the backups, and a comparison of each points count with the
        manifest. It needs about twice the largest snapshot's size there. When the managed
        host's Python cannot import C(qdrant_edge), the deep check is skipped with a note.
    type: str
    choices: [none, quick, full, deep]
    default: full
  fail_on_problems:
    description: Fail when any check finds a problem, listing every problem.
    type: bool
    default: false
seealso:
  - module: cclite.backup.qdrant_backup
  - module: cclite.backup.qdrant_restore
"""

EXAMPLES = r"""
- name: Verify the Qdrant backups as the guide's verify-backups.sh does, and more
  cclite.backup.qdrant_backup_info:
    backup_root: /var/backups/cc-lite
    verify: full
  register: qdrant_backups

- name: Load the newest backup's snapshots with Qdrant Edge and compare points counts
  cclite.backup.qdrant_backup_info:
    verify: deep
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
    path:
      description: Absolute path.
      type: str
    created:
      description: When it was made (ISO 8601).
      type: str
    size:
      description: Size in bytes.
      type: int
    sha256:
      description: SHA-256 from the manifest (null for legacy backups).
      type: str
    duration:
      description: Seconds the backup took, from the manifest (null for legacy backups).
      type: float
    compression:
      description: gzip, zstd or none.
      type: str
    series:
      description: The series.
      type: str
    legacy:
      description: True when the backup has no manifest.
      type: bool
    encrypted:
      description: Whether the backup is encrypted at rest (its manifest's C(artifact.encryption)).
      type: bool
    manifest:
      description: Path of the manifest.
      type: str
    verification:
      description: Result of the checks (absent with O(verify=none)).
      type: dict
      returned: when O(verify) is not V(none)
      contains:
        state:
          description: good, bad or unverified.
          type: str
        checks:
          description: Each check and its outcome (ok, failed, skipped).
          type: dict
        problems:
          description: What failed.
          type: list
          elements: str
        notes:
          description: Checks that could not be made and why, and what the deep check found.
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
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as qd_ops


def main() -> None:
    argument_spec: dict = {}
    argument_spec.update(qd.connection_argument_spec())
    argument_spec.update(_module.info_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        result = qd_ops.info(qd_ops.catalog(p["backup_root"], p["series"]), _module.rules_from(p), p["verify"])
        return _module.info_result(result, p["fail_on_problems"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
