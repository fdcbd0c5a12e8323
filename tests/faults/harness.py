# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault suite's tools: run a module as AnsibleModule runs it, kill its stages, watch argv,
check the invariants every trial must keep, and count what happened."""

from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FULL = os.environ.get("CCLITE_FAULTS", "reduced") == "full"
# a stage's kill lands this long after it appeared, at most (the module's: within one backup)
STAGE_DELAY = 0.25
TRIALS = int(os.environ.get("CCLITE_FAULTS_TRIALS", "10" if FULL else "2"))
SEED = int(os.environ.get("CCLITE_FAULTS_SEED", str(int(time.time()))))
RANDOM = random.Random(SEED)

# a collection tree whose cclite/backup is this checkout, so `python -m` finds the modules
TREE = tempfile.mkdtemp(prefix="cclite-faults-tree-")
os.makedirs(os.path.join(TREE, "ansible_collections", "cclite"))
os.symlink(ROOT, os.path.join(TREE, "ansible_collections", "cclite", "backup"))
if TREE not in sys.path:
    sys.path.insert(0, TREE)


class Figures:
    """What the suite did and saw, printed at the end."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def lines(self) -> list[str]:
        out = ["fault suite: mode %s, seed %d, %d trials per kill stage" % ("FULL" if FULL else "REDUCED", SEED, TRIALS)]
        for key in sorted(self.counts):
            out.append("  %-60s %d" % (key, self.counts[key]))
        return out


FIGURES = Figures()


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every live descendant of ``pid`` (pid, command name), from /proc."""
    parents: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue
        parents[int(fields[1])].append((int(name), comm))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


class ArgvWatch(threading.Thread):
    """Samples every process's command line while a trial runs; records any that holds a secret."""

    def __init__(self, secrets: t.Sequence[str]) -> None:
        super().__init__(daemon=True)
        self.secrets = [s.encode() for s in secrets if s]
        self.samples = 0
        self.hits: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) == os.getpid():
                    continue
                try:
                    with open("/proc/%s/cmdline" % name, "rb") as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if any(s in argv for s in self.secrets):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        FIGURES.add("argv samples of every process (/proc/*/cmdline)", self.samples)


@dataclasses.dataclass
class Result:
    rc: int | None
    data: dict[str, t.Any]
    text: str  # stdout and stderr: what a log would show

    @property
    def failed(self) -> bool:
        return bool(self.data.get("failed")) or self.rc != 0


class Module:
    """A module run the way AnsibleModule is run: ``python -m`` with its arguments on stdin."""

    def __init__(self, name: str, args: t.Mapping[str, t.Any]) -> None:
        self.name = name
        env = dict(os.environ, PYTHONPATH=TREE)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ansible_collections.cclite.backup.plugins.modules." + name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/",
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args)}).encode())
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not flush it again
        self._result: Result | None = None
        self.children: list[tuple[int, str]] = []  # its descendants when a stage was killed

    def wait(self, timeout: float = 300) -> Result:
        if self._result is not None:
            return self._result
        out, err = self.proc.communicate(timeout=timeout)
        text = out.decode(errors="replace") + err.decode(errors="replace")
        try:
            data = json.loads(out.decode(errors="replace").strip().splitlines()[-1]) if out.strip() else {}
        except ValueError:
            data = {}
        self._result = Result(self.proc.returncode, data, text)
        return self._result


def run(name: str, args: t.Mapping[str, t.Any], timeout: float = 300) -> Result:
    return Module(name, args).wait(timeout)


def _cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_stage(module: Module, stage: str | None, delay: float, appear_timeout: float = 30, match: str = "") -> str:
    """SIGKILL one stage of a running module: a child by its command name, or the module itself
    (``None``), ``delay`` seconds after it appears. Returns what happened: killed, or missed (the
    run ended first)."""
    pid = module.proc.pid
    if stage is not None:
        deadline = time.monotonic() + appear_timeout
        target = None
        while time.monotonic() < deadline and module.proc.poll() is None:
            found = [p for p, comm in descendants(pid) if comm == stage and match in _cmdline(p)]
            if found:
                target = found[0]
                break
            time.sleep(0.002)
        if target is None:
            return "missed"
        pid = target
    time.sleep(delay)
    module.children = descendants(module.proc.pid)
    if _state(pid) in ("Z", "X", ""):
        return "missed"  # it ended before the delay was over
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "missed"
    return "killed"


def reap_orphans(module: Module, timeout: float = 3.0) -> int:
    """After the module was killed: wait for its children (issue 18 item 5 ties them to it);
    count the ones that outlived it by more than a moment, and end them so the next trial starts
    clean."""
    children = module.children
    module.wait()
    orphans = []
    for pid, comm in children:
        try:
            os.kill(pid, 0)
            orphans.append((pid, comm))
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    orphans = [(p, c) for p, c in orphans if _state(p) not in ("Z", "X", "")]
    FIGURES.add("children still running 0.5 s after their module was killed", len(orphans))
    deadline = time.monotonic() + timeout
    while orphans and time.monotonic() < deadline:
        orphans = [(p, c) for p, c in orphans if _state(p) not in ("Z", "X", "")]
        time.sleep(0.05)
    for pid, _comm in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(children)


def _state(pid: int) -> str:
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return ""


def files(directory: str) -> dict[str, str]:
    """sha256 of every regular file of a store directory (links as '-> target')."""
    state = {}
    if not os.path.isdir(directory):
        return state
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.islink(path):
            state[name] = "-> " + os.readlink(path)
        elif os.path.isfile(path) and not name.startswith("."):
            with open(path, "rb") as handle:
                state[name] = hashlib.sha256(handle.read()).hexdigest()
    return state


def partials(directory: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".partial")) if os.path.isdir(directory) else []


def check_invariants(
    directory: str, info: Result, before: t.Mapping[str, str], exact: t.Callable[[dict[str, t.Any]], str | None],
    secrets: t.Sequence[str], results: t.Sequence[Result] = (),
) -> None:
    """What every trial must keep. ``info`` is the store's info module run at level full;
    ``exact(backup)`` returns why a backup that verifies as good is not complete and exact."""
    assert info.rc == 0, info.text
    backups = {b["name"]: b for b in info.data["backups"]}
    for name, backup in backups.items():
        state = backup["verification"]["state"]
        FIGURES.add("backups checked after a fault: %s" % state)
        if state == "good":
            problem = exact(backup)
            assert problem is None, "%s verifies as good but is not complete and exact: %s" % (name, problem)
    # latest is never on a bad file
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith("latest") and os.path.islink(path):
            target = os.path.basename(os.readlink(path))
            assert target in backups and backups[target]["verification"]["state"] == "good", (name, target, backups.get(target))
    # earlier backups byte-identical
    now = files(directory)
    for name, digest in before.items():
        if name.startswith("latest"):
            continue
        assert now.get(name) == digest, "%s changed or vanished" % name
    # no secret in anything a log or a notification could show
    for result in list(results) + [info]:
        for secret in secrets:
            assert secret not in result.text, "a secret reached the module's output"
    # leftovers are reported until the next run removes them
    stale = partials(directory)
    if stale:
        FIGURES.add("trials that left a .partial (reported by the info module)")
        assert all(any(p in problem for problem in info.data["problems"]) for p in stale if ".latest" not in p), (
            stale, info.data["problems"])


def gunzip_lines(path: str) -> t.Iterator[bytes]:
    with gzip.open(path, "rb") as handle:
        yield from handle
