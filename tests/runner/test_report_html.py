# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/report.yml over 40 nights of backups on two hosts (written with the collection's own
artifact, manifest and run report code; some copied to a moto S3), opened in headless Chromium:
no console message, the charts are there, and the page's data shows the counts, the gap nights,
the size anomaly and the copies on S3."""

from __future__ import annotations

import dataclasses
import datetime
import html.parser
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import typing as t

import pytest
import yaml


from .conftest import ROOT, make_bucket, run_playbook, s3_client

sys.path.insert(0, os.path.join(ROOT, ".collections"))

# pylint: disable=wrong-import-position
from ansible_collections.cclite.backup.plugins.module_utils._core import _artifact, _manifest  # noqa: E402
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, REDIS, Catalog  # noqa: E402
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report  # noqa: E402

NIGHTS = 40
SECRET = "Report-Fake-Secret-4417q"
S3_SECRET = "Report-S3-Secret-8c1e0"
BUCKET = "cclite-report"
OUTPUT = os.path.join(ROOT, "tests", "output")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0")
GZIP = _artifact.Compression("gzip", 6, 1)


@dataclasses.dataclass
class Plan:
    """What one host's store gets: the nights with nothing, with a failed run, with a big backup."""

    missed: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    big: tuple[int, ...] = ()


# the last nightly backup ran an hour ago (so the age rule passes), each earlier one a day before
LAST = (datetime.datetime.now() - datetime.timedelta(hours=1)).astimezone().replace(microsecond=0)


def night(index: int) -> datetime.datetime:
    """When the index-th of the NIGHTS nightly backups ran."""
    return LAST - datetime.timedelta(days=NIGHTS - 1 - index)


def content(store: str, index: int, big: bool) -> bytes:
    if store == "redis":  # an empty RDB (version 9, checksum disabled) that redis-check-rdb accepts
        return b"REDIS0009\xff" + b"\x00" * 8
    rows = random.Random(index).randbytes(2000 * (4 if big else 1) + 37 * index).hex()
    return b"-- PostgreSQL database dump\n-- " + rows.encode() + b"\n-- PostgreSQL database dump complete\n\n"


def backup(root: str, store: str, index: int, big: bool) -> dict[str, t.Any]:
    """A real artifact and manifest, as if made that night, and its run record."""
    layout = {"postgresql": POSTGRESQL, "redis": REDIS}[store]
    catalog = Catalog(root, layout)
    catalog.ensure()
    started = night(index)
    path = os.path.join(catalog.directory, catalog.file_name(started, GZIP.extension))
    data = content(store, index, big)
    written = _artifact.write_artifact(lambda out: out.write(data), path, GZIP)
    written = dataclasses.replace(written, started=started, ended=started + datetime.timedelta(seconds=20 + index % 7 * 5))
    # the secret also in fields the page must not show: a manifest's source, a run record's extra key
    _manifest.write(path, _manifest.build(store, written, GZIP, fmt="plain" if store == "postgresql" else "rdb", host="synthetic",
                                          source={"connection": "postgresql://postgres:%s@db/operator_demo" % SECRET}))
    catalog.point_latest(path)
    return {"store": store, "action": "backup", "target": "operator_demo" if store == "postgresql" else "", "status": "ok",
            "artifact": path, "size": written.size, "sha256": written.sha256, "duration": written.duration, "login_password": SECRET}


def make_host(root: str, host: str, plans: t.Mapping[str, Plan]) -> None:
    """NIGHTS nights of backup runs, each with its JSON run report; a missed night leaves nothing."""
    for index in range(NIGHTS):
        records = []
        for store, plan in plans.items():
            if index in plan.missed:
                continue
            if index in plan.failed:
                records.append({"store": store, "action": "backup", "target": "operator_demo", "status": "failed",
                                "error": "pg_dump exited with status 1: connection refused"})
            else:
                records.append(backup(root, store, index, index in plan.big))
        if records:
            started = night(index)
            run = {"id": started.strftime("%Y%m%d_%H%M%S"), "kind": "backup", "started": started.isoformat(),
                   "ended": (started + datetime.timedelta(minutes=2)).isoformat()}
            _report.write_run(os.path.join(root, "logs"), _report.build_report(run, host, records), started.strftime("%Y%m%d_%H%M%S"))


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


class Page(html.parser.HTMLParser):
    """The elements of the page the test looks at: charts, store sections, marks, the JSON data."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, str]] = []
        self.stores: list[dict[str, str]] = []
        self.marks: list[dict[str, str]] = []
        self.data = ""
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        classes = found.get("class", "").split()
        if tag == "svg" and "chart" in classes:
            self.charts.append(found)
        elif tag == "section" and "store" in classes:
            self.stores.append(found)
        elif tag == "rect" and ("gap" in classes or "anomaly" in classes):
            self.marks.append(found)
        self._in_data = tag == "script" and found.get("id") == "report-data"

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data


def chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="cclite-chromium-")
    try:
        return subprocess.run(["chromium", *CHROMIUM_FLAGS, "--user-data-dir=" + profile, *args, url],
                              capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console(stderr: str) -> list[str]:
    """What the page wrote to the console (Chromium logs every message, errors included, as CONSOLE)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def browser() -> None:
    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def s3(s3_server: str) -> str:
    """The moto S3 server with an empty bucket; its endpoint URL."""
    make_bucket(s3_server, BUCKET)
    return s3_server


