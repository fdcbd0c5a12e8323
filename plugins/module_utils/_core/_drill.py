# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore drills: the one restore flow (``_restore``) into a throwaway target, timed and compared.

A drill never touches production. Its steps:

1. make the target: in docker mode a container from the production container's image (its
   command and environment too, through a 0600 env file), on a private network of its own,
   with no published ports and a memory limit; or a dedicated drill server named by the user;
   a drill that cannot make its target fails and says why (no image, not enough memory, no tool);
2. wait until the server in it answers;
3. the restore flow of ``_restore`` with an engine built on that target, confirmed, with no
   safety backup (there is nothing to keep): it reads the whole backup, loads it, and compares
   every count with the manifest; the measured time is the drill's duration;
4. the engine's sample check: rows, keys (values, TTLs) or points (vectors, payloads) of the
   backup compared with the target;
5. remove the target, also on failure; a target that cannot be removed is a problem too.

A drill takes no store lock (a backup of the store never waits for it): it holds the store's
readers lock shared, which only keeps retention from deleting the backup it reads (``_lock``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import secrets
import tempfile
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _restore, _sets
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import ReadersLock
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, run

LABEL = "cclite.backup.drill"
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class DrillError(BackupError):
    """A drill that could not run, or whose restore did not match; ``details`` carry ``drill``."""


def parse_size(text: str, option: str = "drill_memory") -> int:
    match = SIZE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError("%s %r is not a size like 512m or 2g" % (option, text))
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable of this host in bytes; ``None`` when the kernel does not say."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclasses.dataclass
class Where:
    """Where the throwaway server is: its container (docker mode) and its address."""

    container: str = ""
    address: str = ""  # the container's IP on the drill network
    description: str = ""


@dataclasses.dataclass
class DockerSpec:
    """A throwaway container shaped like the production one."""

    store: str
    container: str  # the production container: its image, command and environment are read, never changed
    image: str = ""  # another image (default: the production container's)
    memory: str = "1g"
    docker_bin: str = "docker"
    start_timeout: float = 120.0
    meminfo: str = "/proc/meminfo"


class DockerTarget:
    """A container from the production container's image on a private (internal) network, no
    published ports, no volumes of production, a memory limit; removed with its network and
    anonymous volumes."""

    def __init__(self, spec: DockerSpec) -> None:
        self.spec = spec
        tag = "%s-%s" % (spec.store, secrets.token_hex(4))
        self.name = "cclite-drill-%s" % tag
        self.network = "cclite-drill-%s" % tag
        self.created: list[str] = []  # what exists: "network", "container"
        self.image = ""

    def _docker(self, *args: str, check: bool = True, timeout: float | None = 120) -> t.Any:
        return run(Command((self.spec.docker_bin,) + args, stage="docker"), timeout=timeout, check=check)

    def cannot(self, why: str) -> DrillError:
        return DrillError("the %s drill cannot run: %s" % (self.spec.store, why), drill={"ran": False, "why": why})

    def source(self) -> dict[str, t.Any]:
        """The production container's image, command and environment (read only)."""
        if not self.spec.container:
            raise self.cannot("no production container to take the image from: set %s_backup_drill_container" % self.spec.store)
        try:
            found = self._docker("container", "inspect", self.spec.container, check=False)
        except ConfigError as exc:  # docker is not installed
            raise self.cannot(exc.msg) from exc
        if found.rc != 0:
            raise self.cannot(
                "the production container %s was not found (%s); set %s_backup_drill_container to the container whose "
                "image the drill runs" % (self.spec.container, found.stderr.strip(), self.spec.store)
            )
        return json.loads(found.stdout)[0]

    def start(self) -> Where:
        spec = self.spec
        info = self.source()
        config = info.get("Config") or {}
        self.image = spec.image or config.get("Image") or info.get("Image", "")
        if self._docker("image", "inspect", self.image, check=False).rc != 0:
            raise self.cannot(
                "the image %s of %s is not on this Docker host (pull or build it, or set %s_backup_drill_image)"
                % (self.image, spec.container, spec.store)
            )
        limit = parse_size(spec.memory, "%s_backup_drill_memory" % spec.store)
        free = available_memory(spec.meminfo)
        if free is not None and free < limit:
            raise self.cannot(
                "it needs %d MiB of memory (%s_backup_drill_memory, or drill_memory for every store) and this host has %d MiB "
                "available; free memory or lower the limit" % (limit // 2 ** 20, spec.store, free // 2 ** 20)
            )
        self._docker("network", "create", "--internal", "--label", "%s=1" % LABEL, self.network)
        self.created.append("network")
        argv = [
            "run", "-d", "--name", self.name, "--hostname", self.name, "--network", self.network,
            "--label", "%s=1" % LABEL, "--memory", str(limit), "--memory-swap", str(limit),
        ]
        entrypoint = config.get("Entrypoint") or []
        if entrypoint:
            argv += ["--entrypoint", entrypoint[0]]
        if config.get("User"):
            argv += ["--user", config["User"]]
        with tempfile.NamedTemporaryFile("w", prefix=".cclite-drill-", suffix=".env", delete=False, encoding="utf-8") as env:
            os.chmod(env.name, 0o600)  # the production container's secrets: never argv, never readable
            env.write("".join("%s\n" % e for e in config.get("Env") or [] if "\n" not in e))
        try:
            self.created.append("container")
            self._docker(*(argv + ["--env-file", env.name, self.image] + list(entrypoint[1:]) + list(config.get("Cmd") or [])))
        finally:
            os.unlink(env.name)
        inspect = json.loads(self._docker("container", "inspect", self.name).stdout)[0]
        address = ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).get(self.network, {}).get("IPAddress", "")
        return Where(self.name, address, "the throwaway container %s (image %s, network %s, memory %s)" % (
            self.name, self.image, self.network, spec.memory))

    def logs(self) -> str:
        try:
            out = self._docker("logs", "--tail", "20", self.name, check=False)
            return (out.stdout.decode("utf-8", "replace") + out.stderr).strip()[-800:]
        except BackupError:
            return ""

    def remove(self) -> list[str]:
        """Remove the container (with its anonymous volumes) and the network; problems as sentences."""
        problems = []
        if "container" in self.created:
            out = self._docker("rm", "-f", "-v", self.name, check=False)
            if out.rc != 0 and "No such container" not in out.stderr:
                problems.append("could not remove the drill container %s: %s" % (self.name, out.stderr.strip()))
        if "network" in self.created:
            out = self._docker("network", "rm", self.network, check=False)
            if out.rc != 0:
                problems.append("could not remove the drill network %s: %s" % (self.network, out.stderr.strip()))
        self.created = []
        return problems


class KeptTarget:
    """A dedicated drill server (``<store>_drill_target``): nothing to start; the engine's
    ``cleanup`` removes what the drill restored into it."""

    def __init__(self, description: str) -> None:
        self.description = description

    def start(self) -> Where:
        return Where(description=self.description)

    def logs(self) -> str:
        return ""

    def remove(self) -> list[str]:
        return []


class Throwaway(t.Protocol):
    def start(self) -> Where: ...

    def logs(self) -> str: ...

    def remove(self) -> list[str]: ...


class DrillEngine(t.Protocol):
    """What a store brings to a drill, beside its restore engine."""

    def ready(self, where: Where) -> None: ...  # raises BackupError until the server answers

    def engine(self, where: Where) -> _restore.Engine: ...

    def sample(self, where: Where, entry: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, t.Any]]: ...

    def cleanup(self, where: Where) -> list[str]: ...  # a kept target: remove the restored data


