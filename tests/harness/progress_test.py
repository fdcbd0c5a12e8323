"""Progress of long backups and restores, on the guide's stack: lines while each store works, the same results.

`make progress` (in `make test`): starts the guide's stack (stack-up.sh, its own folder), fills
the three stores with enough incompressible data that each backup and restore runs for seconds,
then runs examples/workstation's backup.yml and restore.yml as an operator types them, watching
the status files meanwhile. It asserts on what was shown and written:

- progress lines for every store, backup and restore: bytes that grow, the expected size (a
  first backup's estimate; none for Qdrant, which cannot tell);
- every status file seen was 0600 in a 0700 folder, held none of the stack's secrets, and is gone;
- the summary is unchanged (every store OK), a restore's own size is the data it loaded;
- a failing backup still fails with its message, and leaves no status file;
- backup_consistent_set=true (issue 14): the backend is paused (docker's own pause and
  unpause events) around the moment every store fixed its point (the status files' times), is
  unpaused afterwards, also when a store's backup fails, and the pause is in the run's table.

It runs its own stack (CCLITE_STACK=cclite-progress: containers cclite-progress-postgres ...,
ports 16337 and 18000, its own network and label), so it needs no lock beside other tests.
"""

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.environ.get("CCLITE_PROGRESS_ROOT", "/tmp/cclite-progress")
STACK = os.environ.get("CCLITE_PROGRESS_STACK", "cclite-progress")
QDRANT_PORT = os.environ.get("CCLITE_PROGRESS_QDRANT_PORT", "16337")
ENV = dict(os.environ, CCLITE_DEMO_ROOT=WORK, CCLITE_STACK=STACK, CCLITE_DEMO_QDRANT_PORT=QDRANT_PORT,
           CCLITE_DEMO_BACKEND_PORT=os.environ.get("CCLITE_PROGRESS_BACKEND_PORT", "18000"))
PG, REDIS, BACKEND = STACK + "-postgres", STACK + "-redis", STACK + "-backend"
PARTS = os.environ.get("CCLITE_PROGRESS_PARTS", "progress,consistent").split(",")  # to run one part while working on it
BACKUPS = os.path.join(WORK, "backups")
STATUS_DIR = os.path.join(BACKUPS, ".progress")
PG_ROWS = int(os.environ.get("CCLITE_PROGRESS_PG_ROWS", "1200000"))
REDIS_KEYS = int(os.environ.get("CCLITE_PROGRESS_REDIS_KEYS", "250000"))
POINTS = int(os.environ.get("CCLITE_PROGRESS_POINTS", "6000"))
LINE = re.compile(r"^\[localhost\] (?P<store>postgresql|redis|qdrant) (?P<action>backup|restore)[^:]*: (?P<phase>[a-z ]+) "
                  r"(?P<done>[\d.]+ (?:B|KiB|MiB|GiB))(?: of ~(?P<expected>[\d.]+ (?:B|KiB|MiB|GiB)) \(\d+%\))?")
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def say(text):
    print("progress-test: " + text, flush=True)


def fail(text):
    sys.exit("progress-test: FAILED: " + text)


def run(argv, stdin=None, check=True, **kwargs):
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, env=kwargs.pop("env", ENV), **kwargs)
    if check and done.returncode != 0:
        fail("%s exited %d: %s" % (" ".join(argv[:4]), done.returncode, (done.stderr or done.stdout)[-2000:]))
    return done


def stack_secrets():
    values = {}
    with open(os.path.join(WORK, "stack.env"), encoding="utf-8") as handle:
        for line in handle:
            key, value = line.strip().split("=", 1)
            values[key] = value
    return values


