# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults against a real PostgreSQL 15 in host mode: kills of every stage, disk full, a
read-only root, server down, wrong credentials, corruption, two runs at once, bad input."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
import typing as t

import pytest

from tests.faults.conftest import PG_PASSWORD, Postgres
from tests.faults.harness import (
    FIGURES, FULL, RANDOM, STAGE_DELAY, TRIALS, ArgvWatch, Module, Result, check_invariants, files,
    kill_stage, partials, reap_orphans, run,
)

SECRETS = [PG_PASSWORD]


def store(root: str) -> str:
    return os.path.join(root, "postgresql")


def info(postgres: Postgres, root: str) -> Result:
    return run("postgresql_backup_info", dict(postgres.args(root), verify="full", min_size_bytes=100))


def exact(postgres: Postgres, root: str) -> t.Callable[[dict[str, t.Any]], str | None]:
    """A dump that verifies as good must hold every row of the table and end complete."""

    def check(backup: dict[str, t.Any]) -> str | None:
        path = os.path.join(store(root), backup["name"])
        if backup["name"].startswith("postgres_backup_2") and os.path.getsize(path) < 10_000:
            return None  # a backup of the tiny database (disk tests)
        rows, copying, tail = 0, False, []
        with gzip.open(path, "rb") as handle:
            for line in handle:
                if line.startswith(b"COPY public.items "):
                    copying = True
                elif copying and line == b"\\.\n":
                    copying = False
                elif copying:
                    rows += 1
                if line.strip():
                    tail = (tail + [line])[-4:]
        if rows != postgres.rows:
            return "%d rows of %d" % (rows, postgres.rows)
        if not any(b"PostgreSQL database dump complete" in line for line in tail):  # then \\unrestrict, from 15.14
            return "the dump does not end complete: %r" % tail
        return None

    return check


def backup(postgres: Postgres, root: str, **extra: t.Any) -> Result:
    return run("postgresql_backup", postgres.args(root, **extra))