def copy_to_s3(endpoint: str, root: str, count: int) -> list[str]:
    """The newest ``count`` PostgreSQL backups of ``root`` on S3, where the guide's scripts put them."""
    client = s3_client(endpoint)
    names = [e.name for e in Catalog(root, POSTGRESQL).entries()[:count]]
    for name in names:
        client.upload_file(os.path.join(root, "postgresql", name), BUCKET, "cc-lite/backups/postgresql/" + name)
    return names


def test_the_console_check_sees_an_error(browser: None, tmp_path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefined_function();</script></body></html>")
    assert any("undefined_function" in line for line in console(chromium(page.as_uri(), "--dump-dom").stderr))


def test_report_shows_forty_nights_of_two_hosts(browser: None, s3: str, tmp_path) -> None:
    alpha, beta = str(tmp_path / "alpha"), str(tmp_path / "beta")
    make_host(alpha, "alpha", {"postgresql": Plan(missed=(12,), failed=(25,), big=(33,)), "redis": Plan()})
    make_host(beta, "beta", {"postgresql": Plan(missed=(20,))})
    on_s3 = copy_to_s3(s3, alpha, 5)
    python = os.path.join(ROOT, ".venv", "bin", "python")
    common = {"ansible_connection": "local", "ansible_python_interpreter": python, "postgresql_backup_mode": "host",
              "postgresql_backup_databases": ["operator_demo"], "postgresql_backup_login_password": SECRET}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"cclite_backup": {"hosts": {
        "alpha": dict(common, backup_root=alpha, backup_stores=["postgresql", "redis"], redis_backup_mode="host",
                      redis_backup_min_size_bytes=0, backup_s3_bucket=BUCKET, backup_s3_endpoint_url=s3, backup_s3_region="us-east-1",
                      backup_s3_addressing_style="path", backup_s3_access_key="testing", backup_s3_secret_key=S3_SECRET),
        "beta": dict(common, backup_root=beta, backup_stores=["postgresql"]),
    }}}))
    output = str(tmp_path / "report.html")

    job = run_playbook(str(inventory), "report", {"report_output": output})
    assert job.status == "successful", job.stdout[-3000:]

    text = read(output)
    planted = [os.path.join(d, n) for d in (os.path.join(alpha, "logs"), os.path.join(alpha, "postgresql")) for n in os.listdir(d)]
    assert sum(SECRET in read(p) for p in planted) >= NIGHTS
    assert SECRET not in text and SECRET not in job.stdout and S3_SECRET not in text
    loaded = chromium("file://" + output, "--dump-dom")
    assert console(loaded.stderr) == []
    page = Page()
    page.feed(loaded.stdout)
    os.makedirs(OUTPUT, exist_ok=True)
    chromium("file://" + output, "--screenshot=" + os.path.join(OUTPUT, "report.png"), "--window-size=1200,1500", "--hide-scrollbars")
    assert os.path.getsize(os.path.join(OUTPUT, "report.png")) > 10000

    # two charts (size, duration) for each of the three stores, as the browser sees the page
    assert [(s["data-host"], s["data-store"], s["data-backups"]) for s in page.stores] == [
        ("alpha", "postgresql", "38"), ("alpha", "redis", "40"), ("beta", "postgresql", "39")]
    assert len(page.charts) == 6 and {c["data-metric"] for c in page.charts} == {"size", "duration"}
    nights = [night(i).date().isoformat() for i in range(NIGHTS)]
    assert page.stores[0]["data-gaps"] == "%s %s" % (nights[12], nights[25]) and page.stores[2]["data-gaps"] == nights[20]
    gaps = {(m["data-night"], m["class"]) for m in page.marks if "gap" in m["class"]}
    assert gaps == {(nights[12], "gap missed"), (nights[25], "gap failed"), (nights[20], "gap missed")}
    big = os.path.basename(Catalog(alpha, POSTGRESQL).file_name(night(33), ".gz"))
    assert {m["data-backup"] for m in page.marks if "anomaly" in m["class"]} == {big}

    data = json.loads(page.data)
    hosts = {h["host"]: h for h in data["hosts"]}
    pg = hosts["alpha"]["stores"][0]
    assert pg["anomalies"] == [big] and "much larger than usual" in {b["name"]: b for b in pg["backups"]}[big]["anomaly"]
    assert [g["kind"] for g in pg["gaps"]] == ["missed", "failed"] and "connection refused" in pg["gaps"][1]["error"]
    assert {b["state"] for s in hosts["alpha"]["stores"] + hosts["beta"]["stores"] for b in s["backups"]} == {"good"}
    assert all(isinstance(b["duration"], float) for b in pg["backups"])
    assert sorted(b["name"] for b in pg["backups"] if b["offsite"]) == sorted(on_s3) and pg["offsite_copies"] == 5
    # the newest complete set is the last night (both stores good); recovery point = its age
    assert hosts["alpha"]["complete_set"]["night"] == nights[-1]
    expected = (datetime.datetime.now().astimezone() - night(NIGHTS - 1)).total_seconds() / 3600
    assert abs(pg["recovery_point_hours"] - expected) < 0.5
    assert hosts["alpha"]["last_drill"] is None and "no drill recorded" in loaded.stdout
    assert len(hosts["beta"]["runs"]) == 20 and hosts["beta"]["runs"][0]["status"] == "ok"
