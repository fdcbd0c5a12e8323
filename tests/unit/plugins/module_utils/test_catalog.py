# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The catalog on real directories: the guide's names, latest links, resolving names, retention."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _catalog, _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, QDRANT, REDIS, Catalog, Layout, median_size
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock

NOW = datetime.datetime(2025, 6, 15, 12, 0, 0).astimezone()
DAY = 24 * 3600


def add(catalog: Catalog, age_days: float, *, manifest: bool = False, ext: str = ".gz", content: bytes = b"") -> str:
    """A backup file made ``age_days`` before NOW, optionally with its manifest."""
    stamp = NOW - datetime.timedelta(days=age_days)
    path = os.path.join(catalog.directory, catalog.file_name(stamp, ext))
    data = gzip.compress(content or b"-- backup made %s\n" % stamp.isoformat().encode())
    with open(path, "wb") as handle:
        handle.write(data)
    if manifest:
        written = Written(path, len(data), hashlib.sha256(data).hexdigest(), stamp, stamp)
        _manifest.write(path, _manifest.build(catalog.layout.store, written, Compression("gzip", 6, 1), fmt="plain", host="h"))
    return path


def names(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    cat = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    cat.ensure()
    return cat


# names -------------------------------------------------------------------------------------


def test_guide_names_exactly(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL)
    stamp = datetime.datetime(2025, 1, 2, 3, 4, 5)
    assert cat.directory == str(tmp_path / "postgresql")
    assert cat.file_name(stamp, ".gz") == "postgres_backup_20250102_030405.sql.gz"
    assert cat.latest_name(".gz") == "latest.sql.gz"
    assert cat.latest_names() == ["latest.sql.gz", "latest.sql.zst", "latest.sql", "latest.dir"]
    assert cat.file_name(stamp, ".dir") == "postgres_backup_20250102_030405.dir"
    assert cat.parse("postgres_backup_20250102_030405.dir") == stamp.astimezone()
    assert cat.latest_name(".dir") == "latest.dir"
    assert cat.file_name(stamp, ".zst") == "postgres_backup_20250102_030405.sql.zst"


def test_series_names(tmp_path):
    cat = Catalog(str(tmp_path), POSTGRESQL, series="app_db")
    stamp = datetime.datetime(2025, 1, 2, 3, 4, 5)
    assert cat.file_name(stamp, ".gz") == "postgres_backup_app_db_20250102_030405.sql.gz"
    assert cat.latest_name(".zst") == "latest_app_db.sql.zst"
    assert cat.parse("postgres_backup_app_db_20250102_030405.sql.gz") == stamp.astimezone()
    assert cat.parse("postgres_backup_20250102_030405.sql.gz") is None  # the default series' file
    assert cat.parse("postgres_backup_app_db2_20250102_030405.sql.gz") is None
    assert Catalog(str(tmp_path), POSTGRESQL).parse("postgres_backup_app_db_20250102_030405.sql.gz") is None


@pytest.mark.parametrize(
    "layout, name",
    [
        (REDIS, "redis/redis_backup_20250102_030405.rdb.gz"),
        (QDRANT, "qdrant/qdrant_backup_20250102_030405.tar.zst"),
        (POSTGRESQL.safety(), "postgresql/safety/postgres_safety_20250102_030405.sql.gz"),
    ],
)
def test_other_layouts(tmp_path, layout, name):
    cat = Catalog(str(tmp_path), layout)
    stamp = datetime.datetime(2025, 1, 2, 3, 4, 5)
    ext = "." + name.rsplit(".", 1)[1]
    assert os.path.join(cat.directory, cat.file_name(stamp, ext)) == str(tmp_path / name)


@pytest.mark.parametrize("root", ["", "relative/path", "./backups"])
def test_root_must_be_absolute(root):
    with pytest.raises(ConfigError) as err:
        Catalog(root, POSTGRESQL)
    assert "backup_root must be an absolute path" in err.value.msg


@pytest.mark.parametrize("series", ["_app", "app__db", "app_", "a/b", "a b", "../x", "app;rm", "ü"])
def test_series_rejects_unsafe_names(tmp_path, series):
    with pytest.raises(ConfigError) as err:
        Catalog(str(tmp_path), POSTGRESQL, series=series)
    assert "cannot use %r in backup file names" % series in err.value.msg


@pytest.mark.parametrize("series", ["app", "app_db", "my-db.1", "DB2"])
def test_series_accepts_plain_names(tmp_path, series):
    assert Catalog(str(tmp_path), POSTGRESQL, series=series).latest_name(".gz") == "latest_%s.sql.gz" % series


@pytest.mark.parametrize("name, expected", [
    ("postgres_backup_20250102_030405.sql.gz", datetime.datetime(2025, 1, 2, 3, 4, 5)),
    ("postgres_backup_20250102_030405.sql.zst", datetime.datetime(2025, 1, 2, 3, 4, 5)),
    ("postgres_backup_20241231_235959.sql", datetime.datetime(2024, 12, 31, 23, 59, 59)),
])
def test_parse_accepts_catalog_names(tmp_path, name, expected):
    parsed = Catalog(str(tmp_path), POSTGRESQL).parse(name)
    assert parsed == expected.astimezone() and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "name",
    [
        "postgres_backup_20250102_03040.sql.gz",
        "postgres_backup_2025010_030405.sql.gz",
        "postgres_backup_20250102-030405.sql.gz",
        "postgres_backup_20250102_030405.sql.bz2",
        "postgres_backup_20250102_030405.sql.gz.bak",
        "postgres_backup_20250102_030405.sql.gz.manifest.json",
        ".postgres_backup_20250102_030405.sql.gz.x1y2z3.partial",
        "postgres_backup_20250102_030405.dump.gz",
        "postgres_backup_20250102_030405.sql.gz.gz",
        "postgres_backup_20251302_030405.sql.gz",  # month 13
        "postgres_backup_20250230_030405.sql.gz",  # 30 February
        "xpostgres_backup_20250102_030405.sql.gz",
        "Postgres_backup_20250102_030405.sql.gz",
        "redis_backup_20250102_030405.rdb.gz",
        "latest.sql.gz",
        "postgres_backup_\u0662\u0660\u0662\u0665\u0660\u0661\u0660\u0662_\u0660\u0663\u0660\u0664\u0660\u0665.sql.gz",
        pytest.param("postgres_backup_20250102_030405.sql.gz\n", id="trailing-newline"),
    ],
)
def test_parse_rejects_near_misses(tmp_path, name):
    assert Catalog(str(tmp_path), POSTGRESQL).parse(name) is None


