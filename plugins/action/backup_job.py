# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup_job action: run a backup or restore module asynchronously and show its progress while it works.

A module run in the background is detached from the run on purpose, so it cannot see the run end
(issue 18.5). The action keeps a heartbeat for it, ``<progress_file>.alive`` (0600, see
``_core/_controller.Heartbeat``): made before the module starts, touched while the action polls,
removed when the job ends. The worker running the action survives a SIGKILL to ansible-playbook's
process group (it called setsid); it watches its parent, ansible-playbook, between polls and once
that ended it removes the heartbeat of every job it knows and stops: the module then publishes
nothing, kills its pipeline and ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.vars.clean import remove_internal_keys

from ansible_collections.cclite.backup.plugins.module_utils._core import _controller
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

display = Display()

# what async_status adds to the module's own result
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "erased", "_ansible_parsed")
# a poll is one shell round trip that waits on the host up to WAIT seconds for the module's
# output, looking every LOOK seconds: the task ends within LOOK of the module, at about one
# round trip per WAIT (no module process per poll)
WAIT = 0.5
LOOK = 0.05
ABSENT = "absent"  # what a status read prints when the job's folder is gone
RUNNING = "running"  # ... and while the module runs (its output not in place yet)
ALIVE = ".alive"  # the heartbeat beside a job's progress file
TOUCH_EVERY = 5.0  # seconds between touches of the heartbeats (the module allows 120 without one)
STEP = 0.1  # seconds between looks at ansible-playbook while waiting
KILLED = 137  # the exit status of a job that ``timeout -s KILL`` ended


class RunEnded(AnsibleActionFail):
    """The ansible-playbook process that started this task ended."""


