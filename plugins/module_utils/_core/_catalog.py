# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup catalog: the guide's layout and names, ``latest`` links, listing and retention.

Layout (the guide's, exactly)::

    <backup_root>/postgresql/postgres_backup_YYYYMMDD_HHMMSS.sql.gz
    <backup_root>/postgresql/latest.sql.gz -> postgres_backup_YYYYMMDD_HHMMSS.sql.gz
    <backup_root>/logs/

A store whose layout allows it (PostgreSQL's ``directory`` format) also keeps backups that are
directories, ``postgres_backup_YYYYMMDD_HHMMSS.dir/``, with ``latest.dir`` pointing at the
newest; such a backup is one artifact all the same (see ``_tree``).

A *series* separates several backups of one store on one host (for PostgreSQL, several
databases): its name goes into the file names (``postgres_backup_<series>_<stamp>.sql.gz``,
``latest_<series>.sql.gz``). The default series is empty: the guide's names.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import os
import re
import shutil
import stat
import statistics
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core import _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import EXTENSIONS, algorithm_of
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import LOCK_NAME, ReadersLock, process_alive
from ansible_collections.cclite.backup.plugins.module_utils._core._retention import Keep, generations

STAMP = "%Y%m%d_%H%M%S"
SERIES_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*(?:_[A-Za-z0-9.-]+)*")
SIDECARS = (_manifest.SUFFIX,)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one store names its files."""

    store: str  # directory under backup_root, e.g. "postgresql"
    prefix: str  # e.g. "postgres_backup"
    content: str  # content extension, e.g. ".sql"
    subdir: str = ""
    directories: bool = False  # backups may also be directories (``<prefix>_<stamp>.dir``)

    @property
    def relative_dir(self) -> str:
        return os.path.join(self.store, self.subdir) if self.subdir else self.store

    def safety(self) -> "Layout":
        """Where restores keep the copy of the data they are about to replace."""
        return Layout(self.store, self.prefix.replace("_backup", "_safety"), self.content, "safety", self.directories)

    def pattern(self, series: str | None = None) -> t.Pattern[str]:
        """Backup file names, ``<prefix>[_<series>]_<stamp><content><ext>``: of one series
        (``""``: none), or of any series (``None``: the name's series in group ``series``)."""
        if series is None:
            infix = r"(?:_(?P<series>%s))?" % SERIES_RE.pattern
        else:
            infix = re.escape("_%s" % series if series else "")
        files = r"%s(?P<comp>%s)" % (re.escape(self.content), "|".join(re.escape(e) for e in EXTENSIONS.values()))
        if self.directories:
            files = r"(?:%s|%s)" % (files, re.escape(_tree.SUFFIX))
        return re.compile(r"%s%s_(?P<stamp>\d{8}_\d{6})%s" % (re.escape(self.prefix), infix, files))


POSTGRESQL = Layout("postgresql", "postgres_backup", ".sql", directories=True)
REDIS = Layout("redis", "redis_backup", ".rdb")
QDRANT = Layout("qdrant", "qdrant_backup", ".tar")
# PostgreSQL base backups for point-in-time recovery (their WAL archive is postgresql/wal/)
POSTGRESQL_BASE = Layout("postgresql_base", "postgres_base_backup", ".tar")


@dataclasses.dataclass
class Entry:
    """One backup file of the catalog."""

    name: str
    path: str
    stamp: datetime.datetime  # from the name, local time of the host that made it
    series: str
    size: int
    manifest: dict[str, t.Any] | None
    manifest_error: str | None = None  # the manifest cannot be read, is gone, or disagrees with the journal
    journal: dict[str, t.Any] | None = None  # the catalog journal's record, when this collection made it

    @property
    def tree(self) -> bool:
        """A backup that is a directory of files (see ``_tree``)."""
        return _tree.is_tree(self.name)

    @property
    def algorithm(self) -> str:
        return _tree.algorithm_of(self.name)

    @property
    def legacy(self) -> bool:
        """Made by something else (the guide's scripts): no manifest, and the journal does not know it."""
        return self.manifest is None and self.manifest_error is None and self.journal is None

    @property
    def encryption(self) -> dict[str, t.Any] | None:
        """How the artifact is encrypted at rest (``_crypto.describe``); ``None``: plaintext."""
        return ((self.manifest or {}).get("artifact") or {}).get("encryption") or None

    @property
    def expected_sha256(self) -> str | None:
        """The sha256 the bytes must have: the manifest's, else the journal's."""
        if self.manifest is not None:
            return self.manifest.get("artifact", {}).get("sha256")
        return (self.journal or {}).get("sha256")

    @property
    def created(self) -> datetime.datetime:
        ended = _manifest.ended(self.manifest) if self.manifest else None
        if ended is None and self.journal:
            ended = _manifest.ended({"ended": self.journal.get("created")})
        return ended or self.stamp

    def age_hours(self, now: datetime.datetime) -> float:
        return (now - self.created).total_seconds() / 3600.0

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "name": self.name,
            "path": self.path,
            "created": self.created.isoformat(),
            "size": self.size,
            "sha256": self.expected_sha256,
            "duration": (self.manifest or {}).get("duration_seconds"),
            "compression": self.algorithm,
            "series": self.series,
            "legacy": self.legacy,
            "encrypted": self.encryption is not None,
            "manifest": _manifest.path_for(self.path) if self.manifest else None,
        }


@dataclasses.dataclass
class PruneResult:
    deleted: list[str]
    protected: str | None
    reason: str
    generations: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # older than the days, kept by a rule


def _held(kept: t.Mapping[str, t.Sequence[str]]) -> str:
    return "; %d older backup(s) kept as generations" % len(kept) if kept else ""


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
        self._pattern = layout.pattern(series)

    # names ---------------------------------------------------------------------------------

    def latest_name(self, extension: str) -> str:
        base = "latest_%s" % self.series if self.series else "latest"
        return base + (extension if extension == _tree.SUFFIX else self.layout.content + extension)

    def latest_for(self, name: str) -> str:
        """The path of the ``latest`` link that points at a backup named ``name``."""
        return os.path.join(self.directory, self.latest_name(_tree.SUFFIX if _tree.is_tree(name) else EXTENSIONS[algorithm_of(name)]))

    def latest_names(self) -> list[str]:
        extensions = list(EXTENSIONS.values()) + ([_tree.SUFFIX] if self.layout.directories else [])
        return [self.latest_name(ext) for ext in extensions]

    def file_name(self, stamp: datetime.datetime, extension: str) -> str:
        """A backup's name; ``extension`` is the compression's, or ``_tree.SUFFIX`` for a directory."""
        infix = "_%s" % self.series if self.series else ""
        content = "" if extension == _tree.SUFFIX else self.layout.content
        return "%s%s_%s%s%s" % (self.layout.prefix, infix, stamp.strftime(STAMP), content, extension)

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
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise ConfigError(unwritable(directory, exc)) from exc

    def writable(self) -> None:
        """Fail with what, where and the fix when the store's directory cannot be written."""
        probe = existing(self.directory)
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:
            raise ConfigError(unwritable(self.directory, OSError(errno.EROFS, os.strerror(errno.EROFS))))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(unwritable(self.directory, OSError(errno.EACCES, os.strerror(errno.EACCES))))

    def free_space(self, expected: int | None, basis: str) -> dict[str, t.Any]:
        """Compare the free space at the store's directory with ``expected`` bytes; fail early,
        with the figures, when it does not fit. ``basis`` says where ``expected`` comes from."""
        probe = existing(self.directory)
        info = os.statvfs(probe)
        free = info.f_bavail * info.f_frsize
        out: dict[str, t.Any] = {"path": probe, "free": free, "expected": expected, "basis": basis}
        if expected is not None and free < expected:
            raise ConfigError(
                "not enough free space for a backup in %s: %s free, %s expected (%s). Nothing was written: "
                "free some space there, lower the retention, or point backup_root at a larger file system"
                % (probe, human(free), human(expected), basis),
                preflight=out,
            )
        return out

    def expected_size(self, estimate: t.Callable[[], int | None] | None, compressed: bool) -> tuple[int | None, str]:
        """What the next backup will need: the newest backup made here (journal or manifest
        size) plus a margin; for the first backup, the engine's ``estimate`` of the data."""
        for entry in self.entries():
            recorded = entry.expected_sha256 and ((entry.manifest or {}).get("artifact", {}).get("size") or (entry.journal or {}).get("size"))
            if recorded and not entry.manifest_error:
                size = int(recorded)
                return int(size * SPACE_MARGIN), "%s was %s, plus %d%%" % (entry.name, human(size), round(100 * SPACE_MARGIN) - 100)
        if estimate is None:
            return None, "no earlier backup and no estimate from the engine: not checked"
        data = estimate()
        if data is None:
            return None, "no earlier backup and the engine cannot tell the data's size: not checked"
        if compressed:
            return int(data * FIRST_COMPRESSED_SHARE), "no earlier backup; the data is %s and a compressed dump is taken as %d%% of it" % (
                human(data), round(100 * FIRST_COMPRESSED_SHARE))
        return int(data), "no earlier backup; the data is %s, stored uncompressed" % human(data)

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
        link = self.latest_for(name)
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
        journal = self.journal.records()
        for name in names:
            stamp = self.parse(name)
            path = os.path.join(self.directory, name)
            if stamp is None or not self._is_backup(name, path):
                continue
            found.append(self._entry(name, path, stamp, journal))
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

    def latest_link(self) -> tuple[str, str] | None:
        """The ``latest`` link of this series and the name it points to, refused when it points
        out of the directory or at something that is not a backup of this series."""
        for name in self.latest_names():
            link = os.path.join(self.directory, name)
            if not os.path.islink(link):
                continue
            target = os.readlink(link)
            real = os.path.realpath(link)
            if os.path.dirname(real) != os.path.realpath(self.directory):
                raise ConfigError(
                    "%s points at %s, outside %s: a latest link must name a backup file of that directory. "
                    "Delete the link (the next backup recreates it) or name a backup file instead of latest"
                    % (link, target, self.directory)
                )
            if self.parse(os.path.basename(real)) is None:
                raise ConfigError(
                    "%s points at %s, which is not a %s backup of this series (names like %s): delete the link "
                    "(the next backup recreates it) or name a backup file instead of latest"
                    % (link, target, self.layout.store, self.name_pattern())
                )
            return link, os.path.basename(real)
        return None

    def latest(self) -> Entry | None:
        """What ``latest`` points to; the newest backup when there is no link."""
        found = self.latest_link()
        if found is not None and os.path.exists(os.path.join(self.directory, found[1])):
            return self.resolve(found[1])
        entries = self.entries()
        return entries[0] if entries else None

    def name_pattern(self) -> str:
        infix = "_%s" % self.series if self.series else ""
        dirs = " or %s%s_YYYYMMDD_HHMMSS%s" % (self.layout.prefix, infix, _tree.SUFFIX) if self.layout.directories else ""
        return "%s%s_YYYYMMDD_HHMMSS%s[.gz|.zst]%s" % (self.layout.prefix, infix, self.layout.content, dirs)

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
                "%r is not a %s backup name: backup names look like %s; list the backups to see them"
                % (base, self.layout.store, self.name_pattern())
            )
        path = os.path.join(self.directory, base)
        if not self._is_backup(base, path):
            raise ConfigError("backup %s not found in %s: list the backups to see what exists" % (base, self.directory))
        return self._entry(base, path, stamp)

    @staticmethod
    def _is_backup(name: str, path: str) -> bool:
        """A backup file, or a backup directory (never a link)."""
        if os.path.islink(path):
            return False
        return os.path.isdir(path) if _tree.is_tree(name) else os.path.isfile(path)

    @property
    def journal(self) -> _manifest.Journal:
        return _manifest.Journal(self.directory)

    def _entry(self, name: str, path: str, stamp: datetime.datetime, journal: t.Mapping[str, t.Any] | None = None) -> Entry:
        """One backup, its manifest checked against the journal: a backup made here keeps being
        known as such when its manifest is deleted or replaced."""
        record = (self.journal.records() if journal is None else journal).get(name)
        size = _tree.size(path) if _tree.is_tree(name) else os.path.getsize(path)
        try:
            manifest = _manifest.read(path)
        except VerifyError as exc:
            return Entry(name, path, stamp, self.series, size, None, exc.msg, record)
        if record is None:
            return Entry(name, path, stamp, self.series, size, manifest)
        if manifest is None:
            return Entry(
                name, path, stamp, self.series, size, None,
                "manifest missing (%s); the journal %s records sha256 %s, size %s: restore the manifest "
                "from the off-site copy, or delete the backup" % (_manifest.path_for(path), self.journal.path, record.get("sha256"), record.get("size")),
                record,
            )
        listed = manifest.get("artifact", {}).get("sha256")
        if listed != record.get("sha256"):
            return Entry(
                name, path, stamp, self.series, size, None,
                "the manifest's sha256 %s differs from the journal's %s: the manifest was replaced" % (listed, record.get("sha256")),
                record,
            )
        return Entry(name, path, stamp, self.series, size, manifest, None, record)

    # retention -----------------------------------------------------------------------------

    def prune(
        self,
        retention_days: int,
        is_good: t.Callable[[Entry], bool],
        now: datetime.datetime | None = None,
        dry_run: bool = False,
        keep: Keep | None = None,
    ) -> PruneResult:
        """Delete backups older than ``retention_days`` that no generation of ``keep`` holds
        (``_retention``), never the newest good one.

        Only files this catalog names (and their sidecars) are deleted. When no backup
        verifies as good, nothing is deleted: the old files may be all that is left.
        """
        now = now or local_now()
        entries = self.entries()
        cutoff = datetime.timedelta(days=retention_days)
        held = generations([e.created for e in entries], keep)
        kept = {entries[i].name: why for i, why in held.items() if now - entries[i].created > cutoff}
        expired = [e for i, e in enumerate(entries) if now - e.created > cutoff and i not in held]
        deleted: list[str] = []
        if not expired:
            why = "the %d backup(s) older than %d days are kept as generations" % (len(kept), retention_days) if kept else (
                "no backup is older than %d days" % retention_days)
            return PruneResult(deleted, None, why, kept)
        protected = next((e for e in entries if is_good(e)), None)
        if protected is None:
            return PruneResult(
                deleted, None, "no backup verifies as good: kept all %d expired backups" % len(expired), kept
            )
        readers = ReadersLock(self.directory, exclusive=True)
        if not dry_run and not readers.acquire():  # a restore drill reads a backup of this store
            return PruneResult(
                deleted, protected.path, "a restore drill is reading the backups of this store: the %d expired backup(s) "
                "are kept until the next run" % (len(expired) - (protected in expired)), kept,
            )
        try:
            for entry in expired:
                if entry.path == protected.path:
                    continue
                deleted.append(entry.path)
                if not dry_run:
                    if entry.tree:
                        _tree.remove(entry.path)  # the directory first: a manifest without it is reported
                    for path in (entry.path,) + tuple(entry.path + s for s in SIDECARS):
                        if os.path.lexists(path):
                            os.unlink(path)
                    self.journal.remove(entry.name)
            if not dry_run:
                for name in self.latest_names():
                    link = os.path.join(self.directory, name)
                    if os.path.islink(link) and not os.path.exists(link):
                        self.point_latest(protected.path)
        finally:
            readers.release()
        reason = "kept %s, the newest good backup%s" % (protected.name, _held(kept))
        return PruneResult(deleted, protected.path, reason, kept)

    # leftovers of killed runs ---------------------------------------------------------------

    def partials(self) -> list[Partial]:
        """The temp files in the directory (``.<name>.<pid>[.<random>].partial``), each marked
        stale when its writer is gone: the PID in its name is dead, or no run holds the lock."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        found = [n for n in names if n.startswith(".") and n.endswith(".partial")]
        if not found:
            return []
        lock_free = not _lock_held(self.directory)
        out = []
        for name in found:
            path = os.path.join(self.directory, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            size = _tree.size(path) if stat.S_ISDIR(info.st_mode) else info.st_size
            match = PARTIAL_PID_RE.search(name)
            pid = int(match.group(1)) if match else None
            out.append(Partial(name, path, size, pid, lock_free or (pid is not None and not process_alive(pid))))
        return out

    def remove_stale_partials(self) -> list[dict[str, t.Any]]:
        """Delete the temp files of killed runs. Call it holding the store's lock: every writer
        of the directory holds it, so any temp file that is not this process's is a leftover."""
        removed = []
        for partial in self.partials():
            if partial.pid == os.getpid():
                continue
            try:
                if os.path.isdir(partial.path) and not os.path.islink(partial.path):
                    shutil.rmtree(partial.path)  # the temp directory of a killed directory-format run
                else:
                    os.unlink(partial.path)
            except FileNotFoundError:
                continue
            removed.append({"name": partial.name, "size": partial.size, "pid": partial.pid})
        return removed


PARTIAL_PID_RE = re.compile(r"\.(\d+)(?:\.[A-Za-z0-9_]{8})?\.partial$")
SPACE_MARGIN = 1.25
FIRST_COMPRESSED_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Partial:
    """A temp file of a writer, and whether that writer is gone."""

    name: str
    path: str
    size: int
    pid: int | None
    stale: bool


def _lock_held(directory: str) -> bool:
    """Whether a run holds the store's lock now (without taking it for longer than a test)."""
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def existing(path: str) -> str:
    """``path``, or its nearest existing parent (where it would be created)."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "bytes" else ("%.1f %s" % (size, unit))
        size /= 1024.0
    return str(size)


def unwritable(directory: str, exc: OSError) -> str:
    """What, where and the fix, for a backup directory that cannot be written."""
    if exc.errno == errno.EROFS:
        why = "the file system is mounted read-only"
        fix = "remount it read-write, or set backup_root to a directory on a writable file system"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
        fix = "run as the user that owns backup_root (become: true), or fix its owner and mode"
    elif exc.errno == errno.ENOSPC:
        why = "no space left on the device"
        fix = "free some space there, or point backup_root at a larger file system"
    else:
        why = exc.strerror or str(exc)
        fix = "check that backup_root is a writable local directory"
    return "cannot write backups to %s: %s. Nothing was written; %s" % (directory, why, fix)


def median_size(entries: t.Sequence[Entry]) -> float | None:
    sizes = [e.size for e in entries]
    return statistics.median(sizes) if sizes else None