def fill(keys):
    """Incompressible data, so the stores take seconds (sizes: CCLITE_PROGRESS_*)."""
    sql = ("CREATE TABLE big AS SELECT g AS id, md5(random()::text) || md5(random()::text) || md5(random()::text) AS a "
           "FROM generate_series(1, %d) g;" % PG_ROWS)
    run(["docker", "exec", "-i", PG, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
         "-d", "operator_demo"], sql)
    lines = "".join("SET blob:%06d %s EX %d\n" % (i, secrets.token_hex(200), 7200 + i) for i in range(REDIS_KEYS))
    run(["docker", "exec", "-i", REDIS, "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --no-auth-warning --pipe'], lines)
    import urllib.request  # pylint: disable=import-outside-toplevel

    def qdrant(method, path, body):
        req = urllib.request.Request("http://127.0.0.1:%s%s" % (QDRANT_PORT, path), method=method,
                                     data=json.dumps(body).encode(), headers={"api-key": keys["QDRANT_API_KEY"], "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)

    qdrant("PUT", "/collections/big", {"vectors": {"size": 256, "distance": "Cosine"}})
    rnd = secrets.SystemRandom()
    for start in range(0, POINTS, 1000):
        points = [{"id": i + 1, "vector": [rnd.random() for _dim in range(256)], "payload": {"text": secrets.token_hex(64)}}
                  for i in range(start, min(start + 1000, POINTS))]
        qdrant("PUT", "/collections/big/points?wait=true", {"points": points})


class Watcher(threading.Thread):
    """Copies every status file it sees, with its mode and its folder's mode."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if os.path.isdir(STATUS_DIR):
                for name in os.listdir(STATUS_DIR):
                    path = os.path.join(STATUS_DIR, name)
                    try:
                        with open(path, encoding="utf-8") as handle:
                            text = handle.read()
                        self.seen.append({"name": name, "text": text, "mode": stat.S_IMODE(os.stat(path).st_mode),
                                          "dir_mode": stat.S_IMODE(os.stat(STATUS_DIR).st_mode)})
                    except OSError:
                        pass  # renamed or removed meanwhile
            self.stop.wait(0.1)


def playbook(name, *extra, expect_ok=True):
    varfile = os.path.join(WORK, "vars.yml")
    argv = ["ansible-playbook", name + ".yml", "-e", "@" + varfile, "-e", "backup_progress_quiet=0.5", "-e", "backup_progress_interval=0.5"] + list(extra)
    env = dict(ENV, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_DISPLAY_SKIPPED_HOSTS="false", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="false",
               PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    started = time.monotonic()
    done = subprocess.run(argv, cwd=os.path.join(ROOT, "examples", "workstation"), capture_output=True, text=True, env=env, check=False)
    with open(os.path.join(WORK, name + ".out"), "a", encoding="utf-8") as handle:
        handle.write(done.stdout + done.stderr)
    say("ansible-playbook %s.yml %s: exit %d in %.0fs" % (name, " ".join(extra), done.returncode, time.monotonic() - started))
    if expect_ok and done.returncode != 0:
        fail("%s.yml failed:\n%s" % (name, done.stdout[-4000:]))
    return done


def size(text):
    number, unit = text.split()
    return float(number) * UNITS[unit]


def check_lines(output, action, unknown=()):
    """Lines per store: bytes growing within a phase, the expected size given (except for the
    stores in ``unknown``: a first Qdrant backup has no earlier size and no estimate)."""
    found = {}
    for line in output.splitlines():
        match = LINE.match(line)
        if match and match["action"] == action:
            found.setdefault(match["store"], []).append(match)
    for store in ("postgresql", "redis", "qdrant"):
        lines = found.get(store, [])
        if len(lines) < 2:
            fail("%s %s showed %d progress line(s), expected several:\n%s" % (store, action, len(lines), output[-3000:]))
        grew = False
        for before, after in zip(lines, lines[1:]):
            if before["phase"] == after["phase"]:
                if size(after["done"]) < size(before["done"]):
                    fail("%s %s: bytes went down: %r then %r" % (store, action, before.group(0), after.group(0)))
                grew = grew or size(after["done"]) > size(before["done"])
        if not grew:
            fail("%s %s: the bytes never grew: %s" % (store, action, [m.group(0) for m in lines]))
        if store not in unknown and not any(m["expected"] for m in lines):
            fail("%s %s: no line gave the expected size: %s" % (store, action, [m.group(0) for m in lines]))
        say("%s %s: %d lines, e.g. %s" % (store, action, len(lines), lines[len(lines) // 2].group(0)))


def newest_report(kind):
    logs = os.path.join(BACKUPS, "logs")
    names = sorted(n for n in os.listdir(logs) if n.startswith(kind + "_") and n.endswith(".json"))
    with open(os.path.join(logs, names[-1]), encoding="utf-8") as handle:
        return json.load(handle)


def records(report):
    found = report.get("results")
    if not found:
        fail("no records in the run report: %s" % json.dumps(report)[:1000])
    return found


def pause_events(since):
    """(pause times, unpause times) of the backend since ``since`` (epoch seconds), from docker."""
    done = run(["docker", "events", "--since", "%.3f" % since, "--until", "%.3f" % time.time(), "--filter", "container=" + BACKEND,
                "--filter", "event=pause", "--filter", "event=unpause", "--format", "{{.Action}} {{.TimeNano}}"])
    events = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return [int(t) / 1e9 for a, t in events if a == "pause"], [int(t) / 1e9 for a, t in events if a == "unpause"]


def paused_now():
    return run(["docker", "inspect", "-f", "{{.State.Paused}} {{.State.Running}}", BACKEND]).stdout.split() == ["true", "true"]


def consistent_set(watcher):
    since = time.time()
    first = len(watcher.seen)
    done = playbook("backup", "-e", "backup_consistent_set=true")
    pauses, unpauses = pause_events(since)
    if len(pauses) != 1 or len(unpauses) != 1 or not pauses[0] < unpauses[0] or paused_now():
        fail("the backend should have been paused once, then unpaused: pauses %s, unpauses %s, paused now: %s" % (pauses, unpauses, paused_now()))
    fixed = {}
    for copy in watcher.seen[first:]:
        if copy["name"].endswith((".hold", ".alive", ".tmp")):
            continue  # the empty file a held backup waits on; the action's heartbeat; a status file's temp copy, maybe mid-write
        try:
            status = json.loads(copy["text"])
        except ValueError:
            fail("the status file %s held no JSON: %r" % (copy["name"], copy["text"][:200]))
        if status.get("point_fixed") and status.get("action") == "backup":
            fixed[status["store"]] = status["point_fixed_at"]
    if sorted(fixed) != ["postgresql", "qdrant", "redis"]:
        fail("the status files should show every store's point fixed; seen: %s" % fixed)
    for store, at in fixed.items():
        if not pauses[0] <= at <= unpauses[0]:
            fail("%s fixed its point at %.3f, outside the pause %.3f..%.3f" % (store, at, pauses[0], unpauses[0]))
    row = [r for r in records(newest_report("backup")) if r.get("action") == "pause"]
    if len(row) != 1 or row[0].get("status") != "ok" or not isinstance(row[0].get("duration"), float):
        fail("the run's table should have the pause: %s" % row)
    if not all(r.get("status") == "ok" for r in records(newest_report("backup"))):
        fail("a consistent set's backups should all be OK: %s" % records(newest_report("backup")))
    say("consistent set: the backend paused %.2fs by docker's events (reported %.2fs: %s); points fixed %s after the pause began"
        % (unpauses[0] - pauses[0], row[0]["duration"], row[0]["message"],
           ", ".join("%s +%.2fs" % (k, v - pauses[0]) for k, v in sorted(fixed.items()))))
    del done
    since = time.time()
    bad = playbook("backup", "-e", "backup_consistent_set=true", "-e", "vault_redis_password=not-the-password", expect_ok=False)
    pauses, unpauses = pause_events(since)
    if bad.returncode == 0 or len(pauses) != 1 or len(unpauses) != 1 or paused_now():
        fail("with a failing store, the backend should still be paused once and unpaused: exit %d, pauses %s, unpauses %s"
             % (bad.returncode, pauses, unpauses))
    failed = [r for r in records(newest_report("backup")) if r.get("status") == "failed"]
    if [r.get("store") for r in failed] != ["redis"] or not re.search("WRONGPASS|NOAUTH|invalid|auth", failed[0].get("error", ""), re.I):
        fail("only redis should fail, with its message: %s" % failed)
    say("consistent set with a failing store: unpaused after %.2fs, redis failed with: %s" % (unpauses[0] - pauses[0], failed[0]["error"][:120]))


def main():
    try:
        test()
    finally:
        run([os.path.join(ROOT, "tests", "harness", "demo-clean.sh"), "--quiet"], check=False)


def test():
    started = time.monotonic()
    run([os.path.join(ROOT, "tests", "harness", "stack-up.sh")])
    keys = stack_secrets()
    with open(os.path.join(WORK, "vars.yml"), "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump({"backup_root": BACKUPS, "backup_metrics_dir": "", "qdrant_backup_url": "http://127.0.0.1:%s" % QDRANT_PORT,
                   "postgresql_backup_container": PG, "redis_backup_container": REDIS, "backup_app_containers": [BACKEND],
                   "vault_postgresql_password": keys["POSTGRES_PASSWORD"], "vault_redis_password": keys["REDIS_PASSWORD"],
                   "vault_qdrant_api_key": keys["QDRANT_API_KEY"]}, handle)
    fill(keys)
    say("stack up and filled in %.0fs" % (time.monotonic() - started))
    watcher = Watcher()
    watcher.start()
    try:
        if "progress" in PARTS:
            backup = playbook("backup")
            check_lines(backup.stdout, "backup", unknown=("qdrant",))
            for record in records(newest_report("backup")):
                if record.get("status") != "ok":
                    fail("backup of %s: %s" % (record.get("store"), record))
            restore = playbook("restore", "-e", "restore_confirm=true")
            check_lines(restore.stdout, "restore")
            for record in records(newest_report("restore")):
                if record.get("status") != "ok":
                    fail("restore of %s: %s" % (record.get("store"), record))
            pg = [r for r in records(newest_report("restore")) if r.get("store") == "postgresql"][0]
            artifact = os.path.getsize(pg["artifact"])
            if not pg.get("size") or pg["size"] <= artifact:
                fail("the restore's size should be the data loaded (more than the %d-byte file): %s" % (artifact, pg))
            say("postgresql restore: %d bytes loaded from a %d-byte file in %.1fs" % (pg["size"], artifact, pg["duration"]))
            bad = playbook("backup", "-e", '{"backup_stores": ["redis"]}', "-e", "vault_redis_password=not-the-password", expect_ok=False)
            if bad.returncode == 0 or not re.search(r"redis \| backup .*FAILED.*(WRONGPASS|NOAUTH|invalid|auth)", bad.stdout + bad.stderr, re.I | re.S):
                fail("a backup with a wrong password should fail naming the cause:\n%s" % (bad.stdout + bad.stderr)[-3000:])
            say("a failing backup still fails with its message")
        if "consistent" in PARTS:
            consistent_set(watcher)
    finally:
        watcher.stop.set()
        watcher.join()
    if not watcher.seen:
        fail("no status file was ever seen in %s" % STATUS_DIR)
    for copy in watcher.seen:
        if copy["mode"] != 0o600 or copy["dir_mode"] != 0o700:
            fail("%s was mode %o in a folder of mode %o" % (copy["name"], copy["mode"], copy["dir_mode"]))
        for name, value in keys.items():
            if value in copy["text"]:
                fail("%s held %s" % (copy["name"], name))
    left = os.listdir(STATUS_DIR)
    if left:
        fail("status files left behind: %s" % left)
    say("%d status file copies: all 0600 in a 0700 folder, no secret in any, none left behind" % len(watcher.seen))
    say("passed in %.0fs" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