ARGUMENT_SPEC: dict[str, t.Any] = {
    "module": {"type": "str"},
    "module_args": {"type": "dict", "default": {}},
    "progress_file": {"type": "str"},
    "mode": {"type": "str", "default": "run", "choices": ["run", "start", "wait", "ready", "fixed"]},
    "hold": {"type": "bool", "default": False},
    "release": {"type": "bool", "default": False},
    "job": {"type": "dict"},
    "jobs": {"type": "list", "elements": "dict", "default": []},
    "interval": {"type": "float", "default": 2.0},
    "quiet": {"type": "float", "default": 3.0},
    "timeout": {"type": "int", "default": 0},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    _controller = 0  # ansible-playbook: this worker's parent when the task began
    _touched = 0.0

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        self._controller = os.getppid()
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        _valid, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = task_vars.get("inventory_hostname", "?")
        try:
            mode = args["mode"]
            if mode in ("run", "start"):
                if not args["module"]:
                    raise AnsibleActionFail("module is required with mode %s: name the backup or restore module to run" % mode)
                job = self._start(args, task_vars)
                if mode == "start" or not job.get("ansible_job_id"):
                    return job if not job.get("ansible_job_id") else dict(result, changed=True, job=job)
                return self._wait(job, args, host)
            if mode == "wait":
                if not args["job"]:
                    raise AnsibleActionFail("job is required with mode wait: pass the result of a mode start task's job")
                return self._wait(args["job"], args, host)
            if mode == "ready":
                return self._until(args, "held")
            if args["release"]:
                holds = [shlex.quote(j["progress_file"] + ".hold") for j in args["jobs"] if j.get("progress_file")]
                if holds:
                    self._shell("rm -f " + " ".join(holds))
            return self._until(args, "point_fixed")
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    # starting ---------------------------------------------------------------------------------

    def _start(self, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        """Start the module; in check mode it runs at once (its prediction is quick)."""
        module_args = {k: v for k, v in args["module_args"].items() if v is not None}
        if args["progress_file"] and not self._task.check_mode:
            module_args["progress_file"] = args["progress_file"]
        if self._task.check_mode:
            return self._execute_module(module_name=args["module"], module_args=module_args, task_vars=task_vars)
        if args["progress_file"]:  # the heartbeat; with hold, the module holds before its fix until .hold is gone
            alive, hold = args["progress_file"] + ALIVE, args["progress_file"] + ".hold"
            self._shell("umask 077 && mkdir -p %s && printf '%%s' %s > %s%s" % (
                shlex.quote(os.path.dirname(alive)), shlex.quote(json.dumps(self._identity(), sort_keys=True)), shlex.quote(alive),
                " && : > " + shlex.quote(hold) if args["hold"] else ""))
            self._touched = time.monotonic()
        try:
            job = self._launch(args["module"], module_args, task_vars, args["timeout"])
        except Exception:
            if args["progress_file"]:
                self._shell("rm -f %s" % self._alive([args]))
            raise
        return dict(job, progress_file=args["progress_file"], started=time.time())

    def _launch(self, module: str, module_args: dict[str, t.Any], task_vars: dict[str, t.Any], timeout: int) -> dict[str, t.Any]:
        """Start the module detached from this connection, as ``async`` would, in one shell round trip.

        async_wrapper (what ``async`` runs) is a module itself: building and starting it costs
        about half a second per job before the module begins. Here the module's file goes to
        the task's remote temp dir and a background ``sh`` runs it, its output in a private
        folder that the user it runs as makes (with ``become`` to another user, that user could
        not write the temp dir): ``out``, renamed into place once the module ended, ``err`` and
        ``rc``. Both are the job's until :meth:`_wait` read the result and removed them.
        """
        if self._connection.always_pipeline_modules:
            raise AnsibleActionFail("backup_job runs its module as a file on a POSIX host; the %s connection cannot (Windows)"
                                    % self._connection.transport)
        folder = self._connection._shell.tmpdir or self._make_tmp_path()
        self._update_module_args(module, module_args, task_vars)
        built, local_path = self._configure_module(module_name=module, module_args=module_args, task_vars=task_vars)
        if built.module_style != "new" or not built.shebang:
            raise AnsibleActionFail("backup_job runs cclite.backup modules (new-style Python); %s is not one" % module)
        self._used_interpreter = built.shebang
        path = self._connection._shell.join_path(folder, "AnsiballZ_" + self._connection._shell.get_remote_filename(local_path))
        self._transfer_data(path, built.b_module_data)
        self._fixup_perms2([folder, path], self._get_remote_user())
        q = shlex.quote
        command = " ".join(filter(None, [self._compute_environment_string(), "timeout -s KILL %d" % timeout if timeout else "",
                                         built.shebang[2:].strip(), q(path)]))
        job = '%s > "$1/out.part" 2> "$1/err"; echo $? > "$1/rc"; mv "$1/out.part" "$1/out"' % command
        # nohup and no terminal: the job outlives this command, the SSH session or docker exec;
        # a shell's background job ignores SIGINT, and the worker's own session keeps a kill of
        # ansible-playbook's process group away from it (the heartbeat tells it the run ended)
        said = self._shell('d=$(mktemp -d "${TMPDIR:-/tmp}/cclite-job.XXXXXX") && echo "$d" && '
                           '( nohup /bin/sh -c %s cclite-job "$d" < /dev/null > /dev/null 2>&1 & )' % q(job))
        self._connection._shell.tmpdir = None  # the job's from now on: removed by _wait, not by this task
        return {"ansible_job_id": "j%d" % secrets.randbelow(10**12), "results_file": said.strip().splitlines()[-1] + "/out",
                "profile": built.serialization_profile, "tmpdir": folder if self._should_remove_tmp_path(folder) else "",
                "timeout": timeout, "module": module}

    # polling ----------------------------------------------------------------------------------

    def _status(self, job: t.Mapping[str, t.Any], wait: float = 0.0) -> dict[str, t.Any]:
        """The job's status as ansible.legacy.async_status gives it, in one shell round trip while it
        runs (no module process per poll): its ``out`` appears whole once the module ended; the
        host waits up to ``wait`` seconds for it."""
        jid, path = job["ansible_job_id"], job["results_file"]
        q = shlex.quote
        folder = q(os.path.dirname(path))
        looks = "i=0; while [ ! -e %s ] && [ -d %s ] && [ $i -lt %d ]; do sleep %s; i=$((i+1)); done; " % (
            q(path), folder, int(wait / LOOK), LOOK) if wait > 0 else ""
        read = self._low_level_execute_command("%scat %s 2>/dev/null || { test -d %s && echo %s || echo %s; }"
                                               % (looks, q(path), folder, RUNNING, ABSENT))
        text = (read.get("stdout") or "").strip()
        if read.get("rc") != 0:
            return {"failed": True, "msg": "could not read the job's status: %s" % (read.get("stderr") or text), "ansible_job_id": jid}
        if text == ABSENT:
            return {"failed": True, "msg": "could not find job", "ansible_job_id": jid, "started": True, "finished": True}
        if text == RUNNING:
            return {"ansible_job_id": jid, "results_file": path, "started": True, "finished": False}
        # the module's result, parsed as _execute_module parses a module's output
        returned: dict[str, t.Any] = {"stdout": text}
        if not text.startswith("{"):  # no result: what it said on stderr, and its exit status, tell why
            folder = os.path.dirname(path)
            said = self._low_level_execute_command("cat %s 2>/dev/null || echo; tail -c 20000 %s" % (q(folder + "/rc"), q(folder + "/err")))
            rc, _sep, err = (said.get("stdout") or "").partition("\n")
            returned.update(rc=int(rc) if rc.strip().lstrip("-").isdigit() else None, stderr=err)
            if job.get("timeout") and returned["rc"] == KILLED:  # timeout -s KILL: 128 + 9
                return {"failed": True, "finished": True, "ansible_job_id": jid, "rc": KILLED, "stderr": err,
                        "msg": "%s ran longer than the job's timeout of %d s and was killed: it published nothing (the "
                               "module removes its temp files at its next start); give it more time (timeout), or 0 "
                               "for no limit" % (job.get("module") or "the module", job["timeout"])}
        data = self._parse_returned_data(returned, job.get("profile") or "legacy")
        data.pop("_ansible_suppress_tmpdir_delete", None)
        remove_internal_keys(data)
        for key in ("stdout", "stderr"):
            if key in data and key + "_lines" not in data:
                data[key + "_lines"] = (data.get(key) or "").splitlines()
        if self._discovered_interpreter_key:
            data.setdefault("ansible_facts", {})[self._discovered_interpreter_key] = self._discovered_interpreter
        return dict(data, ansible_job_id=jid, finished=True)

    def _progress(self, job: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
        """The module's status file, or None (not written yet, or gone: the module ended)."""
        return self._statuses([job])[0] if job.get("progress_file") else None

    # the heartbeat ----------------------------------------------------------------------------

    @staticmethod
    def _alive(jobs: t.Iterable[t.Mapping[str, t.Any]]) -> str:
        return " ".join(shlex.quote(j["progress_file"] + ALIVE) for j in jobs if j.get("progress_file"))

    def _identity(self) -> dict[str, t.Any]:
        """What the heartbeat says of ansible-playbook: a module on this machine watches it itself."""
        found = _controller.proc_stat(self._controller)
        return dict(_controller.machine(), pid=self._controller, started=found.started) if found is not None else {}

    def _run_ended(self) -> bool:
        """Whether ansible-playbook ended: this worker was reparented, or its parent is a zombie."""
        if os.getppid() != self._controller:
            return True
        found = _controller.proc_stat(self._controller)
        return found is not None and found.state in ("Z", "X")  # None: no /proc (not Linux), the parent check alone

    def _beat(self, jobs: t.Sequence[t.Mapping[str, t.Any]], pause: float = 0.0) -> None:
        """Touch the jobs' heartbeats (every ``TOUCH_EVERY`` s), then sleep ``pause`` seconds
        watching ansible-playbook; once it ended, remove the heartbeats and stop."""
        alive = self._alive(jobs)
        if alive and time.monotonic() - self._touched >= TOUCH_EVERY:
            self._shell("touch -c " + alive)  # -c: a heartbeat removed stays removed
            self._touched = time.monotonic()
        until = time.monotonic() + pause
        while True:
            if self._run_ended():
                if alive:
                    self._low_level_execute_command("rm -f " + alive)
                raise RunEnded("the ansible-playbook run that started this task ended: its background jobs were told to stop "
                               "(they publish nothing and end)")
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(STEP, left))

    def _wait(self, job: t.Mapping[str, t.Any], args: dict[str, t.Any], host: str) -> dict[str, t.Any]:
        """Poll until the module ends, a progress line every ``interval`` once it ran ``quiet``
        seconds; return the module's own result."""
        started = float(job.get("started") or time.time())
        shown = 0
        line_due = started + args["quiet"]
        kept = [job] + [j for j in args["jobs"] if j.get("ansible_job_id") != job.get("ansible_job_id")]  # a consistent set's
        while True:
            self._beat(kept)
            status = self._status(job, min(WAIT, max(LOOK, line_due - time.time())))
            if status.get("finished") or status.get("failed"):  # failed unfinished: the job file is gone
                break
            if time.time() >= line_due:
                line_due = time.time() + args["interval"]
                progress = self._progress(job)
                if progress is not None:
                    display.display(_report.progress_line(host, progress))
                    shown += 1
        # the job's output folder, its heartbeat, the status file a killed module could not remove,
        # and the temp dir with the module's file (made as the connection's user: removed as it)
        gone = [shlex.quote(os.path.dirname(job["results_file"]))] + ([self._alive([job])] if job.get("progress_file") else [])
        gone += [shlex.quote(job["progress_file"])] if job.get("progress_file") and status.get("failed") else []
        tmpdir = [shlex.quote(job["tmpdir"])] if job.get("tmpdir") else []
        self._shell("rm -rf %s" % " ".join(gone + (tmpdir if not self._connection.become else [])))
        if tmpdir and self._connection.become:
            self._low_level_execute_command("rm -rf %s" % tmpdir[0], sudoable=False)
        out = {k: v for k, v in status.items() if k not in ASYNC_KEYS}
        for key in ("stdout", "stderr"):
            if not out.get(key):
                out.pop(key, None)
                out.pop(key + "_lines", None)
        out["progress_lines"] = shown
        return out

    def _shell(self, command: str) -> str:
        """One command on the host, no module: the fast path of a consistent set's pause."""
        done = self._low_level_execute_command(command)
        if done.get("rc") != 0:
            raise AnsibleActionFail("%s failed: %s" % (command.split()[0], done.get("stderr") or done.get("stdout")))
        return done.get("stdout") or ""

    def _statuses(self, jobs: t.Sequence[t.Mapping[str, t.Any]]) -> list[dict[str, t.Any] | None]:
        """Every job's status file in one round trip (None: absent, or caught mid-rename)."""
        # no trailing ";": the connection appends its own "&& ..." to the command
        script = "; ".join("cat %s 2>/dev/null; echo" % shlex.quote(j.get("progress_file") or "/nonexistent") for j in jobs)
        lines = self._shell(script).split("\n")
        out: list[dict[str, t.Any] | None] = []
        for index in range(len(jobs)):
            try:
                out.append(json.loads(lines[index]) if index < len(lines) and lines[index].strip() else None)
            except ValueError:
                out.append(None)
        return out

    def _until(self, args: dict[str, t.Any], flag: str) -> dict[str, t.Any]:
        """Wait until every job's status file says ``flag`` (held: ready for the pause;
        point_fixed: its point in time is fixed) or the job ended; say when each did."""
        pending = {j["ansible_job_id"]: j for j in args["jobs"] if j.get("ansible_job_id")}
        points: dict[str, t.Any] = {}
        ended: list[str] = []
        polls = 0
        began = time.monotonic()
        while pending and not (args["timeout"] and time.monotonic() - began > args["timeout"]):
            self._beat(args["jobs"])
            jobs = list(pending.values())
            for job, progress in zip(jobs, self._statuses(jobs)):
                jid = job["ansible_job_id"]
                if progress is not None and progress.get(flag):
                    points[jid] = {"store": progress.get("store"), "target": progress.get("target"), "at": progress.get("point_fixed_at")}
                    del pending[jid]
                elif progress is None and polls % 10 == 9 and self._status(job).get("finished"):
                    ended.append(jid)  # it ended (or failed) before saying so: its own wait reports how
                    del pending[jid]
            if pending:
                time.sleep(0.02)
                polls += 1
        return {"changed": False, "points": points, "ended": ended, "waiting": sorted(pending), "all_fixed": not ended and not pending,
                "seconds": round(time.monotonic() - began, 3)}
