"""The demo's sample data: seed, snapshot, lose and compare it in the cc-lite-* containers."""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

# The guide's containers, or those of a test's own stack (CCLITE_STACK=NAME, as stack-up.sh).
STACK = os.environ.get("CCLITE_STACK", "cc-lite")
PG = f"{STACK}-postgres"
REDIS = f"{STACK}-redis"
DB = "operator_demo"
COLLECTION = "knowledge_base"
USERS, CONVERSATIONS, SESSIONS, POINTS, DIM = 500, 5000, 300, 200, 8

# Every key with its TTL and a digest of its value, in one round trip.
REDIS_SNAPSHOT_LUA = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k).ok
  local v
  if t == 'hash' then
    local h = redis.call('HGETALL', k)
    local pairs_ = {}
    for i = 1, #h, 2 do pairs_[#pairs_ + 1] = h[i] .. '=' .. h[i + 1] end
    table.sort(pairs_)
    v = table.concat(pairs_, '&')
  elseif t == 'string' then
    v = redis.call('GET', k)
  else
    v = t
  end
  out[#out + 1] = k .. ' ' .. redis.call('TTL', k) .. ' ' .. redis.sha1hex(t .. ':' .. v)
end
return out
"""


def _run(argv, stdin=""):
    """Run a docker command; its stdout, or exit naming the command and its error."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"demo_data: {' '.join(argv[:4])} ... failed: {done.stderr.strip()}")
    return done.stdout


def psql(sql):
    """Run SQL in the container as postgres (peer authentication, no password)."""
    return _run(["docker", "exec", "-i", PG, "runuser", "-u", "postgres", "--",
                 "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", DB], sql).strip()


def redis(commands):
    """Run redis-cli commands (one a line) in the container; the password stays in its environment."""
    return _run(["docker", "exec", "-i", REDIS, "sh", "-c",
                 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --no-auth-warning'], commands)


def qdrant(method, path, body=None):
    """Call the Qdrant API published on the host, with the key from CCLITE_DEMO_QDRANT_KEY."""
    req = urllib.request.Request(
        os.environ["CCLITE_DEMO_QDRANT_URL"] + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"api-key": os.environ["CCLITE_DEMO_QDRANT_KEY"], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        sys.exit(f"demo_data: Qdrant {method} {path}: {exc.code} {exc.read()[:200]!r}")


def seed():
    """Users and conversations, sessions with TTLs, a knowledge-base collection."""
    psql(f"""
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, created timestamptz DEFAULT now());
CREATE TABLE conversations (id serial PRIMARY KEY, user_id int REFERENCES users(id), summary text);
INSERT INTO users (email) SELECT 'agent' || g || '@example.com' FROM generate_series(1, {USERS}) g;
INSERT INTO conversations (user_id, summary)
  SELECT 1 + g % {USERS}, 'conversation ' || g || ': ' || md5(g::text) FROM generate_series(1, {CONVERSATIONS}) g;
""")
    lines = []
    for i in range(1, SESSIONS + 1):
        lines.append(f"HSET session:{i:04d} user_id {1 + i % USERS} channel web started 2026-12-0{1 + i % 6}")
        lines.append(f"EXPIRE session:{i:04d} {3600 + i * 60}")
    for i in range(1, 21):
        lines.append(f"SET presence:agent{i} online EX {600 + i}")
    lines.append("SET config:feature_flags '{\"kb_search\": true}'")
    redis("\n".join(lines) + "\n")
    qdrant("PUT", f"/collections/{COLLECTION}", {"vectors": {"size": DIM, "distance": "Cosine"}})
    points = [{"id": i, "vector": [((i * (j + 3)) % 17) / 17.0 + 0.01 for j in range(DIM)],
               "payload": {"title": f"Article {i}", "section": ["billing", "setup", "faq"][i % 3]}}
              for i in range(1, POINTS + 1)]
    qdrant("PUT", f"/collections/{COLLECTION}/points?wait=true", {"points": points})


def snapshot():
    """What the data is now: counts and digests per store, and every Redis key's TTL."""
    users, conversations, digest = psql(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM conversations),"
        " md5((SELECT string_agg(id || email, ',' ORDER BY id) FROM users) ||"
        " (SELECT string_agg(id || ':' || user_id || summary, ',' ORDER BY id) FROM conversations))").split("|")
    keys = {}
    for line in redis(f"EVAL \"{REDIS_SNAPSHOT_LUA.strip()}\" 0\n".replace("\n", " ").rstrip() + "\n").splitlines():
        key, ttl, sha = line.split(" ")
        keys[key] = {"ttl": int(ttl), "sha1": sha}
    points = []
    found = qdrant("POST", f"/collections/{COLLECTION}/points/scroll",
                   {"limit": 10000, "with_payload": True, "with_vector": True})
    for p in (found or {"result": {"points": []}})["result"]["points"]:
        points.append([p["id"], p["payload"], [round(x, 5) for x in p["vector"]]])
    points.sort(key=lambda p: p[0])
    return {
        "postgresql": {"users": int(users), "conversations": int(conversations), "digest": digest},
        "redis": {"keys": len(keys), "with_ttl": sum(1 for k in keys.values() if k["ttl"] > 0), "by_key": keys},
        "qdrant": {"points": len(points),
                   "digest": hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()[:32]},
    }


def lose():
    """The disaster: tables dropped, Redis flushed, the collection deleted."""
    psql("DROP TABLE conversations; DROP TABLE users;")
    redis("FLUSHALL\n")
    qdrant("DELETE", f"/collections/{COLLECTION}")


def show(snap):
    """One line per store."""
    pg, rd, qd = snap["postgresql"], snap["redis"], snap["qdrant"]
    print(f"  PostgreSQL {DB}: {pg['users']} users, {pg['conversations']} conversations, digest {pg['digest']}")
    print(f"  Redis: {rd['keys']} keys, {rd['with_ttl']} with a TTL")
    print(f"  Qdrant {COLLECTION}: {qd['points']} points, digest {qd['digest']}")


def compare(before, after, elapsed):
    """Problems between two snapshots; a restored TTL may be lower by the time passed, never higher."""
    problems = []
    for store in ("postgresql", "qdrant"):
        if before[store] != after[store]:
            problems.append(f"{store}: {before[store]} before, {after[store]} now")
    b, a = before["redis"]["by_key"], after["redis"]["by_key"]
    if set(b) != set(a):
        problems.append(f"redis: keys missing {sorted(set(b) - set(a))[:5]}, extra {sorted(set(a) - set(b))[:5]}")
    for key in sorted(set(b) & set(a)):
        if b[key]["sha1"] != a[key]["sha1"]:
            problems.append(f"redis: {key} has another value")
        tb, ta = b[key]["ttl"], a[key]["ttl"]
        if (tb == -1) != (ta == -1) or (tb > 0 and not tb - elapsed - 2 <= ta <= tb):
            problems.append(f"redis: {key} TTL {ta}s now, {tb}s before ({elapsed}s ago)")
    return problems


def main():
    """seed | snapshot FILE | lose | check FILE SECONDS_SINCE."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["seed", "snapshot", "lose", "check"])
    parser.add_argument("file", nargs="?")
    parser.add_argument("elapsed", nargs="?", type=int, default=0)
    args = parser.parse_args()
    if args.action == "seed":
        seed()
    elif args.action == "lose":
        lose()
        print(f"  PostgreSQL {DB}: tables users and conversations dropped")
        print("  Redis: FLUSHALL")
        print(f"  Qdrant: collection {COLLECTION} deleted")
        return
    snap = snapshot()
    show(snap)
    if args.action == "snapshot":
        with open(args.file, "w", encoding="utf-8") as fh:
            json.dump(snap, fh)
    if args.action == "check":
        with open(args.file, encoding="utf-8") as fh:
            problems = compare(json.load(fh), snap, args.elapsed)
        for p in problems[:10]:
            print(f"  MISMATCH {p}")
        if problems:
            sys.exit(f"demo_data: the data did not come back ({len(problems)} problems)")
        print("  Every row, key (with its TTL) and point is back as it was before the disaster.")


if __name__ == "__main__":
    main()