# writing -----------------------------------------------------------------------------------


def test_ensure_creates_private_directories(tmp_path):
    cat = Catalog(str(tmp_path / "root"), POSTGRESQL)
    cat.ensure()
    cat.ensure()  # twice is fine
    for directory in (tmp_path / "root" / "postgresql", tmp_path / "root" / "logs"):
        assert directory.is_dir() and stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("name", ["latest.sql.gz", "latest.sql.zst", "latest.sql"])
def test_preflight_refuses_a_regular_latest_file(catalog, name):
    path = os.path.join(catalog.directory, name)
    with open(path, "wb") as handle:
        handle.write(b"someone's manual dump")
    with pytest.raises(ConfigError) as err:
        catalog.preflight()
    assert err.value.msg.startswith("%s is a regular file, not a link" % path)
    assert open(path, "rb").read() == b"someone's manual dump"


def test_preflight_accepts_links_and_nothing(catalog):
    catalog.preflight()
    os.symlink("postgres_backup_20250102_030405.sql.gz", os.path.join(catalog.directory, "latest.sql.gz"))  # dangling
    catalog.preflight()


def test_new_path_is_now_in_the_store(catalog):
    before = datetime.datetime.now().astimezone().replace(microsecond=0)
    path = catalog.new_path(".zst")
    after = datetime.datetime.now().astimezone()
    assert os.path.dirname(path) == catalog.directory and path.endswith(".sql.zst")
    assert before <= catalog.parse(os.path.basename(path)) <= after


