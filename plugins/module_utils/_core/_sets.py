# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup sets: the backups of the stores that one ``backup.yml`` run made, and which set to restore.

A run writes its id (``backup_run_id``, ``YYYYMMDD_HHMMSS``) into every manifest as ``run_id``,
with the inventory host as ``host``; the backups sharing a run id are one set.

Backups without a run id (the guide's scripts' files, adopted or not, and manifests written
before run ids existed) are grouped by the time stamps in their names: sorted oldest first, a
set starts at the oldest backup not yet in a set and takes, of each other store, the oldest
backup stamped within ``window`` (default 30 minutes) of that first one; a second backup of a
store already in the set starts the next set. Its id is the first backup's stamp.

A set is *complete* when every requested store has a backup in it whose status is ``good``.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import re
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import STAMP, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, check_data

RUN_ID_RE = re.compile(r"\d{8}_\d{6}")
BEFORE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
DEFAULT_WINDOW = datetime.timedelta(minutes=30)
GOOD = "good"


@dataclasses.dataclass
class Member:
    """One store's backup, as a set sees it."""

    store: str
    name: str
    stamp: datetime.datetime  # the time stamp of its name (when it was started)
    run_id: str | None = None
    host: str | None = None
    status: str = GOOD  # good, bad, legacy (no manifest: nothing vouches for it), incomplete
    problem: str = ""

    def as_dict(self) -> dict[str, t.Any]:
        return {"file": self.name, "status": self.status, "problem": self.problem, "time": self.stamp.isoformat()}


@dataclasses.dataclass
class BackupSet:
    run_id: str
    time: datetime.datetime
    members: dict[str, Member]
    legacy: bool = False  # grouped by time stamps, not by a run id

    @property
    def host(self) -> str | None:
        return next((m.host for m in self.members.values() if m.host), None)

    def missing(self, stores: t.Sequence[str]) -> list[str]:
        """What keeps the set from being complete, one phrase per store."""
        out = []
        for store in stores:
            member = self.members.get(store)
            if member is None:
                out.append("%s: no backup in the set" % store)
            elif member.status != GOOD:
                out.append("%s: %s is %s%s" % (store, member.name, member.status, " (%s)" % member.problem if member.problem else ""))
        return out

    def complete(self, stores: t.Sequence[str]) -> bool:
        return not self.missing(stores)

    def as_dict(self, stores: t.Sequence[str]) -> dict[str, t.Any]:
        return {
            "run_id": self.run_id,
            "time": self.time.isoformat(),
            "host": self.host,
            "legacy": self.legacy,
            "complete": self.complete(stores),
            "missing": self.missing(stores),
            "stores": {store: m.as_dict() for store, m in sorted(self.members.items())},
        }


def local_status(entry: Entry, read_data: bool = False) -> tuple[str, str]:
    """A local backup's status for a set: ``good`` once its manifest vouches for it (its size,
    and with ``read_data`` its sha256 and stream), else why not."""
    if entry.manifest_error:
        return "bad", entry.manifest_error
    if entry.legacy:
        return "legacy", "no manifest: run adopt.yml to check it and make it part of a set"
    recorded = (entry.manifest or {}).get("artifact", {}).get("size", (entry.journal or {}).get("size"))
    if recorded != entry.size:
        return "bad", "%d bytes, its manifest says %s" % (entry.size, recorded)
    if read_data:
        report = Report(entry.name, entry.path)
        check_data(report, entry)
        if report.problems:
            return "bad", "; ".join(report.problems)
    return GOOD, ""


def local_members(catalog: Catalog, host: str = "", read_data: bool = False) -> tuple[list[Member], int]:
    """The backups of a local catalog as set members, and how many belong to another host
    than ``host`` (left out). A backup whose manifest has no run id belongs to any host."""
    members, others = [], 0
    for entry in catalog.entries():
        owner = _manifest.owner(entry.manifest)
        if host and owner and owner != host:
            others += 1
            continue
        status, problem = local_status(entry, read_data)
        run_id = (entry.manifest or {}).get("run_id") or None
        members.append(Member(catalog.layout.store, entry.name, entry.stamp, run_id, owner, status, problem))
    return members, others