def wait_ready(store: DrillEngine, where: Where, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            store.ready(where)
            return
        except BackupError as exc:
            last = exc.msg
        if time.monotonic() > deadline:
            raise DrillError("the drill server did not answer within %g seconds: %s" % (timeout, last))
        time.sleep(0.5)


def pick(spec: _restore.RestoreSpec, store: str, backup_set: str | None, rng: t.Any = random) -> _restore.RestoreSpec:
    """The backup a drill restores: the named one (``verify.yml`` resolves a set with
    ``backup_set_info`` over every requested store and names each store's file of it); of
    ``backup_set`` (a run id) this store's backup in that set (``_sets``: its manifest's
    ``run_id``, or for backups without one its name's stamp), which must be good; ``random``:
    any but the newest."""
    if not backup_set or backup_set == "latest" or spec.name not in ("", "latest"):
        return spec

    def cannot(why: str) -> DrillError:
        return DrillError("the %s drill cannot run: %s" % (store, why), drill={"store": store, "set": backup_set, "ran": False, "passed": False, "why": why})

    entries = spec.catalog.entries()
    if backup_set == "random":
        older = entries[1:]
        if not older:
            raise cannot("a drill of a random older set needs a backup older than the newest, and %s has %d" % (spec.catalog.directory, len(entries)))
        return dataclasses.replace(spec, name=rng.choice(older).name)
    members, _others = _sets.local_members(spec.catalog)
    found = [s for s in _sets.group(members) if s.run_id == backup_set]
    missing = found[0].missing([store]) if found else ["%s: no backup in the set" % store]
    if missing:
        raise cannot("backup set %s is not complete: %s (in %s; it has: %s)" % (
            backup_set, "; ".join(missing), spec.catalog.directory, ", ".join(e.name for e in entries[:5]) or "none"))
    return dataclasses.replace(spec, name=found[0].members[store].name)


def run_drill(
    store_name: str, spec: _restore.RestoreSpec, store: DrillEngine, target: Throwaway, start_timeout: float = 120.0,
    run_id: str | None = None,
) -> dict[str, t.Any]:
    """Steps 1 to 5, holding the store's readers lock (so retention cannot delete the backup
    mid-drill, and a backup of the store does not wait); returns the module's result with
    ``drill``, or raises ``DrillError`` with it."""
    with ReadersLock(spec.catalog.directory, timeout=spec.lock_timeout):
        return _run_drill(store_name, spec, store, target, start_timeout, run_id)


def _run_drill(
    store_name: str, spec: _restore.RestoreSpec, store: DrillEngine, target: Throwaway, start_timeout: float, run_id: str | None,
) -> dict[str, t.Any]:
    spec = dataclasses.replace(pick(spec, store_name, run_id), confirm=True, safety_backup=False, keep_previous=False, drill=True)
    drill: dict[str, t.Any] = {
        "store": store_name, "set": run_id, "backup": spec.name, "ran": False, "passed": False, "server": None,
        "started": time.time(), "finished": None, "duration_seconds": None, "restore_seconds": None, "compared": {},
        "problems": [], "why": None,
    }
    out: dict[str, t.Any] = {}
    began = time.monotonic()
    where: Where | None = None
    summary = ""
    failure: BackupError | None = None
    try:
        where = target.start()
        drill["server"] = where.description
        wait_ready(store, where, start_timeout)
        drill["ran"] = True
        restore_began = time.monotonic()
        engine = store.engine(where)
        out = _restore.Flow(spec, engine).run(False)
        summary = engine.summary()
        drill["restore_seconds"] = round(time.monotonic() - restore_began, 3)
        drill["backup"] = (out.get("restored_from") or {}).get("name", spec.name)
        drill["compared"] = {k: v for k, v in out.items() if k in ("tables", "databases", "collections") and v is not None}
        problems, compared = store.sample(where, out.get("restored_from") or {})
        drill["compared"]["sample"] = compared
        drill["problems"] += problems
    except DrillError as exc:
        failure = exc
        drill["why"] = exc.details.get("drill", {}).get("why") or exc.msg
    except BackupError as exc:
        failure = exc
        logs = target.logs() if not drill["ran"] else ""
        drill["why"] = exc.msg + (" (its log: %s)" % logs if logs else "")
    finally:
        cleanup: list[str] = []
        if where is not None and drill["ran"]:
            try:
                cleanup += store.cleanup(where)
            except BackupError as exc:
                cleanup.append("could not remove the restored data from the drill target: %s" % exc.msg)
        cleanup += target.remove()
        drill["problems"] += cleanup
        drill["finished"] = time.time()
        drill["duration_seconds"] = round(time.monotonic() - began, 3)
    if failure is None and drill["problems"]:
        failure = DrillError("; ".join(drill["problems"]))
        drill["why"] = failure.msg
    if failure is not None:
        what = "did not run" if not drill["ran"] else "failed"
        msg = failure.msg if failure.msg.startswith("the %s drill" % store_name) else "the %s drill %s: %s" % (store_name, what, drill["why"] or failure.msg)
        raise DrillError(msg, drill=drill)
    drill["passed"] = True
    out["drill"] = drill
    out["changed"] = False  # nothing of production changed; the target is gone
    out["rollback"] = out["safety_backup"] = None
    out["msg"] = "the %s drill of %s passed: restored in %ss into %s, now removed (%s; %s)" % (
        store_name, drill["backup"], round(float(drill["restore_seconds"] or 0), 1), drill["server"], summary,
        sample_words(drill["compared"].get("sample") or {}))
    return out


def sample_words(sample: t.Mapping[str, t.Any]) -> str:
    found = ", ".join("%s %s" % (v, k) for k, v in sample.items() if isinstance(v, int) and k != "note")
    return "sample compared: %s" % (found or "none") + ("; %s" % sample["note"] if sample.get("note") else "")