def at_start_of_a_second() -> None:
    """Sleep to just after a second boundary, so the steps below all happen within one second."""
    time.sleep(1.0 - time.time() % 1.0 + 0.02)


def test_new_path_waits_for_the_next_second_when_taken(catalog):
    at_start_of_a_second()
    now = datetime.datetime.now().astimezone().replace(microsecond=0)
    taken = {catalog.file_name(now + datetime.timedelta(seconds=s), ".gz") for s in (0, 1)}
    for name in taken:
        open(os.path.join(catalog.directory, name), "wb").close()
    started = time.monotonic()
    path = catalog.new_path(".gz")
    name = os.path.basename(path)
    assert name not in taken and not os.path.exists(path)
    assert catalog.parse(name) >= now + datetime.timedelta(seconds=2)
    assert time.monotonic() - started >= 0.9  # it waited at least one second boundary


def test_new_path_gives_up_after_three_tries(catalog):
    at_start_of_a_second()
    now = datetime.datetime.now().astimezone().replace(microsecond=0)
    for s in range(4):
        open(os.path.join(catalog.directory, catalog.file_name(now + datetime.timedelta(seconds=s), ".gz")), "wb").close()
    with pytest.raises(ConfigError) as err:
        catalog.new_path(".gz")
    assert "cannot find a free backup name in %s" % catalog.directory == err.value.msg


def test_point_latest_replaces_the_link(catalog):
    older, newer = add(catalog, 2), add(catalog, 1)
    link = catalog.point_latest(older)
    assert link == os.path.join(catalog.directory, "latest.sql.gz")
    assert os.readlink(link) == os.path.basename(older)  # relative: the store can move
    assert catalog.point_latest(newer) == link
    assert os.readlink(link) == os.path.basename(newer)
    assert open(link, "rb").read() == open(newer, "rb").read()
    assert names(catalog.directory) == sorted([os.path.basename(older), os.path.basename(newer), "latest.sql.gz"])


WATCHER = """
import os, sys
link, stop = sys.argv[1], sys.argv[2]
print("watching", flush=True)
missing = looks = 0
while not os.path.exists(stop):
    looks += 1
    if not os.path.lexists(link):
        missing += 1
print(missing, looks)
"""


def test_point_latest_never_leaves_the_link_missing(catalog, tmp_path):
    """Another process watching the link while it is repointed many times never finds it absent."""
    first, second = add(catalog, 2), add(catalog, 1)
    link = catalog.point_latest(first)
    stop = tmp_path / "stop"
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, link, str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline() == "watching\n"
        for index in range(2000):
            catalog.point_latest(second if index % 2 else first)
    finally:
        stop.touch()
        output, _err = watcher.communicate(timeout=30)
    missing, looks = (int(n) for n in output.split())
    assert looks > 0 and missing == 0
    assert os.readlink(link) == os.path.basename(second)


def test_point_latest_removes_latest_links_of_other_extensions(catalog):
    old_zst = add(catalog, 3, ext=".zst")
    plain = add(catalog, 2, ext="")
    os.symlink(os.path.basename(old_zst), os.path.join(catalog.directory, "latest.sql.zst"))
    os.symlink(os.path.basename(plain), os.path.join(catalog.directory, "latest.sql"))
    new = add(catalog, 1)
    catalog.point_latest(new)
    links = [n for n in names(catalog.directory) if n.startswith("latest")]
    assert links == ["latest.sql.gz"]
    assert os.path.exists(old_zst) and os.path.exists(plain)  # only the links went


def test_point_latest_of_a_series_leaves_the_default_link_alone(tmp_path):
    default = Catalog(str(tmp_path), POSTGRESQL)
    series = Catalog(str(tmp_path), POSTGRESQL, series="app")
    default.ensure()
    default_backup = add(default, 1)
    default.point_latest(default_backup)
    series.point_latest(add(series, 1))
    assert os.readlink(tmp_path / "postgresql" / "latest.sql.gz") == os.path.basename(default_backup)
    assert os.readlink(tmp_path / "postgresql" / "latest_app.sql.gz").startswith("postgres_backup_app_")


# reading -----------------------------------------------------------------------------------


