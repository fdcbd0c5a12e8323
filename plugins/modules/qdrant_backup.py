#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qdrant_backup
short_description: Back up Qdrant collections into the backup catalog
version_added: 0.1.0
description:
  - Backs up Qdrant collections through the REST API only, into
    C(<backup_root>/qdrant/qdrant_backup_YYYYMMDD_HHMMSS.tar.gz) (the guide's layout), with
    C(latest.tar.gz) pointing at the newest good one.
  - "For each collection (O(collections), or every collection): create a snapshot with
    C(wait=false) and poll the snapshot list until it is there with its checksum (at most
    O(snapshot_timeout) seconds); download it in chunks, checking its length and its sha256
    against the server's checksum; add it to the bundle; delete the snapshot from the server
    (also when anything fails), so backups do not fill the server's disk."
  - The bundle is a tar stream compressed on the fly. It holds each collection's snapshot
    (C(collections/<name>.snapshot)) and, last, C(manifest.json) (server version from C(GET /);
    per collection the points count, vectors config, aliases, snapshot name, sha256 and size).
    With O(full_snapshot), it holds one full-storage snapshot (C(full/<name>)) instead.
  - Memory stays constant. A tar member needs its size before its data, so each snapshot is
    downloaded into a temp file in the backup directory first, then copied into the bundle
    and deleted; the extra disk needed there is the size of the largest snapshot.
  - The artifact is written to a temp file and checked as it is written (the bytes that go to
    the file, whose sha256 is recorded, are decompressed on their way - stream, the bundle's
    structure and every snapshot's sha256), and only then renamed into place next to a JSON
    manifest.
    A failure or timeout at any step leaves no artifact and does not move C(latest).
  - With O(retention_days), older backups are deleted afterwards, never the newest one that
    verifies as good. Two runs on the same store and host never overlap (see O(lock_timeout)).
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.qdrant
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.COMPRESSION
  - cclite.backup.catalog.BACKUP_SET
  - cclite.backup.catalog.RETENTION
  - cclite.backup.catalog.PROGRESS
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Connects to the server, checks the collections and the catalog, and returns the path the
        backup would get, the collections and points counts it would record, and what retention
        would delete. No snapshot is created and nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run makes a new backup, and reports C(changed) because of it.
options:
  collections:
    description:
      - Collections to back up (names, not aliases; a collection's aliases are saved with it).
        Empty backs up every collection on the server.
    type: list
    elements: str
    default: []
  full_snapshot:
    description:
      - Take one full-storage snapshot (C(POST /snapshots)) instead of one snapshot per
        collection. Qdrant supports these on single-node deployments only. O(collections) must
        be empty. M(cclite.backup.qdrant_restore) restores the collection snapshots it holds
        through the REST API.
    type: bool
    default: false
  verify:
    description:
      - Check the new artifact as it is written (decompress, bundle structure, every
        snapshot's sha256) before it is put in place.
    type: bool
    default: true
  retention_days:
    description:
      - After a successful backup, delete the backups of this series older than this many
        days, except the newest one that verifies as good. Omit to keep everything.
      - At least V(1); V(0) or less is refused before anything is done.
    type: int
notes:
  - The managed host needs network access to O(url), and C(gzip) (or C(pigz)) or C(zstd).
    Python's standard library does the rest; no Qdrant client package is needed.
  - The points counts are read just before each snapshot; when the collection was written to
    meanwhile, the count read afterwards is recorded too, and checks accept any count between.
  - A sample of three points per collection is read (a scroll with a limit, before the snapshot
    and again after its download; only points read the same both times are kept) for restore
    drills; a sample that cannot be read is a note, not a failed backup.
  - With C(wait=false) the new snapshot is recognised as the one that was not in the list
    before; another tool creating a snapshot of the same collection at the same moment could
    be taken for it. Run one backup tool per server.
  - On a distributed (multi-node) deployment, a collection snapshot taken through one node
    holds only that node's shards; this module targets the guide's single-node server.
  - When O(snapshot_timeout) expires, the snapshot may still appear on the server later; the
    message says how to delete it.
seealso:
  - module: cclite.backup.qdrant_backup_info
  - module: cclite.backup.qdrant_restore
"""

EXAMPLES = r"""
- name: Back up every collection of the local Qdrant (the guide's QDRANT_PORT)
  cclite.backup.qdrant_backup:
    url: http://localhost:6337
    api_key: "{{ vault_qdrant_api_key }}"
    backup_root: /var/backups/cc-lite
    retention_days: 30

- name: Back up two collections over TLS with a private CA, with zstd
  cclite.backup.qdrant_backup:
    url: https://qdrant.internal:6333
    api_key: "{{ vault_qdrant_api_key }}"
    ca_cert: /etc/ssl/certs/internal-ca.pem
    collections: [knowledge_base, faq]
    compression: zstd

- name: Take a full-storage snapshot of a single-node server
  cclite.backup.qdrant_backup:
    full_snapshot: true
"""

RETURN = r"""
artifact:
  description: The backup made (in check mode, the one that would be made; size and sha256 are null).
  returned: always
  type: dict
  contains:
    path:
      description: Absolute path of the artifact.
      type: str
      sample: /var/backups/cc-lite/qdrant/qdrant_backup_20251226_020000.tar.gz
    name:
      description: File name.
      type: str
    size:
      description: Size in bytes of the compressed artifact.
      type: int
    sha256:
      description: SHA-256 of the artifact.
      type: str
    format:
      description: Bundle format.
      type: str
      sample: qdrant-snapshots
    compression:
      description: Compression algorithm.
      type: str
      sample: gzip
    encrypted:
      description: Whether the artifact is encrypted at rest (option O(encrypt)).
      type: bool
    created:
      description: When the artifact was complete (ISO 8601).
      type: str
    duration:
      description: Seconds the backup took.
      type: float
    versions:
      description: Qdrant server version (from C(GET /)).
      type: dict
      sample: {server: 1.19.2}
manifest:
  description: Path of the JSON manifest written next to the artifact.
  returned: always
  type: str
source:
  description: What the backup holds.
  returned: always
  type: dict
  contains:
    server_version:
      description: Version of the Qdrant server.
      type: str
    kind:
      description: V(collections) (one snapshot per collection) or V(full).
      type: str
    collections:
      description: >-
        Per collection, its points count (and C(points_count_after) when it changed during the snapshot), aliases,
        snapshot size, and C(sample) - the first few points (by id) as C(id) and the sha256 of their vector(s) and of
        their payload in canonical JSON (sorted keys, no spaces), which a restore drill compares with the restored
        points; points that changed during the snapshot are left out of it.
      type: dict
    collection_count:
      description: Number of collections.
      type: int
    total_points:
      description: Sum of the points counts.
      type: int
latest:
  description: Path of the C(latest) link, moved to this backup.
  returned: always
  type: str
retention:
  description: What retention did (null without O(retention_days)).
  returned: always
  type: dict
  contains:
    deleted:
      description: Paths deleted (in check mode, that would be deleted).
      type: list
      elements: str
    protected:
      description: The newest good backup, kept whatever its age.
      type: str
    reason:
      description: A sentence on what was kept and why.
      type: str
    generations:
      description: Backups older than the retention in days kept by O(retention_keep), each with the rules that keep it.
      type: dict
      sample: {"qdrant_backup_20251201_020000.tar.gz": ["monthly 2025-12"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core import _retention
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as qd_ops


def main() -> None:
    argument_spec = dict(
        collections=dict(type="list", elements="str", default=[]),
        full_snapshot=dict(type="bool", default=False),
        verify=dict(type="bool", default=True),
        retention_days=dict(type="int"),
    )
    argument_spec.update(qd.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    argument_spec.update(_module.retention_keep_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    argument_spec.update(_module.progress_argument_spec())
    argument_spec.update(_module.set_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        retention_days = _module.retention_days_from(p)
        spec = qd_ops.backup_spec(
            qd_ops.catalog(p["backup_root"], p["series"]),
            _module.compression_from(p),
            full=p["full_snapshot"],
            retention_days=retention_days,
            retention_keep=_retention.keep_from(p),
            verify_after=p["verify"],
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
            encryption=_module.encryption_from(p),
            **_module.set_from(p),
        )
        request = qd_ops.BackupRequest(qd.connection_from(p), spec, p["collections"], p["full_snapshot"])
        result = qd_ops.backup(request, module.check_mode)
        for note in result.pop("notes"):
            module.warn(note)
        verb = "would write" if module.check_mode else "wrote"
        result["msg"] = "%s %s: a new backup of %d Qdrant collection(s) (%s)" % (
            verb, result["artifact"]["path"], result["source"]["collection_count"], ", ".join(result["source"]["collections"]))
        return dict(changed=True, **result)

    _module.run(module, action, ("qdrant", "backup", ""))


if __name__ == "__main__":
    main()
