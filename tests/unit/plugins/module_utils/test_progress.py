# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The progress status file: what it holds while a real backup or restore streams, its mode, its removal."""

from __future__ import annotations

import json
import os
import stat
import threading
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _progress
from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Command
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import make_backup
from ansible_collections.cclite.backup.plugins.module_utils._reporting._report import progress_line
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_ops import FakeProducer, spec_for
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import FakeEngine, backup
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import spec_for as restore_spec_for

KEYS = {
    "schema", "pid", "store", "action", "target", "phase", "bytes_done", "bytes_expected", "rate_bytes_per_second",
    "seconds_left", "phase_seconds", "seconds", "held", "point_fixed", "point_fixed_at", "updated",
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(path: str) -> dict[str, t.Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_rate_time_left_and_throttling(tmp_path):
    clock = Clock()
    path = str(tmp_path / "p.json")
    progress = _progress.Progress(path, "postgresql", "backup", "app", interval=1.0, clock=clock)
    progress.set_phase("backup", 1000)
    clock.now += 2
    progress.advance(400)
    status = read(path)
    assert (status["bytes_done"], status["bytes_expected"], status["rate_bytes_per_second"], status["seconds_left"]) == (400, 1000, 200.0, 3.0)
    assert set(status) == KEYS and status["point_fixed"] is False
    clock.now += 0.5
    progress.advance(100)  # within the interval: not written
    assert read(path)["bytes_done"] == 400
    clock.now += 0.5
    progress.advance(100)
    assert read(path)["bytes_done"] == 600
    progress.point_fixed()
    first = read(path)["point_fixed_at"]
    progress.point_fixed()  # the first moment counts
    assert read(path)["point_fixed"] is True and read(path)["point_fixed_at"] == first


def test_fixed_on_first_output(tmp_path):
    path = str(tmp_path / "p.json")
    progress = _progress.Progress(path, "postgresql", "backup", interval=60)
    progress.fix_on_output = True
    progress.set_phase("backup", None)
    assert read(path)["point_fixed"] is False
    progress.advance(1)  # written at once despite the interval: a consistent set waits for it
    assert read(path)["point_fixed"] is True


def test_a_backup_streams_into_the_status_file_which_is_private_and_removed(tmp_path):
    catalog = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    make_backup(spec_for(catalog), FakeProducer(), {})
    previous = catalog.entries()[0].size
    path = str(tmp_path / "backups" / ".progress" / "postgresql-app.json")
    seen: list[dict[str, t.Any]] = []
    # 4 MiB of incompressible data over about 1.6 s: the writer reads it 1 MiB at a time
    script = "import os,sys,time\nfor _ in range(16):\n    sys.stdout.buffer.write(os.urandom(256 * 1024)); sys.stdout.flush(); time.sleep(0.1)\n"
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if os.path.exists(path):
                try:
                    seen.append(dict(read(path), mode=stat.S_IMODE(os.stat(path).st_mode),
                                     dir_mode=stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)))
                except (OSError, ValueError):
                    pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with _progress.reporting(path, "postgresql", "backup", "app", interval=0.1) as progress:
            spec = spec_for(catalog, verify_after=False)
            make_backup(spec, FakeProducer(command=Command(("python3", "-c", script), stage="pg_dump")), {})
            fixed = t.cast(_progress.Progress, progress).fixed_at
    finally:
        stop.set()
        watcher.join()
    assert not os.path.exists(path)  # removed at the end
    during = [s for s in seen if s["phase"] == "backup"]
    done = [s["bytes_done"] for s in during]
    assert done == sorted(done) and len({d for d in done if d > 0}) >= 2  # seen growing while it ran
    assert all(s["bytes_expected"] == previous for s in during)
    assert all(s["mode"] == 0o600 and s["dir_mode"] == 0o700 for s in seen)
    assert all(set(s) - {"mode", "dir_mode"} == KEYS for s in seen)
    assert any(s["rate_bytes_per_second"] for s in during)
    assert fixed is not None  # at the latest once the data is written


def test_without_a_path_nothing_is_written(tmp_path):
    with _progress.reporting(None, "redis", "backup") as progress:
        _progress.advance(10)
        _progress.point_fixed()
    assert progress is None and os.listdir(str(tmp_path)) == []


def test_an_unwritable_status_file_never_fails_the_work(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with _progress.reporting(str(tmp_path / "file" / "p.json"), "redis", "backup") as progress:
        _progress.advance(10)
    assert progress is not None and "cannot make the directory" in str(progress.error)


class ReadingEngine(FakeEngine):
    """A stand-in that loads by reading the artifact through, as the real engines do."""

    def prepare(self, entry: Entry) -> None:
        for _chunk in ArtifactReader(entry.path).chunks():
            pass
        super().prepare(entry)


def test_a_restore_reports_its_own_size_and_duration(tmp_path):
    catalog = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    entry = backup(catalog, 1, 500, latest=True)
    out = _restore.restore(restore_spec_for(catalog, keep_previous=True), ReadingEngine(), check_mode=False)
    content = sum(len(c) for c in ArtifactReader(entry.path).chunks())
    assert out["restore"]["size"] == content and content > entry.size  # the data loaded, not the file
    assert isinstance(out["restore"]["duration"], float) and out["restore"]["duration"] >= 0


def test_progress_line():
    status = {"store": "postgresql", "action": "backup", "target": "app", "phase": "backup", "bytes_done": 1024 ** 3,
              "bytes_expected": 3 * 1024 ** 3, "rate_bytes_per_second": 50 * 1024 ** 2, "seconds_left": 41, "seconds": 25.2}
    assert progress_line("db1", status) == (
        "[db1] postgresql backup app: backup 1.0 GiB of ~3.0 GiB (33%), 50.0 MiB/s, 41 s left (25 s running)")
    past = dict(status, bytes_done=4 * 1024 ** 3, seconds_left=None, seconds=3700)
    assert progress_line("db1", past).endswith("4.0 GiB of ~3.0 GiB (99%), 50.0 MiB/s, past the expected size (1 h 01 min running)")
    assert progress_line("r", {"store": "redis", "action": "restore", "phase": "load", "bytes_done": 10, "bytes_expected": None,
                               "rate_bytes_per_second": None, "seconds_left": None, "seconds": 4}) == "[r] redis restore: load 10 B (4 s running)"


def test_a_held_module_waits_for_the_release(tmp_path):
    path = str(tmp_path / "p.json")
    hold = path + ".hold"
    open(hold, "w").close()
    with _progress.reporting(path, "redis", "backup") as progress:
        assert _progress.holding()
        released: list[bool] = []

        def release() -> None:
            while not read(path)["held"]:
                threading.Event().wait(0.01)
            released.append(True)
            os.unlink(hold)

        thread = threading.Thread(target=release)
        thread.start()
        _progress.hold()  # returns only once the hold file is gone
        thread.join()
        assert released == [True] and not _progress.holding()
        _progress.point_fixed()
        assert read(path)["point_fixed"] is True and t.cast(_progress.Progress, progress).held is False
    with _progress.reporting(path, "redis", "backup"):
        assert not _progress.holding()  # no hold file: no hold