def test_entries_newest_first_and_only_catalog_files(catalog, tmp_path):
    newest = add(catalog, 1, manifest=True)
    middle = add(catalog, 2, ext=".zst")
    oldest = add(catalog, 3)
    directory = catalog.directory
    os.symlink(os.path.basename(oldest), os.path.join(directory, "postgres_backup_20990101_000000.sql.gz"))
    os.symlink(os.path.basename(newest), os.path.join(directory, "latest.sql.gz"))
    os.mkdir(os.path.join(directory, "postgres_backup_20980101_000000.sql.gz"))
    for foreign in ("notes.txt", "postgres_backup_20970101_000000.sql.gz.bak", "postgres_backup_app_20970101_000000.sql.gz",
                    ".postgres_backup_20970101_000000.sql.gz.abcd.partial"):
        open(os.path.join(directory, foreign), "wb").close()

    entries = catalog.entries()
    assert [e.path for e in entries] == [newest, middle, oldest]
    assert [e.size for e in entries] == [os.path.getsize(p) for p in (newest, middle, oldest)]
    assert [e.legacy for e in entries] == [False, True, True]
    assert [e.algorithm for e in entries] == ["gzip", "zstd", "gzip"]
    assert entries[0].manifest["artifact"]["size"] == entries[0].size
    assert entries[0].as_dict() == {
        "name": os.path.basename(newest),
        "path": newest,
        "created": (NOW - datetime.timedelta(days=1)).isoformat(),
        "size": entries[0].size,
        "sha256": hashlib.sha256(open(newest, "rb").read()).hexdigest(),
        "duration": entries[0].manifest["duration_seconds"],
        "compression": "gzip",
        "series": "",
        "legacy": False,
        "encrypted": False,
        "manifest": newest + ".manifest.json",
    }
    assert entries[1].as_dict()["sha256"] is None and entries[1].as_dict()["manifest"] is None


def test_entries_of_a_missing_directory(tmp_path):
    assert Catalog(str(tmp_path / "nothing"), POSTGRESQL).entries() == []


def test_created_comes_from_the_manifest_when_there_is_one(catalog):
    path = add(catalog, 10, manifest=True)
    manifest = _manifest.read(path)
    manifest["ended"] = (NOW - datetime.timedelta(hours=3)).isoformat()
    _manifest.write(path, manifest)
    entry = catalog.entries()[0]
    assert entry.created == NOW - datetime.timedelta(hours=3)
    assert entry.age_hours(NOW) == pytest.approx(3.0)


@pytest.fixture
def three(catalog):
    """Three backups; latest points at the middle one, not the newest."""
    paths = [add(catalog, 3), add(catalog, 2), add(catalog, 1)]
    os.symlink(os.path.basename(paths[1]), os.path.join(catalog.directory, "latest.sql.gz"))
    return paths


@pytest.mark.parametrize("name", ["latest", "latest.sql.gz", "latest.sql.zst"])
def test_resolve_latest_follows_the_link(catalog, three, name):
    entry = catalog.resolve(name)
    assert entry.path == three[1] and entry.size == os.path.getsize(three[1])


def test_resolve_latest_without_a_link_is_the_newest(catalog, three):
    os.unlink(os.path.join(catalog.directory, "latest.sql.gz"))
    os.symlink("postgres_backup_20000101_000000.sql.gz", os.path.join(catalog.directory, "latest.sql.zst"))  # dangling
    assert catalog.resolve("latest").path == three[2]


def test_resolve_latest_in_an_empty_store(catalog):
    with pytest.raises(ConfigError) as err:
        catalog.resolve("latest")
    assert "there is no backup in %s yet" % catalog.directory in err.value.msg


def test_resolve_a_name(catalog, three):
    name = os.path.basename(three[0])
    entry = catalog.resolve(name)
    assert (entry.name, entry.path, entry.stamp, entry.manifest) == (name, three[0], catalog.parse(name), None)


def test_resolve_an_absolute_path_inside(catalog, three):
    assert catalog.resolve(three[0]).path == three[0]
    dotted = os.path.join(catalog.directory, "..", "postgresql", os.path.basename(three[0]))
    assert catalog.resolve(dotted).path == three[0]


