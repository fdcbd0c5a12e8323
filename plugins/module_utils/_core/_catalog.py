# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup catalog: the guide's layout and names, ``latest`` links, listing and retention.

Layout (the guide's, exactly)::

    <backup_root>/postgresql/postgres_backup_YYYYMMDD_HHMMSS.sql.gz
    <backup_root>/postgresql/latest.sql.gz -> postgres_backup_YYYYMMDD_HHMMSS.sql.gz
    <backup_root>/logs/

A *series* separates several backups of one store on one host (for PostgreSQL, several
databases): its name goes into the file names (``postgres_backup_<series>_<stamp>.sql.gz``,
``latest_<series>.sql.gz``). The default series is empty: the guide's names.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import stat
import statistics
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import EXTENSIONS, algorithm_of
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError

STAMP = "%Y%m%d_%H%M%S"
SERIES_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*(?:_[A-Za-z0-9.-]+)*")
SIDECARS = (_manifest.SUFFIX,)
STALE_PARTIAL_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one store names its files."""

    store: str  # directory under backup_root, e.g. "postgresql"
    prefix: str  # e.g. "postgres_backup"
    content: str  # content extension, e.g. ".sql"
    subdir: str = ""

    @property
    def relative_dir(self) -> str:
        return os.path.join(self.store, self.subdir) if self.subdir else self.store

    def safety(self) -> "Layout":
        """Where restores keep the copy of the data they are about to replace."""
        return Layout(self.store, self.prefix.replace("_backup", "_safety"), self.content, "safety")


POSTGRESQL = Layout("postgresql", "postgres_backup", ".sql")
REDIS = Layout("redis", "redis_backup", ".rdb")
QDRANT = Layout("qdrant", "qdrant_backup", ".tar")


@dataclasses.dataclass
class Entry:
    """One backup file of the catalog."""

    name: str
    path: str
    stamp: datetime.datetime  # from the name, local time of the host that made it
    series: str
    size: int
    manifest: dict[str, t.Any] | None
    manifest_error: str | None = None  # the manifest exists but cannot be read

    @property
    def algorithm(self) -> str:
        return algorithm_of(self.name)

    @property
    def legacy(self) -> bool:
        return self.manifest is None and self.manifest_error is None

    @property
    def created(self) -> datetime.datetime:
        ended = _manifest.ended(self.manifest) if self.manifest else None
        return ended or self.stamp

    def age_hours(self, now: datetime.datetime) -> float:
        return (now - self.created).total_seconds() / 3600.0

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "name": self.name,
            "path": self.path,
            "created": self.created.isoformat(),
            "size": self.size,
            "sha256": (self.manifest or {}).get("artifact", {}).get("sha256"),
            "duration": (self.manifest or {}).get("duration_seconds"),
            "compression": self.algorithm,
            "series": self.series,
            "legacy": self.legacy,
            "manifest": _manifest.path_for(self.path) if self.manifest else None,
        }


@dataclasses.dataclass
class PruneResult:
    deleted: list[str]
    protected: str | None
    reason: str


def local_now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


class Catalog:
    """The files of one store (and series) under ``backup_root``."""

    def __init__(self, root: str, layout: Layout, series: str = "") -> None:
        if not root or not os.path.isabs(root):
            raise ConfigError("backup_root must be an absolute path, got %r" % root)
        if series and not SERIES_RE.fullmatch(series):
            raise ConfigError(
                "cannot use %r in backup file names: use letters, digits, '.', '-' and single '_'" % series
            )
        self.root = root
        self.layout = layout
        self.series = series
        self.directory = os.path.join(root, layout.relative_dir)
        infix = "_%s" % series if series else ""
        self._pattern = re.compile(
            r"%s%s_(?P<stamp>\d{8}_\d{6})%s(?P<comp>%s)"
            % (
                re.escape(layout.prefix),
                re.escape(infix),
                re.escape(layout.content),
                "|".join(re.escape(e) for e in EXTENSIONS.values()),
            )
        )

    # names ---------------------------------------------------------------------------------

    def latest_name(self, extension: str) -> str:
        base = "latest_%s" % self.series if self.series else "latest"
        return base + self.layout.content + extension

    def latest_names(self) -> list[str]:
        return [self.latest_name(ext) for ext in EXTENSIONS.values()]

    def file_name(self, stamp: datetime.datetime, extension: str) -> str:
        infix = "_%s" % self.series if self.series else ""
        return "%s%s_%s%s%s" % (self.layout.prefix, infix, stamp.strftime(STAMP), self.layout.content, extension)

    def parse(self, name: str) -> datetime.datetime | None:
        match = self._pattern.fullmatch(name)
        if not match:
            return None
        try:
            return datetime.datetime.strptime(match.group("stamp"), STAMP).astimezone()
        except ValueError:
            return None

    # writing -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store and logs directories, private to the owner."""
        for directory in (self.directory, os.path.join(self.root, "logs")):
            os.makedirs(directory, mode=0o700, exist_ok=True)

    def preflight(self) -> None:
        """Fail before any work when the catalog could not take a new backup."""
        for name in self.latest_names():
            path = os.path.join(self.directory, name)
            if os.path.lexists(path) and not os.path.islink(path):
                raise ConfigError(
                    "%s is a regular file, not a link; cclite.backup will not overwrite it. "
                    "Rename it to a backup name or move it away, then run again." % path
                )

    def new_path(self, extension: str) -> str:
        """A fresh name for a backup made now; waits for the next second if the name is taken."""
        for _attempt in range(3):
            path = os.path.join(self.directory, self.file_name(local_now(), extension))
            if not os.path.lexists(path):
                return path
            time.sleep(1.0 - (time.time() % 1.0) + 0.01)
        raise ConfigError("cannot find a free backup name in %s" % self.directory)

    def point_latest(self, entry_path: str) -> str:
        """Point ``latest`` at a good artifact (atomically) and drop stale links of other extensions."""
        name = os.path.basename(entry_path)
        link = os.path.join(self.directory, self.latest_name(EXTENSIONS[algorithm_of(name)]))
        tmp = os.path.join(self.directory, ".%s.%d.partial" % (os.path.basename(link), os.getpid()))
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, link)
        for other in self.latest_names():
            other_path = os.path.join(self.directory, other)
            if other_path != link and os.path.islink(other_path):
                os.unlink(other_path)
        return link

    # reading -------------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Backups of this series, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stamp = self.parse(name)
            path = os.path.join(self.directory, name)
            if stamp is None or os.path.islink(path) or not os.path.isfile(path):
                continue
            found.append(self._entry(name, path, stamp))
        found.sort(key=lambda e: (e.stamp, e.name), reverse=True)
        return found

    def history(self, name: str) -> tuple[Entry, list[int]] | None:
        """The backup ``name`` and the sizes of the backups of the series made before it, newest
        first; ``None`` when the catalog does not hold it."""
        entries = self.entries()
        for index, entry in enumerate(entries):
            if entry.name == name:
                return entry, [e.size for e in entries[index + 1:]]
        return None

    def latest(self) -> Entry | None:
        """What ``latest`` points to; the newest backup when there is no link."""
        for name in self.latest_names():
            link = os.path.join(self.directory, name)
            if os.path.islink(link) and os.path.exists(link):
                return self.resolve(os.path.basename(os.path.realpath(link)))
        entries = self.entries()
        return entries[0] if entries else None

    def resolve(self, name: str) -> Entry:
        """A backup by name (``latest``, a latest link name, or a backup file name).

        Names are file names inside the store's directory: anything that points elsewhere
        (``../``, another directory, a link out of the directory) is refused.
        """
        if not name:
            raise ConfigError("no backup name given: use a file name from the list, or 'latest'")
        if name == "latest" or name in self.latest_names():
            entry = self.latest()
            if entry is None:
                raise ConfigError("there is no backup in %s yet: run a backup first, or name a file" % self.directory)
            return entry
        base = os.path.basename(name)
        if os.path.isabs(name):
            if os.path.dirname(os.path.realpath(name)) != os.path.realpath(self.directory):
                raise ConfigError(
                    "%s is outside %s: restore only from the backup directory (copy the file there first)"
                    % (name, self.directory)
                )
        elif base != name or name in (".", ".."):
            raise ConfigError("%r is not a backup file name: give a name from the list, without directories" % name)
        stamp = self.parse(base)
        if stamp is None:
            raise ConfigError(
                "%r is not a %s backup name (expected %s)" % (base, self.layout.store, self.file_name(local_now(), ".gz"))
            )
        path = os.path.join(self.directory, base)
        if os.path.islink(path) or not os.path.isfile(path):
            raise ConfigError("backup %s not found in %s: list the backups to see what exists" % (base, self.directory))
        return self._entry(base, path, stamp)

    def _entry(self, name: str, path: str, stamp: datetime.datetime) -> Entry:
        try:
            return Entry(name, path, stamp, self.series, os.path.getsize(path), _manifest.read(path))
        except VerifyError as exc:
            return Entry(name, path, stamp, self.series, os.path.getsize(path), None, exc.msg)

    # retention -----------------------------------------------------------------------------

    def prune(
        self,
        retention_days: int,
        is_good: t.Callable[[Entry], bool],
        now: datetime.datetime | None = None,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete backups older than ``retention_days``, never the newest good one.

        Only files this catalog names (and their sidecars) are deleted. When no backup
        verifies as good, nothing is deleted: the old files may be all that is left.
        """
        now = now or local_now()
        entries = self.entries()
        cutoff = datetime.timedelta(days=retention_days)
        expired = [e for e in entries if now - e.created > cutoff]
        deleted: list[str] = []
        if not dry_run:
            self._remove_stale_partials()
        if not expired:
            return PruneResult(deleted, None, "no backup is older than %d days" % retention_days)
        protected = next((e for e in entries if is_good(e)), None)
        if protected is None:
            return PruneResult(
                deleted, None, "no backup verifies as good: kept all %d expired backups" % len(expired)
            )
        for entry in expired:
            if entry.path == protected.path:
                continue
            deleted.append(entry.path)
            if not dry_run:
                for path in (entry.path,) + tuple(entry.path + s for s in SIDECARS):
                    if os.path.lexists(path):
                        os.unlink(path)
        if not dry_run:
            for name in self.latest_names():
                link = os.path.join(self.directory, name)
                if os.path.islink(link) and not os.path.exists(link):
                    self.point_latest(protected.path)
        reason = "kept %s, the newest good backup" % protected.name
        return PruneResult(deleted, protected.path, reason)

    def _remove_stale_partials(self) -> None:
        """Temp files of runs that were killed (younger ones may belong to a live run)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        limit = time.time() - STALE_PARTIAL_SECONDS
        for name in names:
            if not (name.startswith(".") and name.endswith(".partial")):
                continue
            path = os.path.join(self.directory, name)
            try:
                info = os.lstat(path)  # a link left by point_latest may dangle
                if not stat.S_ISDIR(info.st_mode) and info.st_mtime < limit:
                    os.unlink(path)
            except FileNotFoundError:
                continue


def median_size(entries: t.Sequence[Entry]) -> float | None:
    sizes = [e.size for e in entries]
    return statistics.median(sizes) if sizes else None
