# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults against a real redis-server in host mode: kills of every stage, server down, wrong
password, corruption with and without the manifest, two runs at once."""

from __future__ import annotations

import json
import os
import shutil
import time
import typing as t

import pytest

from tests.faults.conftest import REDIS_PASSWORD, Redis
from tests.throwaway_postgres import free_port
from tests.faults.harness import (
    FIGURES, FULL, RANDOM, STAGE_DELAY, TRIALS, ArgvWatch, Module, Result, check_invariants, files,
    kill_stage, partials, reap_orphans, run,
)

SECRETS = [REDIS_PASSWORD]


def store(root: str) -> str:
    return os.path.join(root, "redis")


def args(redis: Redis, root: str, **extra: t.Any) -> dict[str, t.Any]:
    # replication: redis-cli --rdb streams the snapshot, a stage that can be killed
    return redis.args(root, **dict({"rdb_transfer": "replication"}, **extra))


def info(redis: Redis, root: str) -> Result:
    return run("redis_backup_info", dict(redis.args(root), verify="full", min_size_bytes=100))


def exact(redis: Redis, root: str) -> t.Callable[[dict[str, t.Any]], str | None]:
    """An RDB that verifies as good holds every key (the read-back check counted them)."""

    def check(backup: dict[str, t.Any]) -> str | None:
        with open(os.path.join(store(root), backup["name"]) + ".manifest.json", encoding="utf-8") as handle:
            source = json.load(handle)["source"]
        return None if source.get("keys") == redis.keys else "%s keys of %d" % (source.get("keys"), redis.keys)

    return check


@pytest.fixture(scope="module")
def duration(redis: Redis, tmp_path_factory: pytest.TempPathFactory) -> float:
    root = str(tmp_path_factory.mktemp("calibrate"))
    started = time.monotonic()
    result = run("redis_backup", args(redis, root))
    assert not result.failed, result.text
    return time.monotonic() - started


# a Redis backup takes seconds here (a BGSAVE streamed by replication): the reduced run kills
# redis-cli and the module once each; the compressor's kill is the core's, run on PostgreSQL too
@pytest.mark.parametrize("stage", ["redis-cli", "pigz", None] if FULL else ["redis-cli", None],
                         ids=["redis-cli", "compressor", "module"] if FULL else ["redis-cli", "module"])
def test_kill_a_stage_at_random_points(redis: Redis, tmp_path: t.Any, duration: float, stage: str | None) -> None:
    root = str(tmp_path)
    first = run("redis_backup", args(redis, root))
    assert not first.failed, first.text
    label = stage or "module"
    for _trial in range(TRIALS if FULL else 1):
        before = files(store(root))
        watch = ArgvWatch(SECRETS)
        watch.start()
        module = Module("redis_backup", args(redis, root))
        how = kill_stage(module, stage, RANDOM.uniform(0, duration * 0.9 if stage is None else STAGE_DELAY),
                         match="--rdb" if stage == "redis-cli" else "")
        if stage is None:
            FIGURES.add("redis: children of the module when it was killed", reap_orphans(module))
        result = module.wait()
        watch.stop()
        FIGURES.add("redis kill %s: %s, run %s" % (label, how, "failed" if result.failed else "ok"))
        assert watch.hits == [], watch.hits
        check_invariants(store(root), info(redis, root), before, exact(redis, root), SECRETS, [result])
    left = partials(store(root))
    after = run("redis_backup", args(redis, root))
    assert not after.failed, after.text
    assert sorted(p["name"] for p in after.data["removed_partials"]) == left
    assert partials(store(root)) == []


def test_server_down(redis: Redis, tmp_path: t.Any) -> None:
    result = run("redis_backup", args(redis, str(tmp_path), login_port=free_port()))
    assert result.failed and "is Redis running" in result.data["msg"], result.data
    assert files(store(str(tmp_path))) == {} and REDIS_PASSWORD not in result.text
    FIGURES.add("redis server down: clear error, nothing written")


def test_wrong_password(redis: Redis, tmp_path: t.Any) -> None:
    wrong = "Wrong-Redis-Secret-1111"
    watch = ArgvWatch([wrong, REDIS_PASSWORD])
    watch.start()
    result = run("redis_backup", args(redis, str(tmp_path), login_password=wrong))
    watch.stop()
    assert result.failed, result.text
    assert wrong not in result.text and watch.hits == []
    FIGURES.add("redis wrong password: clear error, no secret shown")


@pytest.fixture(scope="module")
def two_good(redis: Redis, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("two"))
    for _backup in range(2):
        result = run("redis_backup", args(redis, root))
        assert not result.failed, result.text
    return root


@pytest.mark.parametrize("manifest", ["manifest", "no-manifest", "legacy"])
@pytest.mark.parametrize("kind", ["truncate", "flip", "swap"] if FULL else ["flip"])
def test_corruption_is_caught(redis: Redis, two_good: str, tmp_path: t.Any, kind: str, manifest: str) -> None:
    if kind == "swap" and manifest == "legacy":
        pytest.skip("a scripts-made backup has no record of its bytes: another whole RDB in its place cannot be told apart")
    root = str(tmp_path / "root")
    shutil.copytree(two_good, root, symlinks=True)
    names = sorted(n for n in os.listdir(store(root)) if n.startswith("redis_backup_") and n.endswith(".gz"))
    older, newer = (os.path.join(store(root), n) for n in names)
    data = open(newer, "rb").read()
    if kind == "truncate":
        data = data[: len(data) // 2]
    elif kind == "flip":
        data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
    else:
        data = open(older, "rb").read()
    with open(newer, "wb") as handle:
        handle.write(data)
    if manifest != "manifest":
        os.unlink(newer + ".manifest.json")
    if manifest == "legacy":
        os.unlink(os.path.join(store(root), ".catalog.jsonl"))
    result = info(redis, root)
    listed = {b["name"]: b for b in result.data["backups"]}[os.path.basename(newer)]
    assert listed["verification"]["state"] == "bad", listed
    assert any(os.path.basename(newer) in p for p in result.data["problems"])
    FIGURES.add("redis corruption caught: %s" % manifest)


@pytest.mark.skipif(not FULL, reason="full run only (PostgreSQL's covers the shared lock in the reduced run)")
def test_two_runs_at_once(redis: Redis, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    runs = [Module("redis_backup", args(redis, root)) for _run in range(2)]
    results = [m.wait() for m in runs]
    assert all(not r.failed for r in results), [r.text for r in results]
    check_invariants(store(root), info(redis, root), {}, exact(redis, root), SECRETS, results)
    FIGURES.add("redis two runs at once: both good, one after the other")