@pytest.mark.parametrize(
    "make_name, message",
    [
        (lambda d, n: "", "no backup name given"),
        (lambda d, n: "../x", "is not a backup file name"),
        (lambda d, n: "../postgresql/" + n, "is not a backup file name"),
        (lambda d, n: "sub/" + n, "is not a backup file name"),
        (lambda d, n: "..", "is not a backup file name"),
        (lambda d, n: ".", "is not a backup file name"),
        (lambda d, n: "notes.txt", "is not a postgresql backup name"),
        (lambda d, n: "postgres_backup_20000101_000000.sql.gz", "not found"),
        (lambda d, n: os.path.join(d, "other", n), "is outside"),
        (lambda d, n: "/etc/passwd", "is outside"),
    ],
    ids=["empty", "dotdot-x", "dotdot-back-in", "subdir", "dotdot", "dot", "foreign", "missing", "abs-other-dir", "abs-etc"],
)
def test_resolve_refuses(catalog, three, tmp_path, make_name, message):
    name = os.path.basename(three[0])
    other = tmp_path / "other"
    other.mkdir()
    (other / name).write_bytes(open(three[0], "rb").read())  # the same name outside the store
    with pytest.raises(ConfigError) as err:
        catalog.resolve(make_name(str(tmp_path), name))
    assert message in err.value.msg


def test_resolve_refuses_a_link_out_of_the_store(catalog, tmp_path):
    outside = tmp_path / "elsewhere.sql.gz"
    outside.write_bytes(gzip.compress(b"x"))
    name = catalog.file_name(NOW, ".gz")
    os.symlink(str(outside), os.path.join(catalog.directory, name))
    with pytest.raises(ConfigError) as err:
        catalog.resolve(name)
    assert "not found" in err.value.msg
    with pytest.raises(ConfigError) as err:
        catalog.resolve(os.path.join(catalog.directory, name))
    assert "is outside" in err.value.msg


# retention ---------------------------------------------------------------------------------


def good_except(*bad: str):
    return lambda entry: entry.path not in bad


def test_prune_deletes_only_expired_catalog_files_and_their_sidecars(catalog, tmp_path):
    keep = [add(catalog, 1, manifest=True), add(catalog, 5, manifest=True)]
    expired = [add(catalog, 10, manifest=True), add(catalog, 20)]
    directory = catalog.directory
    foreign = ["notes.txt", "postgres_backup_20000101_000000.sql.gz.bak", "postgres_backup_app_20000101_000000.sql.gz",
               "redis_backup_20000101_000000.rdb.gz", ".cclite-backup.lock"]
    for name in foreign:
        path = os.path.join(directory, name)
        open(path, "wb").close()
        os.utime(path, (time.time() - 400 * DAY,) * 2)
    outside = tmp_path / "postgres_backup_20000101_000000.sql.gz"
    outside.write_bytes(b"not in the store")
    os.symlink(str(outside), os.path.join(directory, "postgres_backup_20000102_000000.sql.gz"))

    result = catalog.prune(7, lambda e: True, now=NOW)

    assert result.deleted == expired
    assert result.protected == keep[0]
    assert result.reason == "kept %s, the newest good backup" % os.path.basename(keep[0])
    assert names(directory) == sorted(
        [os.path.basename(p) for p in keep] + [os.path.basename(p) + ".manifest.json" for p in keep]
        + foreign + ["postgres_backup_20000102_000000.sql.gz", _manifest.JOURNAL]
    )
    assert outside.read_bytes() == b"not in the store"
    assert sorted(catalog.journal.records()) == sorted(os.path.basename(p) for p in keep)


def test_prune_keeps_the_newest_good_backup_when_all_are_expired(catalog):
    paths = [add(catalog, 10, manifest=True), add(catalog, 20, manifest=True), add(catalog, 30)]
    result = catalog.prune(7, lambda e: True, now=NOW)
    assert result.deleted == paths[1:] and result.protected == paths[0]
    assert names(catalog.directory) == sorted([os.path.basename(paths[0]), os.path.basename(paths[0]) + ".manifest.json", _manifest.JOURNAL])
    assert list(catalog.journal.records()) == [os.path.basename(paths[0])]


