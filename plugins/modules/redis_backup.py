#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_backup
short_description: Back up Redis into the backup catalog
version_added: 0.1.0
description:
  - With O(method=rdb) (the default), asks Redis for a snapshot with C(BGSAVE), never C(SAVE);
    the server forks and keeps serving. The module waits for I(that) save by the C(rdb_saves)
    counter and C(rdb_bgsave_in_progress) in C(INFO persistence), then reads
    C(rdb_last_bgsave_status) (C(LASTSAVE) has one-second resolution and misses saves in the
    same second). A failed or stalled save fails the task with the reason from C(INFO) and a
    hint at C(vm.overcommit_memory).
  - The key count of every database, and a small sample of keys, are taken with writes paused
    (C(CLIENT PAUSE WRITE)) for the instant between counting and the fork, so the manifest
    describes exactly the data in the RDB. The pause lasts a few milliseconds, and never more
    than O(pause_writes_ms).
  - The RDB file is then streamed through compression into
    C(<backup_root>/redis/redis_backup_YYYYMMDD_HHMMSS.rdb.gz) with constant memory - from the
    container (C(docker exec cat /data/dump.rdb)) or from the server's C(dir) on this host. When
    the file is not reachable (a server elsewhere), it comes over the replication protocol
    (C(redis-cli --rdb) to a temp file) instead. If another save replaced the file while it was
    copied, the backup is taken again.
  - In O(mode=host) with the server's C(dir) on this host, the RDB is streamed while the save
    writes it (the save child's temp file, read as it grows, into the compressor and into
    C(redis-check-rdb) reading the stream), so the save and the compression overlap; once the
    save has ended, the file Redis renamed into place must be the file that was read (same
    inode), else the backup is taken again from the finished file.
  - With O(method=logical), for managed Redis that blocks C(SYNC) and C(BGSAVE), every key is
    read with C(SCAN), C(DUMP) and its absolute expiry into
    C(<backup_root>/redis/redis_backup_YYYYMMDD_HHMMSS.keys.gz), streamed, one batch of keys in
    memory at a time. See the notes for the format and what it does not guarantee.
  - While the RDB is copied, C(redis-check-rdb) reads the same file where Redis wrote it (in the
    container in O(mode=docker)), or the stream as it is copied (above), in parallel; it must pass, and find exactly the keys counted at
    the fork. The artifact is written to a temp file and checked as it is written (the bytes
    that go to the file, whose sha256 is recorded, are decompressed on their way - stream
    integrity, whose CRC covers every byte, the RDB's header and end marker; or the logical
    file's full structure) and only then renamed into place, next to a JSON manifest (sizes, sha256,
    versions, key counts per database, C(used_memory), Redis and RDB versions, key sample, what
    C(redis-check-rdb) counted). C(latest.rdb.gz) moves only after that.
  - With O(retention_days), older backups are deleted afterwards, never the newest one that
    verifies as good. Two runs on the same store and host never overlap (see O(lock_timeout)).
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.redis
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
      - Connects to the server, reads its version and key counts, decides how the RDB would be
        transferred, checks the catalog, and returns the path the backup would get and what
        retention would delete. Nothing is written and no save is started.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run makes a new backup, and reports C(changed) because of it.
options:
  method:
    description:
      - V(rdb) takes a consistent snapshot with C(BGSAVE) (or over replication).
      - V(logical) dumps every key with C(SCAN) + C(DUMP); use it only where V(rdb) is impossible.
    type: str
    choices: [rdb, logical]
    default: rdb
  rdb_transfer:
    description:
      - How the RDB reaches the backup, for O(method=rdb).
      - V(file) reads the server's own RDB file after C(BGSAVE) (in the container, or in the
        server's C(dir) on this host).
      - V(replication) streams a fresh RDB over the replication protocol with
        C(redis-cli --rdb) into a temp file beside the backups (O(mode=host) only). The server
        forks for it as for a replica; key counts are then approximate.
      - V(auto) uses V(file) when the server's C(dir) is readable here, V(replication) otherwise.
    type: str
    choices: [auto, file, replication]
    default: auto
  bgsave_timeout:
    description:
      - Seconds to wait for the save (or the replication transfer) to finish. A save still running
        then fails the task; it is left running.
    type: int
    default: 3600
  pause_writes_ms:
    description:
      - Longest time writes may be paused (C(CLIENT PAUSE ... WRITE)) while keys are counted and
        sampled and the fork starts; typically a few milliseconds. V(0) never pauses writes, and
        the manifest's counts are then approximate.
    type: int
    default: 1000
  sample_keys:
    description:
      - Keys per database (at most 16 databases) recorded in the manifest with their type,
        length, expiry and, for strings up to 64 KiB, a sha256 of the value. The deep
        verification compares them with the backup. V(0) records none.
    type: int
    default: 3
  verify:
    description: Check the new artifact as it is written (see the description) before it is put in place.
    type: bool
    default: true
  retention_days:
    description:
      - After a successful backup, delete the backups of this method and series older than this
        many days, except the newest one that verifies as good. Omit to keep everything.
      - At least V(1); V(0) or less is refused before anything is done.
    type: int
