# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Commands as argv lists, where they run (here or in a container), and redaction.

Secrets never reach argv: they travel in the environment of the child process. For a
command run inside a container, ``docker exec -e NAME`` (no ``=value``) makes the docker
CLI copy the value from its own environment, so the value stays off every command line.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError

REDACTED = "********"
STDERR_TAIL = 4096


def redact(text: str, secrets: t.Iterable[str]) -> str:
    """Replace every secret value in ``text`` (longest first, so no prefix leaks)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


@dataclasses.dataclass(frozen=True)
class Command:
    """One program call: argv, extra environment, and the secrets it carries."""

    argv: tuple[str, ...]
    env: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    secret_env: frozenset[str] = frozenset()
    stage: str = ""

    @property
    def name(self) -> str:
        return self.stage or os.path.basename(self.argv[0])

    def environ(self) -> dict[str, str]:
        merged = dict(os.environ)
        merged.update(self.env)
        return merged

    def secrets(self) -> list[str]:
        return [self.env[k] for k in self.secret_env if self.env.get(k)]

    def display(self) -> str:
        """argv as a string for messages; argv never holds secrets, redact anyway."""
        return redact(" ".join(self.argv), self.secrets())


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a tool runs: on this host, or inside a Docker container on this host."""

    container: str = ""
    container_user: str = ""
    run_as: str = ""  # on this host: run the tool as this OS user (runuser), e.g. for peer auth
    docker_bin: str = "docker"

    @property
    def in_container(self) -> bool:
        return bool(self.container)

    def command(
        self,
        argv: t.Sequence[str],
        env: t.Mapping[str, str] | None = None,
        secret_env: t.Iterable[str] = (),
        stage: str = "",
    ) -> Command:
        env = {k: v for k, v in (env or {}).items() if v is not None}
        stage = stage or os.path.basename(argv[0])
        if not self.in_container:
            prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
            return Command(tuple(prefix + list(argv)), env, frozenset(secret_env), stage)
        wrapped = [self.docker_bin, "exec", "-i"]
        if self.container_user:
            wrapped += ["-u", self.container_user]
        for name in sorted(env):
            wrapped += ["-e", name]  # value comes from our environment, never argv
        wrapped.append(self.container)
        wrapped += list(argv)
        return Command(tuple(wrapped), env, frozenset(secret_env), stage)

    def describe(self) -> str:
        return "container %s" % self.container if self.in_container else "this host"


@dataclasses.dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: str


def require_program(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ConfigError("%s is not installed on the managed host: %s" % (name, hint))
    return path


def tail(data: bytes, limit: int = STDERR_TAIL) -> str:
    text = data[-limit:].decode("utf-8", errors="replace").strip()
    return text


def redacted_tail(data: bytes, secrets: t.Sequence[str], limit: int = STDERR_TAIL) -> str:
    """The end of some output, secrets redacted *before* it is cut (a cut secret would leak)."""
    margin = max((len(s.encode()) for s in secrets), default=0)
    text = redact(data[-(limit + margin):].decode("utf-8", errors="replace"), secrets)
    return text[-limit:].strip()


def spooled_tail(handle: t.BinaryIO, secrets: t.Sequence[str], limit: int = STDERR_TAIL) -> str:
    """:func:`redacted_tail` of what a child wrote into a spooled temp file."""
    margin = max((len(s.encode()) for s in secrets), default=0)
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - limit - margin))
    return redacted_tail(handle.read(), secrets, limit)


def run(cmd: Command, stdin: bytes | None = None, timeout: float | None = None, check: bool = True) -> Result:
    """Run a command that produces little output; fail with its redacted stderr."""
    try:
        proc = subprocess.run(
            list(cmd.argv),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=cmd.environ(),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ConfigError("cannot run %s: %s is not installed or not on PATH" % (cmd.name, exc.filename)) from exc
    except subprocess.TimeoutExpired as exc:
        raise StageError("%s did not finish within %s seconds" % (cmd.name, timeout)) from exc
    stderr = redacted_tail(proc.stderr, cmd.secrets())
    if check and proc.returncode != 0:
        raise StageError(
            "%s failed with exit status %d: %s" % (cmd.name, proc.returncode, stderr or "(no error output)"),
            rc=proc.returncode,
            stage=cmd.name,
        )
    return Result(proc.returncode, proc.stdout, stderr)
