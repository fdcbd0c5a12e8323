# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL's archive_command and restore_command for cclite.backup point-in-time recovery.

Installed by the role as ``<wal_dir>/.cclite-wal.py`` next to its settings
``<wal_dir>/.cclite-wal.json`` (0600, owned by the server's OS user; S3 keys live there and
nowhere else). Runs wherever the server runs (on the host, or inside the container, which mounts
``<wal_dir>`` at the same path), so it needs only Python 3's standard library: S3 is spoken with
signature version 4 over ``urllib`` (path-style URLs), keys ``<prefix>/postgresql_wal/<segment>.gz``
with the raw segment's sha256 as metadata.

``archive %p %f``: gzip the segment, write ``<f>.gz`` and its raw sha256 ``<f>.sha256``, each
through a temp file, fsync and rename, then copy both to S3 when configured. Exit 0 only when
every copy is stored; PostgreSQL then marks the segment archived, otherwise it keeps it and
retries. A segment already there with the same content is success; with other content an error.

``restore %f %p``: the segment from the local archive, or from S3 when it is not there, checked
against its sha256 and written through a temp file. Exit 1 when it exists nowhere (the end of
the archive, which recovery expects).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import hmac
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CHUNK = 1 << 20


class Failed(Exception):
    """A step failed: the message goes to the server's log, never a secret in it."""


def settings(path: str | None = None) -> dict:
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cclite-wal.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise Failed("cannot read the settings %s: %s" % (path, exc)) from exc