notes:
  - The managed host needs the C(docker) CLI (O(mode=docker)) or C(redis-cli) (O(mode=host),
    package C(redis-tools)), and C(gzip) (or C(pigz)) or C(zstd). C(redis-check-rdb) runs in the
    container when it runs, else on this host.
  - The ACL user needs C(INFO), C(BGSAVE), C(CONFIG GET), C(CLIENT PAUSE) and C(CLIENT UNPAUSE),
    C(SELECT), C(RANDOMKEY), C(TYPE) and read commands for O(method=rdb); C(SYNC) for
    O(rdb_transfer=replication); C(SCAN), C(DUMP) and C(PEXPIRETIME) (C(PTTL) and C(TIME) before
    Redis 7) for O(method=logical).
  - "Logical format, version 1 (C(.keys) files, before compression): the line
    C(CCLITE-REDIS-LOGICAL 1); one line of JSON (C(format), C(version), C(redis_version),
    C(created)); then records, each starting with one byte - C(D) + uint32 database number
    (selects the database of the records that follow); C(K) + uint32 key length + key bytes +
    int64 absolute expiry in Unix milliseconds (-1 for none) + uint32 payload length + the
    C(DUMP) payload (which carries its RDB version and CRC64); C(E) + uint64 number of C(K)
    records + one line of JSON with the key count and keys-with-expiry count per database.
    Integers are big-endian. Nothing follows C(E); a file without it is truncated."
  - "What the logical method does not guarantee: it is not a point-in-time image. Keys are
    read a batch at a time while the server keeps changing, so keys written, deleted or
    renamed during the dump may be missing or stale, related keys may come from different
    moments, and C(SCAN) may return a key twice (the restore counts such duplicates). C(DUMP)
    payloads restore only on a Redis whose RDB format is the same or newer. Key counts in its
    manifest are the records written, not a snapshot of the server."
seealso:
  - module: cclite.backup.redis_backup_info
  - module: cclite.backup.redis_restore
"""

EXAMPLES = r"""
- name: Back up the cc-lite-redis container as the guide does, with a password from vault
  cclite.backup.redis_backup:
    login_password: "{{ vault_redis_password }}"
    backup_root: /var/backups/cc-lite
    retention_days: 30

- name: Back up a Redis on this host, as an ACL user, with zstd
  cclite.backup.redis_backup:
    mode: host
    login_user: backup
    login_password: "{{ vault_redis_backup_password }}"
    compression: zstd

- name: Back up a managed Redis over TLS that allows neither SYNC nor BGSAVE
  cclite.backup.redis_backup:
    mode: host
    login_host: cache.example.internal
    login_port: 6380
    tls: true
    ca_cert: /etc/ssl/certs/managed-redis-ca.pem
    login_password: "{{ vault_redis_password }}"
    method: logical
"""

RETURN = r"""
artifact:
  description: The backup made (in check mode, the one that would be made; size and sha256 are null).
  returned: always
  type: dict
  contains:
    path:
      description: Absolute path of the artifact.
      returned: always
      type: str
      sample: /var/backups/cc-lite/redis/redis_backup_20251226_020000.rdb.gz
    name:
      description: File name.
      returned: always
      type: str
    size:
      description: Size in bytes of the compressed artifact.
      returned: always
      type: int
    sha256:
      description: SHA-256 of the artifact.
      returned: always
      type: str
    format:
      description: V(rdb) or V(logical).
      returned: always
      type: str
      sample: rdb
    compression:
      description: Compression algorithm.
      returned: always
      type: str
      sample: gzip
    encrypted:
      description: Whether the artifact is encrypted at rest (option O(encrypt)).
      type: bool
      returned: always
    created:
      description: When the artifact was complete (ISO 8601).
      returned: always
      type: str
    duration:
      description: Seconds the save and transfer took.
      returned: always
      type: float
    versions:
      description: Server and redis-cli versions.
      returned: always
      type: dict
