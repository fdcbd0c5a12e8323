# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults against the project's Qdrant-compatible server (tests/qdrant_server, Qdrant Edge
storage): kills of the module and the compressor at random points, server down, wrong API key,
corruption with and without the manifest."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
import typing as t

import pytest

from tests.faults.conftest import QDRANT_API_KEY, Qdrant
from tests.throwaway_postgres import free_port
from tests.faults.harness import (
    FIGURES, FULL, RANDOM, STAGE_DELAY, TRIALS, ArgvWatch, Module, Result, check_invariants, files,
    kill_stage, partials, reap_orphans, run,
)

SECRETS = [QDRANT_API_KEY]


def store(root: str) -> str:
    return os.path.join(root, "qdrant")


def info(qdrant: Qdrant, root: str) -> Result:
    return run("qdrant_backup_info", dict(qdrant.args(root), verify="full", min_size_bytes=100))


def exact(qdrant: Qdrant, root: str) -> t.Callable[[dict[str, t.Any]], str | None]:
    """A bundle that verifies as good holds a complete snapshot of the collection, with every point."""

    def check(backup: dict[str, t.Any]) -> str | None:
        path = os.path.join(store(root), backup["name"])
        with open(path + ".manifest.json", encoding="utf-8") as handle:
            source = json.load(handle)["source"]
        if source.get("total_points") != qdrant.points:
            return "%s points of %d" % (source.get("total_points"), qdrant.points)
        try:
            with tarfile.open(path, "r:*") as bundle:  # reads the whole stream: a cut one raises
                names = [m.name for m in bundle.getmembers()]
        except (tarfile.TarError, OSError, EOFError) as exc:
            return "the bundle does not read to its end: %s" % exc
        if not any("items" in n and n.endswith(".snapshot") for n in names):
            return "no snapshot of the collection in %s" % names
        return None

    return check


@pytest.fixture(scope="module")
def duration(qdrant: Qdrant, tmp_path_factory: pytest.TempPathFactory) -> float:
    root = str(tmp_path_factory.mktemp("calibrate"))
    started = time.monotonic()
    result = run("qdrant_backup", qdrant.args(root))
    assert not result.failed, result.text
    return time.monotonic() - started


@pytest.mark.parametrize("stage", ["pigz", None], ids=["compressor", "module"])
def test_kill_a_stage_at_random_points(qdrant: Qdrant, tmp_path: t.Any, duration: float, stage: str | None) -> None:
    root = str(tmp_path)
    first = run("qdrant_backup", qdrant.args(root))
    assert not first.failed, first.text
    label = stage or "module"
    for _trial in range(TRIALS if FULL else 1):  # a Qdrant backup takes ~10 s here: one trial each in the reduced run
        before = files(store(root))
        watch = ArgvWatch(SECRETS)
        watch.start()
        module = Module("qdrant_backup", qdrant.args(root))
        # the compressor only runs while the snapshot streams, at the end of the run
        how = kill_stage(module, stage, RANDOM.uniform(0, duration * 0.9 if stage is None else STAGE_DELAY), appear_timeout=120)
        if stage is None:
            FIGURES.add("qdrant: children of the module when it was killed", reap_orphans(module))
        result = module.wait()
        watch.stop()
        FIGURES.add("qdrant kill %s: %s, run %s" % (label, how, "failed" if result.failed else "ok"))
        if how == "killed" and stage is not None:
            assert result.failed and stage in result.data.get("msg", ""), result.data
        assert watch.hits == [], watch.hits
        check_invariants(store(root), info(qdrant, root), before, exact(qdrant, root), SECRETS, [result])
    left = partials(store(root))
    after = run("qdrant_backup", qdrant.args(root))
    assert not after.failed, after.text
    assert sorted(p["name"] for p in after.data["removed_partials"]) == left
    assert partials(store(root)) == []
    FIGURES.add("qdrant: .partial files removed by the next run", len(left))


def test_server_down(qdrant: Qdrant, tmp_path: t.Any) -> None:
    result = run("qdrant_backup", qdrant.args(str(tmp_path), url="http://127.0.0.1:%d" % free_port()))
    assert result.failed and "127.0.0.1" in result.data["msg"], result.data
    assert files(store(str(tmp_path))) == {} and QDRANT_API_KEY not in result.text
    FIGURES.add("qdrant server down: clear error, nothing written")


def test_wrong_api_key(qdrant: Qdrant, tmp_path: t.Any) -> None:
    wrong = "Wrong-Qdrant-Key-2222"
    watch = ArgvWatch([wrong, QDRANT_API_KEY])
    watch.start()
    result = run("qdrant_backup", qdrant.args(str(tmp_path), api_key=wrong))
    watch.stop()
    assert result.failed and ("401" in result.data["msg"] or "403" in result.data["msg"] or "api key" in result.data["msg"].lower()), result.data
    assert wrong not in result.text and QDRANT_API_KEY not in result.text and watch.hits == []
    assert files(store(str(tmp_path))) == {}
    FIGURES.add("qdrant wrong API key: clear error, no secret shown")


@pytest.fixture(scope="module")
def two_good(qdrant: Qdrant, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("two"))
    for _backup in range(2):
        result = run("qdrant_backup", qdrant.args(root))
        assert not result.failed, result.text
        time.sleep(1.1)  # names carry the second
    return root


@pytest.mark.parametrize("manifest", ["manifest", "no-manifest"])
@pytest.mark.parametrize("kind", ["truncate", "flip", "swap"] if FULL else ["flip"])
def test_corruption_is_caught(qdrant: Qdrant, two_good: str, tmp_path: t.Any, kind: str, manifest: str) -> None:
    root = str(tmp_path / "root")
    shutil.copytree(two_good, root, symlinks=True)
    names = sorted(n for n in os.listdir(store(root)) if n.startswith("qdrant_backup_") and n.endswith(".gz"))
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
    result = info(qdrant, root)
    listed = {b["name"]: b for b in result.data["backups"]}[os.path.basename(newer)]
    assert listed["verification"]["state"] == "bad", listed
    assert any(os.path.basename(newer) in p for p in result.data["problems"])
    if manifest == "no-manifest":
        assert any("manifest missing" in p for p in result.data["problems"])
    FIGURES.add("qdrant corruption caught: %s" % manifest)
