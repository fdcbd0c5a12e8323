# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: where backups live, how they are compressed, and the rules that check them."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _module.catalog_argument_spec().
    DOCUMENTATION = r"""
options:
  backup_root:
    description:
      - Root of the backup tree on the managed host (the guide's C(BACKUP_DIR)). Each store
        keeps its backups in a directory below it (C(postgresql/), C(redis/), C(qdrant/)).
    type: path
    default: /var/backups/cc-lite
  series:
    description:
      - Name of a series of backups, when one store keeps several (for example one per
        database). It becomes part of the file names
        (C(postgres_backup_<series>_YYYYMMDD_HHMMSS.sql.gz), C(latest_<series>.sql.gz)).
      - Empty gives the guide's names exactly.
    type: str
    default: ""
  lock_timeout:
    description:
      - Seconds to wait for another run on the same store and host to finish. After that the
        module fails and names the run that holds the lock. A killed run never holds it.
    type: int
    default: 600
"""

    # Matches the size rules and mode of _module.adopt_argument_spec() (the catalog's options are DOCUMENTATION).
    ADOPT = r"""
options:
  min_size_bytes:
    description: A backup smaller than this is not adopted (it is probably empty).
    type: int
    default: 1024
  size_drop_ratio:
    description:
      - A backup smaller than this share of the median size of the five before it is not adopted
        (a sharp drop usually means lost data).
    type: float
    default: 0.5
  fail_on_problems:
    description:
      - Fail when a legacy backup does not pass, listing every problem (the manifests of the
        backups that passed are still written).
      - By default the module succeeds and lists them in RV(failed_adoption) and RV(problems).
    type: bool
    default: false
  file_mode:
    description: Mode of the manifests written (octal string).
    type: raw
    default: "0600"
"""

    # Matches _module.set_argument_spec().
    BACKUP_SET = r"""
options:
  run_id:
    description:
      - Id of the C(backup.yml) run this backup is part of (its C(backup_run_id),
        C(YYYYMMDD_HHMMSS)), written into the manifest as C(run_id). The backups of the stores
        that share a run id form a backup set (M(cclite.backup.backup_set_info)).
      - Empty writes no run id; such a backup joins a set by its time stamp, like a legacy one.
    type: str
    default: ""
  host:
    description:
      - The inventory name of the host, written into the manifest as C(host) together with
        O(run_id). It keeps the series of hosts that share a bucket apart.
      - Empty records the machine's name instead.
    type: str
    default: ""
"""

    # Matches _module.encryption_argument_spec().
    ENCRYPTION = r"""
options:
  encrypt:
    description:
      - Encrypt the backups this module writes (a backup, or a restore's safety backup) at rest,
        as they are written, with O(encryption_key) (the role variable C(backup_local_encryption)).
        The format is the off-site copies' C(cclite-aead-v1) (AES-256-GCM in 1 MiB chunks, a key
        per file); the manifest records it in C(artifact.encryption) with the key id, never the
        key, and C(artifact.sha256) is that of the encrypted bytes on disk, so checks that do not
        read the data need no key.
      - Needs the Python library C(cryptography) on the managed host.
      - Directory-format PostgreSQL backups cannot be encrypted (refused).
      - Backups already written keep their form; encrypted and plaintext backups may be mixed.
    type: bool
    default: false
  encryption_key:
    description:
      - At least 32 characters of random key material (vault it), the same key as the
        off-site copies' (C(backup_s3_encryption_key)).
      - Every encrypted backup is decrypted with it as it is read (checks, restores, drills,
        adoption); a backup encrypted with another key, or read without one, fails with a
        message naming the key ids, before anything is changed.
      - Never put on a command line, logged or returned.
    type: str
    default: ""
  encryption_key_file:
    description:
      - File on the managed host holding the key, instead of O(encryption_key)
        (C(backup_s3_encryption_key_file)).
    type: path
    default: ""
"""

    # Matches _module.compression_argument_spec().
    COMPRESSION = r"""
options:
  compression:
    description:
      - V(gzip) gives the guide's C(.gz) files; C(pigz) is used when installed (same format,
        all cores). V(zstd) (C(.zst)) is several times faster and needs the C(zstd) program.
    type: str
    choices: [gzip, zstd]
    default: gzip
  compression_level:
    description:
      - Compression level; default 6 for gzip (as the C(gzip) program), 1 for zstd.
      - zstd is the option for speed. On a 977 MB plain dump, level 1 took 5.1 s of CPU against
        7.7 s for level 3 and gave a smaller file (240 MB against 273 MB); levels 1 to 3
        differ little in size on SQL text, much in time.
      - On text-heavy data zstd level 1 makes files a little larger than gzip level 6 (407 MB
        against 383 MB on the benchmark's 1.2 GB mixed dump) in a seventh of the time.
    type: int
  compression_threads:
    description: Threads for pigz or zstd; V(0) uses every core.
    type: int
    default: 0
  file_mode:
    description: Mode of the artifacts and manifests written (octal string).
    type: raw
    default: "0600"
"""

    # Matches _module.progress_argument_spec().
    PROGRESS = r"""
options:
  progress_file:
    description:
      - Keep a small status file at this path while the module works (bytes so far, the
        expected size, the rate, the time left, the phase, and whether the store's point in
        time is fixed), which the C(cclite.backup.backup_job) action reads to show progress.
      - It holds numbers and names only, is written mode 0600 (its directory is made 0700 when
        missing) and is removed when the module ends. Omit for no file.
    type: path
"""

    # Matches _module.rules_argument_spec().
    # Matches _module.retention_keep_argument_spec().
    RETENTION = r"""
options:
  retention_keep:
    description:
      - Generations kept beyond O(retention_days), as restic's and borg's C(--keep-daily),
        C(--keep-weekly), C(--keep-monthly) choose them. A backup older than the retention in
        days is kept when a rule picks it; each rule takes the newest backup of each day (ISO
        week, calendar month) that has one, newest first, until it has N. The newest good
        backup is kept whatever the rules say.
      - In check mode nothing is deleted and the result lists what would be.
    type: dict
    suboptions:
      daily:
        description: How many days to keep the newest backup of.
        type: int
        default: 0
      weekly:
        description: How many ISO weeks to keep the newest backup of.
        type: int
        default: 0
      monthly:
        description: How many calendar months to keep the newest backup of.
        type: int
        default: 0
"""

    RULES = r"""
options:
  max_age_hours:
    description: The newest backup must not be older than this (the guide's C(MAX_AGE_HOURS)).
    type: float
    default: 25
  min_size_bytes:
    description: A backup smaller than this is reported as suspiciously small.
    type: int
    default: 1024
  size_drop_ratio:
    description:
      - A backup smaller than this share of the median size of the five before it is reported
        (a sharp drop usually means lost data).
    type: float
    default: 0.5
"""