def run_time(run_id: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(run_id, STAMP).astimezone()
    except ValueError:
        return None


def group(members: t.Iterable[Member], window: datetime.timedelta = DEFAULT_WINDOW) -> list[BackupSet]:
    """The sets of ``members``, newest first (see the module docstring for the rule)."""
    by_run: dict[str, list[Member]] = {}
    loose: list[Member] = []
    for member in members:
        if member.run_id:
            by_run.setdefault(member.run_id, []).append(member)
        else:
            loose.append(member)
    sets: list[BackupSet] = []
    for run_id, found in by_run.items():
        chosen: dict[str, Member] = {}
        for member in sorted(found, key=lambda m: (m.stamp, m.name), reverse=True):
            chosen.setdefault(member.store, member)  # a store backed up twice in one run: the newer
        sets.append(BackupSet(run_id, run_time(run_id) or min(m.stamp for m in found), chosen))
    current: BackupSet | None = None
    for member in sorted(loose, key=lambda m: (m.stamp, m.name)):
        if current is None or member.store in current.members or member.stamp - current.time > window:
            current = BackupSet(member.stamp.strftime(STAMP), member.stamp, {}, legacy=True)
            sets.append(current)
        current.members[member.store] = member
    sets.sort(key=lambda s: (s.time, not s.legacy, s.run_id), reverse=True)
    return sets


def parse_before(text: str) -> datetime.datetime:
    """``YYYY-MM-DD HH:MM[:SS]`` in the managed host's local time."""
    for fmt in BEFORE_FORMATS:
        try:
            return datetime.datetime.strptime(text.strip(), fmt).astimezone()
        except ValueError:
            continue
    raise ConfigError(
        "restore_before is %r, not a time like '2026-12-01 03:00' or '2026-12-01 03:00:00' (YYYY-MM-DD HH:MM[:SS], "
        "the host's local time): fix its format" % text
    )


@dataclasses.dataclass
class Selection:
    chosen: BackupSet
    notes: list[str]


def newest_notes(members: t.Sequence[Member], sets: t.Sequence[BackupSet], stores: t.Sequence[str]) -> list[str]:
    """Say so when the newest backups of the stores belong to different sets."""
    owner = {id(m): s for s in sets for m in s.members.values()}
    newest: dict[str, tuple[Member, BackupSet]] = {}
    for member in sorted(members, key=lambda m: (m.stamp, m.name), reverse=True):
        if member.store in stores and member.store not in newest and id(member) in owner:
            newest[member.store] = (member, owner[id(member)])
    ids = {s.run_id for _m, s in newest.values()}
    if len(ids) <= 1:
        return []
    return [
        "the newest backups of the stores belong to different sets (%s): restoring them file by file would mix "
        "points in time; a set is restored whole"
        % ", ".join("%s %s from set %s" % (store, m.name, s.run_id) for store, (m, s) in sorted(newest.items()))
    ]


def select(
    sets: t.Sequence[BackupSet],
    stores: t.Sequence[str],
    wanted: str = "latest",
    before: str = "",
    where: str = "",
    purpose: str = "restore",
    rng: t.Any = random,
) -> Selection:
    """The set to restore (or, ``purpose="verify"``, to check or drill): the newest complete one,
    the one named, or the newest complete one at or before ``before``; to verify also
    ``random``, a random complete set older than the newest complete one. Raises
    :class:`ConfigError` naming the problem and the fix."""
    wanted = (wanted or "latest").strip()
    notes: list[str] = []
    option = "verify_set" if purpose == "verify" else "restore_set"
    if not stores:
        raise ConfigError("no store to %s: set backup_stores (or restore_stores) to postgresql, redis and/or qdrant" % purpose)
    if wanted != "latest" and before:
        raise ConfigError(
            "both %s=%s and restore_before=%s are given: name a set, or give a time, not both" % (option, wanted, before)
        )
    if wanted == "random" and purpose == "verify":
        return Selection(random_older(sets, stores, where, rng), notes)
    if wanted != "latest":
        if not RUN_ID_RE.fullmatch(wanted):
            raise ConfigError(
                "%s is %r: give 'latest'%s or a run id like 20261201_020000 (YYYYMMDD_HHMMSS; list.yml shows "
                "the sets)" % (option, wanted, ", 'random'" if purpose == "verify" else "")
            )
        found = [s for s in sets if s.run_id == wanted]
        if not found:
            known = ", ".join(s.run_id for s in sets[:10]) or "none"
            raise ConfigError(
                "there is no backup set %s%s; the sets there are (newest first): %s. Run list.yml to see them, and "
                "pass one of them as %s" % (wanted, " in %s" % where if where else "", known, option)
            )
        chosen = found[0]
        if not chosen.complete(stores):
            fix = (
                "Verify or drill only the stores it holds (-e '{\"backup_stores\": [...]}'), or pick another set from list.yml"
                if purpose == "verify" else
                "Restore only the stores it holds (-e '{\"restore_stores\": [...]}'), name a file per store "
                "(restore_<store>_file), or pick another set from list.yml"
            )
            raise ConfigError(
                "backup set %s is not complete for %s: %s. %s"
                % (wanted, ", ".join(stores), "; ".join(chosen.missing(stores)), fix)
            )
        return Selection(chosen, notes)
    complete = [s for s in sets if s.complete(stores)]
    if before:
        limit = parse_before(before)
        eligible = [s for s in complete if s.time <= limit]
        if not eligible:
            oldest = complete[-1].time.strftime("%Y-%m-%d %H:%M:%S") if complete else None
            raise ConfigError(
                "no complete backup set of %s at or before %s%s: %s"
                % (", ".join(stores), limit.strftime("%Y-%m-%d %H:%M:%S"), " in %s" % where if where else "",
                   "the oldest complete set is from %s; give a later restore_before" % oldest if oldest
                   else "there is no complete set at all; run backup.yml for every store, or name a file per store")
            )
        chosen = eligible[0]
    else:
        if not complete:
            detail = "; ".join("set %s: %s" % (s.run_id, ", ".join(s.missing(stores))) for s in sets[:3]) or "no backup at all"
            raise ConfigError(
                "no complete backup set of %s%s (%s). Run backup.yml for every store, restore only the stores a set holds "
                "(restore_stores), or name a file per store (restore_<store>_file)"
                % (", ".join(stores), " in %s" % where if where else "", detail)
            )
        chosen = complete[0]
    newer = [s for s in sets if s.time > chosen.time and not s.complete(stores)]
    if newer and not before:
        notes.append(
            "newer sets are not complete and were passed over: %s"
            % "; ".join("%s (%s)" % (s.run_id, ", ".join(s.missing(stores))) for s in newer[:3])
        )
    return Selection(chosen, notes)


def random_older(sets: t.Sequence[BackupSet], stores: t.Sequence[str], where: str = "", rng: t.Any = random) -> BackupSet:
    """A random complete set older than the newest complete one (the monthly drill of an older set)."""
    complete = [s for s in sets if s.complete(stores)]
    if len(complete) < 2:
        raise ConfigError(
            "verify_set=random needs a complete backup set of %s older than the newest complete one, and %s has %d "
            "complete set(s): run backup.yml again (or wait for the next night), or give verify_set=latest"
            % (", ".join(stores), where or "the backup root", len(complete))
        )
    return rng.choice(complete[1:])