def test_prune_keeps_everything_when_no_backup_is_good(catalog):
    paths = [add(catalog, 10), add(catalog, 20), add(catalog, 30)]
    before = names(catalog.directory)
    result = catalog.prune(7, lambda e: False, now=NOW)
    assert result.deleted == [] and result.protected is None
    assert result.reason == "no backup verifies as good: kept all 3 expired backups"
    assert names(catalog.directory) == before and all(os.path.exists(p) for p in paths)


def test_prune_keeps_the_newest_good_expired_one_while_newer_ones_are_bad(catalog):
    bad_new = [add(catalog, 1), add(catalog, 3)]
    bad_expired = add(catalog, 9)
    good_expired = [add(catalog, 12), add(catalog, 20)]
    result = catalog.prune(7, good_except(*bad_new, bad_expired), now=NOW)
    assert result.protected == good_expired[0]
    assert result.deleted == [bad_expired, good_expired[1]]
    assert [e.path for e in catalog.entries()] == bad_new + [good_expired[0]]


def test_prune_with_nothing_expired(catalog):
    paths = [add(catalog, 1), add(catalog, 2)]
    result = catalog.prune(7, lambda e: True, now=NOW)
    assert result.deleted == [] and result.protected is None and result.reason == "no backup is older than 7 days"
    assert [e.path for e in catalog.entries()] == paths


def test_prune_dry_run_deletes_nothing(catalog):
    keep = add(catalog, 1)
    expired = [add(catalog, 10, manifest=True), add(catalog, 20)]
    stale = os.path.join(catalog.directory, ".postgres_backup_x.sql.gz.abc.partial")
    open(stale, "wb").close()
    os.utime(stale, (time.time() - 2 * DAY,) * 2)
    os.symlink("postgres_backup_20000101_000000.sql.gz", os.path.join(catalog.directory, "latest.sql.gz"))  # dangling
    before = names(catalog.directory)
    result = catalog.prune(7, lambda e: True, now=NOW, dry_run=True)
    assert result.deleted == expired and result.protected == keep
    assert names(catalog.directory) == before
    assert os.readlink(os.path.join(catalog.directory, "latest.sql.gz")) == "postgres_backup_20000101_000000.sql.gz"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partials_are_stale_when_their_writer_is_dead_or_no_run_holds_the_lock(catalog):
    directory = catalog.directory
    dead = dead_pid()
    mine = os.getpid()
    files = {
        ".postgres_backup_20250101_000000.sql.gz.%d.k3j4abcd.partial" % dead: b"x" * 100,
        ".latest.sql.gz.%d.partial" % dead: b"",
        ".postgres_backup_20250615_115900.sql.gz.%d.q1w2abcd.partial" % mine: b"y" * 7,  # a live writer
        ".postgres_backup_20250101_000000.sql.gz.old.partial": b"z",  # no PID: an older version's
    }
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(data)
    for name in ("notes.partial", ".hidden-notes.txt"):
        open(os.path.join(directory, name), "wb").close()

    # no run holds the lock: every temp file's writer is gone
    assert {p.name: (p.size, p.stale) for p in catalog.partials()} == {n: (len(d), True) for n, d in files.items()}
    # a run holds the lock: only the files of dead PIDs are stale
    with StoreLock(directory, "postgresql", "test"):
        holder = subprocess.run(
            [sys.executable, "-c", "import sys; sys.path[:0] = %r; from ansible_collections.cclite.backup.plugins.module_utils._core._catalog "
             "import Catalog, POSTGRESQL; print(sorted(p.name for p in Catalog(%r, POSTGRESQL).partials() if p.stale))"
             % (sys.path, catalog.root)],
            check=True, capture_output=True, text=True,
        ).stdout
        assert holder.strip() == repr(sorted(n for n in files if str(dead) in n))
        removed = catalog.remove_stale_partials()  # the holder removes everything but its own
    assert sorted(r["name"] for r in removed) == sorted(n for n in files if str(mine) not in n)
    assert {r["name"]: r["size"] for r in removed}[".postgres_backup_20250101_000000.sql.gz.%d.k3j4abcd.partial" % dead] == 100
    assert names(directory) == sorted([".cclite-backup.lock", ".hidden-notes.txt", "notes.partial",
                                       ".postgres_backup_20250615_115900.sql.gz.%d.q1w2abcd.partial" % mine])


