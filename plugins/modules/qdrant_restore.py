#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qdrant_restore
short_description: Restore Qdrant collections from the backup catalog, safely
version_added: 0.1.0
description:
  - Restores collections from a backup made by M(cclite.backup.qdrant_backup), through the
    REST API only.
  - "The steps: refuse without O(confirm); refuse when the server is older than the Qdrant
    that made the backup, or more than one minor version newer (Qdrant restores snapshots on
    the same or the next minor version only); read the whole file (stream, sha256 against the
    manifest, the bundle's structure, every snapshot's sha256 against the checksum the server
    reported) before any change; take a safety backup of the collections about to be replaced
    into C(<backup_root>/qdrant/safety/) (it does not move C(latest)); then for each collection:
    upload its snapshot (multipart C(POST /collections/{name}/snapshots/upload) with
    C(priority=snapshot) sent explicitly, C(checksum) and C(wait=true), streamed from the
    backup without holding it in memory), recreate its aliases, compare its points count with
    the manifest, and delete the uploaded snapshot file, which Qdrant otherwise keeps."
  - Names are file names in the store's directory (the guide's C(--qdrant FILE)),
    C(safety/<name>) for a safety backup, or V(latest), which is the newest backup of the
    catalog that reads back good (the C(latest) link is only compared with it; a difference is
    reported in RV(notes)). Names that leave the directory are refused.
  - A collection that does not exist is created from its snapshot. An existing one keeps its
    own configuration (as Qdrant does when recovering into an existing collection); its
    vectors configuration must match the snapshot's.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.qdrant
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.COMPRESSION
  - cclite.backup.catalog.PROGRESS
  - cclite.backup.drill
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Resolves the name, connects to the server, applies the version rule, reads and checks
        the whole file, and names the collections it would replace. Nothing is changed, and
        O(confirm) is not required.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run replaces the collections' data.
options:
  drill_port:
    description: With O(drill) - the API port of the server in the drill container (reached on the drill network).
    type: int
    default: 6333
  name:
    description:
      - Backup to restore, as the guide's C(--qdrant FILE) - C(qdrant_backup_20251226_020000.tar.gz),
        C(latest.tar.gz), V(latest), or C(safety/<name>).
    type: str
    default: latest
  collections:
    description:
      - Collections of the backup to restore. Empty restores every collection the backup holds.
    type: list
    elements: str
    default: []
  confirm:
    description:
      - Must be V(true) for the restore to run; the restore replaces the collections' data.
    type: bool
    default: false
  safety_backup:
    description: Back up the collections about to be replaced first (strongly advised).
    type: bool
    default: true
notes:
  - Applications writing to the collections during the restore lose those writes; stop them
    first, as the guide's disaster-recovery scenarios say.
  - Aliases the backup recorded are recreated (moved to the restored collection when they
    point elsewhere); other aliases are left as they are.
  - A failure part way leaves the collections restored so far restored; the message names
    them and the safety backup to roll back with.
seealso:
  - module: cclite.backup.qdrant_backup
  - module: cclite.backup.qdrant_backup_info
"""

EXAMPLES = r"""
- name: Restore every collection from the latest backup
  cclite.backup.qdrant_restore:
    api_key: "{{ vault_qdrant_api_key }}"
    confirm: true

- name: Restore one collection from a backup made before the incident
  cclite.backup.qdrant_restore:
    api_key: "{{ vault_qdrant_api_key }}"
    name: qdrant_backup_20251225_020000.tar.gz
    collections: [knowledge_base]
    confirm: true

- name: Roll back to what the last restore replaced
  cclite.backup.qdrant_restore:
    api_key: "{{ vault_qdrant_api_key }}"
    name: safety/qdrant_safety_20251226_101500.tar.gz
    safety_backup: false
    confirm: true
"""

RETURN = r"""
restore:
  description: The restore's own figures (RV(restored_from) describes the backup).
  returned: success
  type: dict
  contains:
    size:
      description: Bytes of data loaded into the target (the backup's content, decompressed).
      type: int
    duration:
      description: Seconds the restore took, from choosing the backup to the end.
      type: float
rollback:
  description:
    - Where the replaced data is and how to go back to it (C(where), C(how), C(artifact) - the
      safety backup); null without a safety backup.
  returned: success
  type: dict
notes:
  description: What is worth knowing, e.g. that the C(latest) link pointed elsewhere than the newest good backup.
  returned: always
  type: list
  elements: str
restored_from:
  description: The backup restored (name, path, created, size, sha256, legacy).
  returned: always
  type: dict
server_version:
  description: Version of the Qdrant server restored onto.
  returned: always
  type: str
safety_backup:
  description: The safety backup of the collections that were replaced (path, name, size, sha256); null when nothing was replaced.
  returned: always
  type: dict
collections:
  description: The collections restored (null in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Collection name.
      type: str
    points_count:
      description: Points count after the restore (it matched the manifest).
      type: int
    aliases:
      description: Aliases recreated for it.
      type: list
      elements: str
    uploaded_snapshot_removed:
      description: Whether the uploaded snapshot file was found on the server and deleted.
      type: bool
drill:
  description: >-
    With O(drill), also on failure: C(store), C(set), C(backup), C(server) (the drill target), C(ran), C(passed),
    C(started), C(finished), C(duration_seconds), C(restore_seconds) (the measured restore), C(compared), C(problems), C(why).
  returned: with O(drill)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module, _module_restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _drill as qd_drill
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as qd_ops


def main() -> None:
    argument_spec = dict(
        name=dict(type="str", default="latest"),
        collections=dict(type="list", elements="str", default=[]),
        confirm=dict(type="bool", default=False),
        safety_backup=dict(type="bool", default=True),
        drill_port=dict(type="int", default=6333),
    )
    argument_spec.update(qd.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    argument_spec.update(_module.progress_argument_spec())
    argument_spec.update(_module_restore.drill_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        spec = _module_restore.spec_from(p, qd_ops.catalog(p["backup_root"], p["series"]))
        request = qd_ops.RestoreRequest(conn=qd.connection_from(p), spec=spec, collections=p["collections"])
        if p["drill"]:
            return _module_restore.drill(
                module, "qdrant", "", qd.connection_argument_spec(),
                lambda kept: (spec, qd_drill.Drill(request, p["drill_port"], qd.connection_from(kept) if kept else None)),
            )
        return qd_ops.Restore(request).run(module.check_mode)

    _module.run(module, action, ("qdrant", "restore", ""))


if __name__ == "__main__":
    main()
