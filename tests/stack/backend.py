"""A stand-in for the CC-Lite backend: GET /health queries PostgreSQL, Redis and Qdrant."""

import json
import os
import subprocess
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PG_HOST = os.environ.get("PG_HOST", "cc-lite-postgres")
PG_DB = os.environ.get("PG_DB", "operator_demo")
REDIS_HOST = os.environ.get("REDIS_HOST", "cc-lite-redis")
QDRANT_URL = os.environ.get("QDRANT_URL", "http://cc-lite-qdrant:6333")
QDRANT_COLLECTION = os.environ.get("QDRANT_COLLECTION", "knowledge_base")


def _run(argv, env):
    """Run a client tool (secrets in its environment) and return its stripped stdout."""
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"exit status {done.returncode}")
    return done.stdout.strip()


def check_postgres():
    """Count the users and conversations."""
    out = _run(
        ["psql", "-XAt", "-h", PG_HOST, "-U", "postgres", "-d", PG_DB, "-v", "ON_ERROR_STOP=1",
         "-c", "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM conversations)"],
        {"PGPASSWORD": os.environ.get("POSTGRES_PASSWORD", ""), "PGCONNECT_TIMEOUT": "5"},
    )
    users, conversations = out.split()
    return {"users": int(users), "conversations": int(conversations)}


def check_redis():
    """PING and count the session keys."""
    env = {"REDISCLI_AUTH": os.environ.get("REDIS_PASSWORD", "")}
    if _run(["redis-cli", "-h", REDIS_HOST, "--no-auth-warning", "PING"], env) != "PONG":
        raise RuntimeError("no PONG")
    return {"keys": int(_run(["redis-cli", "-h", REDIS_HOST, "--no-auth-warning", "DBSIZE"], env))}


def check_qdrant():
    """Count the points of the knowledge-base collection."""
    req = urllib.request.Request(
        f"{QDRANT_URL}/collections/{QDRANT_COLLECTION}/points/count",
        data=json.dumps({"exact": True}).encode(),
        headers={"api-key": os.environ.get("QDRANT_API_KEY", ""), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return {"points": json.load(resp)["result"]["count"]}


class Handler(BaseHTTPRequestHandler):
    """Serves /health only."""

    def do_GET(self):  # noqa: N802 (the http.server name)
        if self.path != "/health":
            self.send_error(404)
            return
        report, ok = {}, True
        for name, check in (("postgres", check_postgres), ("redis", check_redis), ("qdrant", check_qdrant)):
            try:
                report[name] = {"status": "ok", **check()}
            except Exception as exc:  # pylint: disable=broad-except  # reported, per store
                ok = False
                report[name] = {"status": "error", "error": str(exc)[:300]}
        body = json.dumps({"status": "ok" if ok else "error", "checks": report}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet: one line per request would swamp `docker logs`."""


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