@pytest.fixture(scope="module")
def duration(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long one backup takes here: kills land within it."""
    root = str(tmp_path_factory.mktemp("calibrate"))
    started = time.monotonic()
    result = backup(postgres, root)
    assert not result.failed, result.text
    return time.monotonic() - started


@pytest.mark.parametrize("stage", ["pg_dump", "pigz", None], ids=["pg_dump", "compressor", "module"])
def test_kill_a_stage_at_random_points(postgres: Postgres, tmp_path: t.Any, duration: float, stage: str | None) -> None:
    root = str(tmp_path)
    first = backup(postgres, root)
    assert not first.failed, first.text
    label = stage or "module"
    for _trial in range(TRIALS):
        before = files(store(root))
        watch = ArgvWatch(SECRETS)
        watch.start()
        module = Module("postgresql_backup", postgres.args(root))
        # the module lives the whole run; pg_dump and the compressor only while data flows
        # pg_dump ends before the compressor (its output is buffered in the pipe): kill it sooner
        delay = duration * 0.9 if stage is None else STAGE_DELAY / (3 if stage == "pg_dump" else 1)
        how = kill_stage(module, stage, RANDOM.uniform(0, delay))
        if stage is None:
            children = reap_orphans(module)
            FIGURES.add("postgresql: children of the module when it was killed", children)
        result = module.wait()
        watch.stop()
        FIGURES.add("postgresql kill %s: %s, run %s" % (label, how, "failed" if result.failed else "ok"))
        if how == "killed" and stage is not None:
            assert result.failed or "changed" in result.data, result.text
            if result.failed:
                assert label in result.data.get("msg", "") or stage in result.data.get("msg", ""), result.data
        assert watch.hits == [], watch.hits
        check_invariants(store(root), info(postgres, root), before, exact(postgres, root), SECRETS, [result])
    left = partials(store(root))
    after = backup(postgres, root)
    assert not after.failed, after.text
    assert sorted(p["name"] for p in after.data["removed_partials"]) == left
    assert partials(store(root)) == []
    FIGURES.add("postgresql: .partial files removed by the next run", len(after.data["removed_partials"]))


def test_disk_full_before_the_backup_fails_early_with_the_figures(postgres: Postgres, small_fs: t.Any) -> None:
    root = small_fs("256k").path
    result = backup(postgres, root)
    assert result.failed
    msg = result.data["msg"]
    assert msg.startswith("not enough free space for a backup in %s: " % store(root)), msg
    assert "free" in msg and "expected" in msg and "pg_database_size" not in msg
    assert files(store(root)) == {} and partials(store(root)) == []
    FIGURES.add("postgresql disk full: refused by the free-space preflight")


def test_disk_full_during_the_backup_leaves_the_earlier_one(postgres: Postgres, small_fs: t.Any) -> None:
    root = small_fs("8m").path
    tiny = backup(postgres, root, database="tiny")
    assert not tiny.failed, tiny.text
    before = files(store(root))
    with open(os.path.join(root, "filler"), "wb") as handle:  # leave 512 KiB: more than the tiny one needs
        info_ = os.statvfs(root)
        handle.write(b"\0" * (info_.f_bavail * info_.f_frsize - 512 * 1024))
    result = backup(postgres, root)  # the preflight expects the tiny one's size: the write runs out
    assert result.failed
    assert "No space left on device" in result.data["msg"] and "free space" in result.data["msg"], result.data["msg"]
    assert files(store(root)) == before and partials(store(root)) == []
    check_invariants(store(root), info(postgres, root), before, exact(postgres, root), SECRETS, [result])
    FIGURES.add("postgresql disk full: failed during the write, earlier backups intact")


def test_read_only_backup_root(postgres: Postgres, small_fs: t.Any) -> None:
    mount = small_fs("4m")
    first = backup(postgres, mount.path, database="tiny")
    assert not first.failed, first.text
    mount.remount("ro")
    result = backup(postgres, mount.path)
    assert result.failed
    assert result.data["msg"] == (
        "cannot write backups to %s: the file system is mounted read-only. Nothing was written; remount it read-write, "
        "or set backup_root to a directory on a writable file system" % store(mount.path)), result.data["msg"]
    assert "Errno" not in result.text
    report = run("backup_report", {"backup_root": mount.path, "host": "h", "run": {"playbook": "backup", "started": "2026-01-01T00:00:00+00:00"},
                                   "results": []})
    assert not report.failed, report.text
    assert report.data["log"] is None and "read-only" in report.data["msg"]
    FIGURES.add("postgresql read-only root: clear error, report writer kept going")


def test_server_down(postgres: Postgres, tmp_path: t.Any) -> None:
    from tests.throwaway_postgres import free_port
    result = run("postgresql_backup", postgres.args(str(tmp_path), login_port=free_port()))
    assert result.failed and "is PostgreSQL running" in result.data["msg"], result.data
    assert files(store(str(tmp_path))) == {} and PG_PASSWORD not in result.text
    FIGURES.add("postgresql server down: clear error, nothing written")


def test_wrong_password(postgres: Postgres, tmp_path: t.Any) -> None:
    wrong = "Wrong-Secret-0000"
    watch = ArgvWatch([wrong, PG_PASSWORD])
    watch.start()
    result = run("postgresql_backup", postgres.args(str(tmp_path), login_password=wrong))
    watch.stop()
    assert result.failed and "password authentication failed" in result.data["msg"], result.data
    assert wrong not in result.text and watch.hits == []
    FIGURES.add("postgresql wrong password: clear error, no secret shown")


@pytest.fixture(scope="module")
def two_good(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("two"))
    for _backup in range(2):
        result = backup(postgres, root)
        assert not result.failed, result.text
    return root


def _corrupt(path: str, other: str, kind: str) -> None:
    data = open(path, "rb").read()
    if kind == "truncate":
        data = data[: len(data) // 2]
    elif kind == "flip":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    elif kind == "append":
        data += b"\x00junk after the end\n"
    elif kind == "empty":
        data = b""
    elif kind == "swap":  # an older backup copied over this one
        data = open(other, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("manifest", ["manifest", "no-manifest", "legacy"])
@pytest.mark.parametrize("kind", ["truncate", "flip", "append", "empty", "swap"] if FULL else ["truncate", "flip", "swap"])
def test_corruption_is_caught(postgres: Postgres, two_good: str, tmp_path: t.Any, kind: str, manifest: str) -> None:
    if kind == "swap" and manifest == "legacy":
        pytest.skip("a scripts-made backup has no record of its bytes: another whole dump in its place cannot be told apart")
    root = str(tmp_path / "root")
    shutil.copytree(two_good, root, symlinks=True)
    names = sorted(n for n in os.listdir(store(root)) if n.startswith("postgres_backup_") and n.endswith(".gz"))
    older, newer = (os.path.join(store(root), n) for n in names)
    _corrupt(newer, older, kind)
    if manifest != "manifest":
        os.unlink(newer + ".manifest.json")
    if manifest == "legacy":
        os.unlink(os.path.join(store(root), ".catalog.jsonl"))
    result = info(postgres, root)
    listed = {b["name"]: b for b in result.data["backups"]}[os.path.basename(newer)]
    assert listed["verification"]["state"] == "bad", listed
    assert listed["legacy"] is (manifest == "legacy")
    assert any(os.path.basename(newer) in p for p in result.data["problems"])
    if manifest == "no-manifest":
        assert any("manifest missing" in p for p in result.data["problems"])
    assert any("latest" in p for p in result.data["problems"])  # latest is on a bad file: said so
    FIGURES.add("postgresql corruption caught: %s" % manifest)


def test_two_runs_at_once(postgres: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    runs = [Module("postgresql_backup", postgres.args(root)) for _run in range(2)]
    results = [m.wait() for m in runs]
    assert all(not r.failed for r in results), [r.text for r in results]
    paths = sorted(r.data["artifact"]["path"] for r in results)
    assert paths[0] != paths[1]
    check_invariants(store(root), info(postgres, root), {}, exact(postgres, root), SECRETS, results)
    assert os.readlink(os.path.join(store(root), "latest.sql.gz")) == os.path.basename(paths[1])
    FIGURES.add("postgresql two runs at once: both good, one after the other")


def test_dump_options_that_write_elsewhere_are_refused(postgres: Postgres, tmp_path: t.Any) -> None:
    elsewhere = str(tmp_path / "elsewhere.sql")
    result = backup(postgres, str(tmp_path / "root"), dump_options=["--file=%s" % elsewhere])
    assert result.failed and "pg_dump --file is refused" in result.data["msg"], result.data
    assert not os.path.exists(elsewhere)
    FIGURES.add("postgresql bad input refused: dump_options --file")


def test_latest_on_an_older_backup_is_reported(postgres: Postgres, two_good: str, tmp_path: t.Any) -> None:
    root = str(tmp_path / "root")
    shutil.copytree(two_good, root, symlinks=True)
    names = sorted(n for n in os.listdir(store(root)) if n.startswith("postgres_backup_") and n.endswith(".gz"))
    link = os.path.join(store(root), "latest.sql.gz")
    os.unlink(link)
    os.symlink(names[0], link)
    result = info(postgres, root)
    assert any(names[0] in p and names[1] in p and "latest" in p for p in result.data["problems"]), result.data["problems"]
    os.unlink(link)
    os.symlink("/etc/passwd", link)
    result = info(postgres, root)
    assert any("outside" in p for p in result.data["problems"]), result.data["problems"]
    FIGURES.add("postgresql latest on the wrong file: reported")


def test_results_are_json(two_good: str) -> None:
    """The journal is one JSON object a line (what a reader of the store relies on)."""
    with open(os.path.join(store(two_good), ".catalog.jsonl"), encoding="utf-8") as handle:
        assert [json.loads(line)["op"] for line in handle] == ["add", "add"]
