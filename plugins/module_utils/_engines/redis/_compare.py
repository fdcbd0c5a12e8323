# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Comparing Redis data with what a manifest recorded: keys per database and the sampled keys."""

from __future__ import annotations

import base64
import hashlib
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._restore import Count
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._client import ErrorReply, Session
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._snapshot import LENGTH_COMMANDS


def database_counts(expected: t.Mapping[str, t.Mapping[str, int]], actual: t.Mapping[str, t.Mapping[str, int]]) -> list[Count]:
    """Key counts after a load against the manifest's, for ``_restore.compare``: keys with a
    TTL may have expired since the backup, so a database may hold up to its ``expires`` fewer
    keys; never more, and never fewer than that."""
    counts = []
    for name in sorted(set(expected) | set(actual), key=lambda n: int(n[2:])):
        keys, expires = expected.get(name, {}).get("keys", 0), expected.get(name, {}).get("expires", 0)
        counts.append(Count(name, "keys", actual.get(name, {}).get("keys", 0), keys, keys - expires, "%d with a TTL" % expires))
    return counts


def check_sample(session: Session, sample: t.Sequence[t.Mapping[str, t.Any]], now_ms: int) -> tuple[list[str], int]:
    """Compare a manifest's key sample with a server; returns problems and keys compared."""
    problems: list[str] = []
    compared = 0
    current_db = None
    v7 = True
    for entry in sample:
        expire = entry.get("expire_at_ms")
        if isinstance(expire, int) and 0 <= expire <= now_ms + 1000:
            continue  # it has expired (or is about to) since the backup
        key = base64.b64decode(entry["key_base64"])
        label = "db%d key %s" % (entry["db"], entry.get("key") or "(base64) %s" % entry["key_base64"])
        if entry["db"] != current_db:
            session.call("SELECT", entry["db"])
            current_db = entry["db"]
        kind = session.call("TYPE", key)[0]
        kind = kind.decode() if isinstance(kind, bytes) else "none"
        compared += 1
        if kind != entry["type"]:
            problems.append("%s is a %s, the manifest says %s" % (label, kind, entry["type"]))
            continue
        if kind in LENGTH_COMMANDS and entry.get("length") is not None:
            size = session.call(LENGTH_COMMANDS[kind], key)[0]
            if size != entry["length"]:
                problems.append("%s has length %s, the manifest says %s" % (label, size, entry["length"]))
                continue
        if "sha256" in entry:
            value = session.call("GET", key)[0]
            if hashlib.sha256(value if isinstance(value, bytes) else b"").hexdigest() != entry["sha256"]:
                problems.append("%s has another value than at backup time" % label)
                continue
        if isinstance(expire, int) and v7:
            reply = session.call("PEXPIRETIME", key, allow_error=True)[0]
            if isinstance(reply, ErrorReply):
                v7 = False
            elif reply != expire:
                problems.append("%s expires at %s, the manifest says %s" % (label, reply, expire))
    if current_db not in (None, 0):
        session.call("SELECT", 0)
    return problems, compared
