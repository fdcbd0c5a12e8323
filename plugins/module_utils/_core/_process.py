# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Commands as argv lists, where they run (here or in a container), redaction, and the one
place every child process is started (:func:`start`, :func:`run`).

Secrets never reach argv: they travel in the environment of the child process. For a
command run inside a container, ``docker exec -e NAME`` (no ``=value``) makes the docker
CLI copy the value from its own environment, so the value stays off every command line.

Every child dies with the module (issue 18.5): it gets SIGKILL when the module process dies
(Linux ``PR_SET_PDEATHSIG``). The kernel sends it when the *thread* that started the child
ends, so a child started in a worker thread must end before that thread does.
- Killing a ``docker exec`` CLI does not stop the process in the container, so a command run
  there without input of ours runs under :data:`GUARD`, which kills it when the exec's stdin
  (a pipe we hold) ends. A command reading our input (psql, redis-cli) stops when it ends.
- A grandchild (the tool ``runuser`` forks) gets no signal; its output pipe has lost its
  reader, so it dies of SIGPIPE at its next write.
No child renames a file into place: ``_artifact.write_artifact`` does, in the module process,
after every stage exited 0. A killed module leaves at most a hidden ``.partial`` file.

The ``preexec_fn`` that sets ``PR_SET_PDEATHSIG`` makes every start run the interpreter's
``os.register_at_fork`` hooks, ``before`` and ``after_in_parent`` each from its own copy of the
list. A module registering hooks when it is first imported, in another thread, between the two
copies, gets its ``after_in_parent`` without its ``before``: ``concurrent.futures.thread``'s
then releases the lock that thread's own ``ThreadPoolExecutor.submit`` holds, and the submit
fails with "release unlocked lock" (a directory restore's first thread pool is made in the
thread checking the files while the load starts its processes). So the standard modules that
register fork hooks are imported here, before any thread or child exists.
"""

from __future__ import annotations

import concurrent.futures.thread  # pylint: disable=unused-import  # its fork hooks, registered before any fork: see above
import ctypes
import dataclasses
import fcntl
import logging  # pylint: disable=unused-import  # its fork hooks too
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
    inner: int = 0  # in a container: where the in-container argv starts (0: runs on this host)

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
        inner = len(wrapped)
        wrapped += list(argv)
        return Command(tuple(wrapped), env, frozenset(secret_env), stage, inner)

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


# In a container: run "$@" with no input and kill it when our pipe (its stdin, kept as fd 3)
# ends. An asynchronous command of a non-interactive sh reads /dev/null, hence the fd 3.
GUARD = 'exec 3<&0; "$@" </dev/null 3<&- & c=$!; (cat <&3 >/dev/null 2>&1; kill -9 $c 2>/dev/null) >/dev/null 2>&1 & exec 3<&-; wait $c'
PR_SET_PDEATHSIG = 1


def _prctl() -> t.Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # looked up once, before any fork
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def _die_with(parent: int) -> t.Callable[[], None] | None:
    """The ``preexec_fn`` tying a child to ``parent``: SIGKILL when it dies, or at once if it
    already died between fork and prctl."""
    if _PRCTL is None:
        return None

    def tie() -> None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


SPOOL = -10  # stderr: spooled to an anonymous temp file, read back redacted


class Child:
    """A started child process (see :func:`start`): its pipes, exit status and redacted stderr."""

    def __init__(self, cmd: Command, proc: subprocess.Popen, err: t.Any, hold: int) -> None:
        self.cmd = cmd
        self.proc = proc
        self._err = err
        self._hold = hold  # our end of a guarded container command's stdin

    @property
    def stdin(self) -> t.Any:
        return self.proc.stdin

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        """The end of what the child wrote to stderr, secrets redacted before it is cut."""
        return spooled_tail(self._err, self.cmd.secrets()) if self._err is not None else ""

    def stderr_from(self, offset: int) -> bytes:
        """What the child has written to stderr from byte ``offset`` on, so far (unredacted: for
        parsing progress, never for output)."""
        if self._err is None:
            return b""
        return os.pread(self._err.fileno(), STDERR_TAIL * 16, offset)

    def failure(self) -> str:
        """How it ended, as a sentence: '<name> failed with exit status N: <stderr>'."""
        rc = self.proc.returncode or 0
        how = "was killed by signal %d" % -rc if rc < 0 else "failed with exit status %d" % rc
        return "%s %s: %s" % (self.cmd.name, how, self.stderr() or "(no error output)")

    def check(self) -> None:
        """Wait for the child; raise :class:`StageError` unless it exited with status 0."""
        self.proc.wait()
        if self.proc.returncode != 0:
            raise StageError(self.failure(), rc=self.proc.returncode, stage=self.cmd.name)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self, grace: float = 0.0) -> None:
        """End the child (after ``grace`` seconds to end by itself) and release its files."""
        try:
            if grace and self.proc.poll() is None:
                try:
                    if self.proc.stdin is not None:
                        self.proc.stdin.close()
                    self.proc.wait(grace)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self.kill()
        finally:
            for handle in (self.proc.stdin, self.proc.stdout):
                if handle is not None:
                    try:
                        handle.close()
                    except OSError:
                        pass
            if self._hold >= 0:
                os.close(self._hold)
                self._hold = -1
            if self._err is not None:
                self._err.close()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start(cmd: Command, stdin: t.Any = subprocess.DEVNULL, stdout: t.Any = subprocess.PIPE, stderr: t.Any = SPOOL,
          hint: str = "", bufsize: int = -1) -> Child:
    """Start ``cmd``: the one place a child process of this collection is created.

    ``stdin``/``stdout`` take what :class:`subprocess.Popen` takes; ``stderr`` is spooled to
    a temp file (:meth:`Child.stderr`) unless given. A missing program raises
    :class:`ConfigError` ("cannot run X: Y is not installed or not on PATH", then ``hint``).
    The child dies with this process; see the module docstring.
    """
    argv = list(cmd.argv)
    hold = -1
    if cmd.inner and stdin in (None, subprocess.DEVNULL):
        argv = argv[:cmd.inner] + ["sh", "-c", GUARD, "sh"] + argv[cmd.inner:]
        stdin, hold = os.pipe()
    err = tempfile.TemporaryFile() if stderr == SPOOL else None
    try:
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=err if err is not None else stderr, env=cmd.environ(),
            bufsize=bufsize, preexec_fn=_die_with(os.getpid()),
        )
    except BaseException as exc:
        if err is not None:
            err.close()
        if hold >= 0:
            os.close(hold)
        if isinstance(exc, FileNotFoundError):
            raise ConfigError("cannot run %s: %s is not installed or not on PATH%s" % (cmd.name, exc.filename, hint)) from exc
        raise
    finally:
        if hold >= 0:
            os.close(stdin)  # the child has its copy of the read end
    return Child(cmd, proc, err, hold)


PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = 1031  # Linux fcntl; Python 3.10+ names it fcntl.F_SETPIPE_SZ


def widen_pipes(child: Child, size: int = PIPE_SIZE) -> None:
    """Give the data pipes of ``child`` room for ``size`` bytes (Linux; 64 KiB by default): a
    stage of a long pipeline then hands over a whole chunk per write instead of waiting for its
    reader every 64 KiB. Where the kernel refuses (a user over its pipe-buffer quota), the pipe
    keeps its size: only speed depends on it."""
    for handle in (child.proc.stdin, child.proc.stdout):
        if handle is None:
            continue
        try:
            fcntl.fcntl(handle.fileno(), F_SETPIPE_SZ, size)
        except (OSError, ValueError):
            pass


def run(cmd: Command, stdin: bytes | None = None, timeout: float | None = None, check: bool = True) -> Result:
    """Run a command that produces little output; fail with its redacted stderr."""
    with start(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL) as child:
        try:
            out = child.proc.communicate(stdin, timeout=timeout)[0]
        except subprocess.TimeoutExpired as exc:
            raise StageError("%s did not finish within %s seconds" % (cmd.name, timeout)) from exc
        if check:
            child.check()
        return Result(t.cast(int, child.returncode), out, child.stderr())