def test_remove_stale_partials_removes_a_dangling_link(catalog):
    keep = add(catalog, 1)
    link = os.path.join(catalog.directory, ".latest.sql.gz.%d.partial" % dead_pid())
    os.symlink("postgres_backup_20000101_000000.sql.gz", link)
    assert [r["name"] for r in catalog.remove_stale_partials()] == [os.path.basename(link)]
    assert names(catalog.directory) == [os.path.basename(keep)]


def test_prune_repoints_a_dangling_latest(catalog):
    good = add(catalog, 10)
    gone = add(catalog, 20)
    os.symlink(os.path.basename(gone), os.path.join(catalog.directory, "latest.sql.gz"))
    result = catalog.prune(7, lambda e: True, now=NOW)
    assert result.deleted == [gone]
    assert os.readlink(os.path.join(catalog.directory, "latest.sql.gz")) == os.path.basename(good)
    assert catalog.resolve("latest").path == good


def test_prune_leaves_a_live_latest_alone(catalog):
    newest_bad = add(catalog, 1)
    good = add(catalog, 10)
    gone = add(catalog, 20)
    latest = os.path.join(catalog.directory, "latest.sql.gz")
    os.symlink(os.path.basename(newest_bad), latest)
    result = catalog.prune(7, good_except(newest_bad), now=NOW)
    assert result.deleted == [gone] and result.protected == good
    assert os.readlink(latest) == os.path.basename(newest_bad)


def test_prune_of_a_series_leaves_other_series_alone(tmp_path):
    default = Catalog(str(tmp_path), POSTGRESQL)
    default.ensure()
    app = Catalog(str(tmp_path), POSTGRESQL, series="app")
    default_old = [add(default, 10), add(default, 20)]
    app_old = [add(app, 10), add(app, 20)]
    result = app.prune(7, lambda e: True, now=NOW)
    assert result.deleted == [app_old[1]]
    assert all(os.path.exists(p) for p in default_old + [app_old[0]])


def test_median_size():
    entry = _catalog.Entry
    entries = [entry("n", "p", NOW, "", size, None) for size in (10, 40, 20)]
    assert median_size(entries) == 20
    assert median_size(entries[:2]) == 25
    assert median_size([]) is None


def test_layout_safety():
    assert POSTGRESQL.safety() == Layout("postgresql", "postgres_safety", ".sql", "safety", directories=True)
    assert POSTGRESQL.safety().relative_dir == os.path.join("postgresql", "safety")


def test_one_name_pattern_for_a_series_none_or_any():
    # the catalog (one series) and the S3 listing (any series) read names with the same pattern
    anyone = POSTGRESQL.pattern()
    assert anyone.fullmatch("postgres_backup_app_20250615_120000.sql.gz").group("series") == "app"
    assert anyone.fullmatch("postgres_backup_20250615_120000.sql.zst").group("series") is None
    assert anyone.fullmatch("postgres_backup_20250615_120000.sql") is not None
    assert anyone.fullmatch("postgres_backup_app_20250615_120000.rdb.gz") is None
    assert anyone.fullmatch("latest.sql.gz") is None
    assert POSTGRESQL.pattern("app").fullmatch("postgres_backup_app_20250615_120000.sql.gz") is not None
    assert POSTGRESQL.pattern("app").fullmatch("postgres_backup_20250615_120000.sql.gz") is None
    assert POSTGRESQL.pattern("").fullmatch("postgres_backup_app_20250615_120000.sql.gz") is None
    assert POSTGRESQL.pattern("a.b").fullmatch("postgres_backup_aXb_20250615_120000.sql.gz") is None  # escaped