def sha256_of(path: str, opener=open) -> str:
    digest = hashlib.sha256()
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(dest: str, fill) -> None:
    """``fill(handle)`` writes the content; it appears under ``dest`` only whole and synced."""
    directory = os.path.dirname(dest)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(dest), suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.rename(tmp, dest)
        fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def gzip_into(source: str, level: int):
    def fill(handle) -> None:
        with open(source, "rb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=handle, mtime=0) as out:
            for chunk in iter(lambda: raw.read(CHUNK), b""):
                out.write(chunk)
    return fill


# --- S3, signature version 4 --------------------------------------------------------------

class S3:
    """The few S3 calls the WAL archive needs: put, head, get one object."""

    def __init__(self, conf: dict) -> None:
        self.bucket = conf["bucket"]
        self.prefix = conf.get("prefix", "").strip("/")
        self.region = conf.get("region") or "us-east-1"
        self.endpoint = (conf.get("endpoint_url") or "https://s3.%s.amazonaws.com" % self.region).rstrip("/")
        self.access_key = conf.get("access_key") or ""
        self.secret_key = conf.get("secret_key") or ""
        self.token = conf.get("session_token") or ""
        self.timeout = float(conf.get("timeout", 30))

    def key(self, name: str) -> str:
        return "/".join(p for p in (self.prefix, "postgresql_wal", name) if p)

    def _request(self, method: str, key: str, body: bytes = b"", headers: dict | None = None):
        url = urllib.parse.urlsplit(self.endpoint)
        path = "/%s/%s" % (self.bucket, urllib.parse.quote(key, safe="/-_.~"))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        hdrs = {"host": url.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
        if self.token:
            hdrs["x-amz-security-token"] = self.token
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        signed = ";".join(sorted(hdrs))
        canonical = "\n".join([method, (url.path.rstrip("/") + path), "",
                               "".join("%s:%s\n" % (k, str(hdrs[k]).strip()) for k in sorted(hdrs)), signed, payload])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            self.access_key, scope, signed, signature)
        del hdrs["host"]
        req = urllib.request.Request(self.endpoint + path, data=body if method == "PUT" else None, method=method, headers=hdrs)
        return urllib.request.urlopen(req, timeout=self.timeout)  # nosec: the endpoint is the operator's

    def head(self, name: str) -> dict | None:
        try:
            with self._request("HEAD", self.key(name)) as resp:
                return {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise Failed("S3 HEAD %s failed: HTTP %s" % (self.key(name), exc.code)) from exc
        except (OSError, ValueError) as exc:
            raise Failed("S3 is unreachable (%s): %s" % (self.endpoint, exc)) from exc

    def put(self, name: str, path: str, sha256: str) -> None:
        with open(path, "rb") as handle:
            body = handle.read()  # one segment: 16 MB at most before compression
        try:
            headers = {"x-amz-meta-sha256": sha256, "content-type": "application/octet-stream"}
            with self._request("PUT", self.key(name), body, headers) as resp:
                etag = resp.headers.get("ETag", "").strip('"')
        except urllib.error.HTTPError as exc:
            raise Failed("S3 PUT %s failed: HTTP %s" % (self.key(name), exc.code)) from exc
        except (OSError, ValueError) as exc:
            raise Failed("S3 is unreachable (%s): %s" % (self.endpoint, exc)) from exc
        if etag and etag != hashlib.md5(body).hexdigest():  # nosec: S3's ETag of a single PUT is its MD5
            raise Failed("S3 stored %s with ETag %s, not the MD5 of what was sent" % (self.key(name), etag))

    def get(self, name: str, dest) -> bool:
        try:
            with self._request("GET", self.key(name)) as resp:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    dest.write(chunk)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise Failed("S3 GET %s failed: HTTP %s" % (self.key(name), exc.code)) from exc
        except (OSError, ValueError) as exc:
            raise Failed("S3 is unreachable (%s): %s" % (self.endpoint, exc)) from exc


# --- archive and restore ------------------------------------------------------------------

EVENTS = ".cclite-wal-events.log"


def event(wal_dir: str, kind: str, name: str, message: str) -> None:
    """One line in the archive's event log (what ``postgresql_pitr_info`` reports); best effort:
    a full disk must not hide the real error."""
    try:
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        with open(os.path.join(wal_dir, EVENTS), "a", encoding="utf-8") as handle:
            handle.write("%s %s %s %s\n" % (stamp, kind, name, message.replace("\n", " ")[:300]))
    except OSError:
        pass


def archive(conf: dict, source: str, name: str) -> str:
    wal_dir = conf["wal_dir"]
    dest = os.path.join(wal_dir, name + ".gz")
    side = os.path.join(wal_dir, name + ".sha256")
    raw = sha256_of(source)
    said = "stored"
    for left in os.listdir(wal_dir):  # temp files of an attempt that was killed (one archiver per server)
        if left.startswith((".%s.gz." % name, ".%s.sha256." % name)) and left.endswith(".partial"):
            os.unlink(os.path.join(wal_dir, left))
            event(wal_dir, "interrupted", name, "an earlier attempt was killed before it stored the segment; retried")
    if os.path.exists(dest):
        there = sha256_of(dest, gzip.open)
        if there != raw:
            raise Failed("%s is already archived with other content (sha256 %s, this one %s): refusing to overwrite; "
                         "is a second server archiving into %s?" % (name, there, raw, wal_dir))
        said = "already stored"
    else:
        write_atomic(side, lambda h: h.write(("%s  %s\n" % (raw, name)).encode()))
        write_atomic(dest, gzip_into(source, int(conf.get("compression_level", 6))))
    if conf.get("s3"):
        s3 = S3(conf["s3"])
        head = s3.head(name + ".gz")
        stored = head is not None and head.get("x-amz-meta-sha256") == raw and head.get("content-length") == str(os.path.getsize(dest))
        if not stored:
            s3.put(name + ".gz", dest, raw)
            said += ", copied to S3"
        else:
            said += ", already in S3"
    return "%s %s (sha256 %s)" % (name, said, raw)


def expected_sha(conf: dict, name: str, s3: S3 | None) -> str | None:
    side = os.path.join(conf["wal_dir"], name + ".sha256")
    if os.path.exists(side):
        with open(side, encoding="utf-8") as handle:
            return handle.read().split()[0]
    if s3 is not None:
        head = s3.head(name + ".gz")
        return head.get("x-amz-meta-sha256") if head else None
    return None


def restore(conf: dict, name: str, dest: str) -> str | None:
    local = os.path.join(conf["wal_dir"], name + ".gz")
    s3 = S3(conf["s3"]) if conf.get("s3") else None
    with tempfile.TemporaryDirectory(prefix=".cclite-wal-") as tmp:
        if not os.path.exists(local):
            if s3 is None:
                return None
            local = os.path.join(tmp, name + ".gz")
            with open(local, "wb") as handle:
                if not s3.get(name + ".gz", handle):
                    return None
        want = expected_sha(conf, name, s3)
        digest = hashlib.sha256()

        def fill(handle) -> None:
            with gzip.open(local, "rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    handle.write(chunk)
            if want and digest.hexdigest() != want:
                raise Failed("%s does not match its sha256 (%s, recorded %s): refusing to replay it" % (name, digest.hexdigest(), want))

        write_atomic(os.path.abspath(dest), fill)
    return "%s restored%s" % (name, "" if want else " (no sha256 recorded)")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("archive", "restore"):
        sys.stderr.write("usage: cclite-wal.py archive %p %f | restore %f %p\n")
        return 2
    try:
        conf = settings(os.environ.get("CCLITE_WAL_SETTINGS"))
        if argv[0] == "archive":
            said = archive(conf, argv[1], argv[2])
        else:
            said = restore(conf, argv[1], argv[2])
            if said is None:
                return 1  # not archived (yet): recovery's normal end
    except (Failed, OSError) as exc:  # OSError: disk full, permissions; the segment stays with the server, which retries
        name = argv[2] if argv[0] == "archive" else argv[1]
        sys.stderr.write("cclite-wal %s %s: %s\n" % (argv[0], name, exc))
        if argv[0] == "archive" and "conf" in locals():
            event(conf["wal_dir"], "failed", name, str(exc))
        return 1
    if conf.get("verbose"):
        sys.stderr.write("cclite-wal: %s\n" % said)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