manifest:
  description: Path of the manifest written next to the artifact.
  returned: always
  type: str
source:
  description: What was backed up, as recorded in the manifest (in check mode, what the server holds now).
  returned: always
  type: dict
  contains:
    method:
      description: V(rdb) or V(logical).
      returned: always
      type: str
    transfer:
      description: V(file), V(replication) or V(logical).
      returned: always
      type: str
    redis_version:
      description: Version of the server.
      returned: always
      type: str
    rdb_version:
      description: RDB format version (from the RDB header C(REDIS00nn), or of the DUMP payloads).
      returned: always
      type: int
    used_memory:
      description: The server's C(used_memory) in bytes.
      returned: always
      type: int
    databases:
      description: 'Key count and keys with a TTL per database, for example C({db0: {keys: 5, expires:
        2}})'
      returned: always
      type: dict
    keys:
      description: Keys in all databases.
      returned: always
      type: int
    expires:
      description: Keys with a TTL in all databases.
      returned: always
      type: int
    counts_exact:
      description: True when the counts describe exactly the data in the backup (writes were paused at
        the fork).
      returned: always
      type: bool
    writes_paused_ms:
      description: How long writes were paused, in milliseconds (null when not paused).
      returned: always
      type: float
    save_seconds:
      description: Seconds from BGSAVE to the end of the save (when the RDB is streamed while the save
        writes it, to when the end was seen, within a few MB of copying).
      returned: always
      type: float
    sample:
      description: The key sample (db, key, key_base64, type, length, sha256, expire_at_ms).
      returned: always
      type: list
      elements: dict
    rdb_check:
      description: What C(redis-check-rdb) counted in the RDB (keys, expires, already_expired); null when it is not installed.
      returned: always
      type: dict
    skipped:
      description: Logical method only - keys that vanished between SCAN and DUMP.
      returned: always
      type: int
    notes:
      description: What limits the counts or the image, one sentence each.
      returned: always
      type: list
      elements: str
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
      returned: always
      type: list
      elements: str
    protected:
      description: The newest good backup, kept whatever its age.
      returned: always
      type: str
    reason:
      description: A sentence on what was kept and why.
      returned: always
      type: str
    generations:
      description: Backups older than the retention in days kept by O(retention_keep), each with the rules that keep it.
      type: dict
      returned: always
      sample: {"redis_backup_20251201_020000.rdb.gz": ["monthly 2025-12"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core import _retention
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops


def main() -> None:
    argument_spec = dict(
        method=dict(type="str", default="rdb", choices=["rdb", "logical"]),
        rdb_transfer=dict(type="str", default="auto", choices=["auto", "file", "replication"]),
        bgsave_timeout=dict(type="int", default=3600),
        pause_writes_ms=dict(type="int", default=1000),
        sample_keys=dict(type="int", default=3, no_log=False),
        verify=dict(type="bool", default=True),
        retention_days=dict(type="int"),
    )
    argument_spec.update(rd.connection_argument_spec())
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
        conn = rd.connection_from(p)
        spec = _ops.BackupSpec(
            catalog=rd_ops.catalog(p["backup_root"], p["method"], p["series"]),
            compression=_module.compression_from(p),
            fmt=p["method"],
            content=rd_ops.content_factory(conn, p["method"], tool=False),
            retention_days=retention_days,
            retention_keep=_retention.keep_from(p),
            verify_after=p["verify"],
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
            encryption=_module.encryption_from(p),
            **_module.set_from(p),
        )
        settings = rd_ops.Settings(p["method"], p["rdb_transfer"], p["pause_writes_ms"], p["sample_keys"], p["bgsave_timeout"])
        result = rd_ops.backup(rd_ops.BackupRequest(conn, spec, settings), module.check_mode)
        verb = "would write" if module.check_mode else "wrote"
        result["msg"] = "%s %s: a new %s backup of %s" % (verb, result["artifact"]["path"], p["method"], conn.describe())
        return dict(changed=True, **result)

    _module.run(module, action, ("redis", "backup", ""))


if __name__ == "__main__":
    main()
