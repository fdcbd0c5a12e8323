# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped playbooks run as AWX runs them (ansible-runner, extra vars only): the job's
status, the artifacts on disk, the run log and JSON report, the metrics textfile, and what the
webhook and the dead-man's switch receive, field by field. Ordered: each test builds on the
catalog the ones before it left."""

from __future__ import annotations

import datetime
import glob
import json
import os
import re

import pytest

from .conftest import PG_PASSWORD, PING_UUID, WEBHOOK_TOKEN, Capture, Site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def parse_metrics(path: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            match = re.fullmatch(r'(\w+)\{(.*)\} (\S+)\n?', line)
            assert match, "not a Prometheus sample line: %r" % line
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


def no_secrets(text: str) -> None:
    for secret in (PG_PASSWORD, WEBHOOK_TOKEN, PING_UUID):
        assert secret not in text, "secret %r leaked" % secret


def reports(site: Site, kind: str) -> list[str]:
    return sorted(glob.glob(site.path("logs", "%s_*.json" % kind)))


def test_backup_reports_notifies_and_writes_metrics(site: Site, capture: Capture) -> None:
    capture.take()
    job = site.run("backup", backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN),
                   backup_healthcheck_url="%s/ping/%s" % (capture.base, PING_UUID))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]

    artifacts = sorted(glob.glob(site.path("postgresql", "postgres_backup_*.sql.gz")))
    assert len(artifacts) == 1
    size = os.path.getsize(artifacts[0])

    # the summary table
    assert re.search(r"HOST\s+STORE\s+ACTION\s+TARGET\s+STATUS\s+ARTIFACT\s+SIZE\s+CHANGE\s+DURATION\s+NOTE", job.stdout)
    assert re.search(r"localhost\s+postgresql\s+backup\s+operator_demo\s+OK\s+" + re.escape(os.path.basename(artifacts[0])), job.stdout)

    # webhook: one Slack message, field by field
    received = capture.take()
    hooks = [r for r in received if r.path.startswith("/hook/")]
    assert len(hooks) == 1
    message = hooks[0].json()
    assert message["text"].startswith(":white_check_mark: cclite.backup backup OK on 1 host: 1 ok (run ")
    card = message["attachments"][0]
    assert card["title"] == "localhost / postgresql / operator_demo"
    assert card["color"] == "good"
    fields = {f["title"]: f["value"] for f in card["fields"]}
    assert fields["Status"] == "OK"
    assert fields["Artifact"] == os.path.basename(artifacts[0])
    assert fields["Size"].endswith("KiB")
    assert re.fullmatch(r"\d+\.\ds", fields["Duration"])
    assert "Change vs previous" not in fields  # the first backup has nothing to compare with
    # dead-man's switch: success URL, not /fail
    pings = [r.path for r in received if r.path.startswith("/ping/")]
    assert pings == ["/ping/%s" % PING_UUID]
    for request in received:
        no_secrets(request.body.decode())

    # the run log and JSON report
    [report_path] = reports(site, "backup")
    report = json.load(open(report_path, encoding="utf-8"))
    assert report["run_id"] and report["playbook"] == "backup" and report["hosts"] == ["localhost"]
    assert report["status"] == "ok" and report["stores"] == ["postgresql"]
    assert report["artifacts"][0]["artifact"] == artifacts[0] and report["artifacts"][0]["size"] == size
    assert [n["channel"] for n in report["notifications"]] == ["webhook", "healthcheck"]
    assert all(n["status"] == "ok" for n in report["notifications"])
    log = open(report_path[:-5] + ".log", encoding="utf-8").read()
    assert os.path.basename(report_path[:-5]).startswith("backup_") and "status: OK" in log and artifacts[0] in log
    no_secrets(log + json.dumps(report))

    # AWX artifacts (set_stats)
    assert job.artifacts["cclite_backup"]["status"] == "ok"
    assert job.artifacts["cclite_backup"]["hosts"][0]["results"][0]["size"] == size

    # metrics
    metrics = parse_metrics(os.path.join(site.metrics, "cclite_backup.prom"))
    pg = labels(store="postgresql", target="operator_demo")
    assert metrics[("cclite_backup_last_size_bytes", pg)] == size
    assert abs(metrics[("cclite_backup_last_success_timestamp_seconds", pg)] - datetime.datetime.now().timestamp()) < 300
    assert metrics[("cclite_backup_last_duration_seconds", pg)] > 0
    assert metrics[("cclite_backup_last_run_status", labels(store="postgresql", target="operator_demo", action="backup"))] == 1
    assert oct(os.stat(os.path.join(site.metrics, "cclite_backup.prom")).st_mode & 0o777) == "0o644"


def test_second_backup_reports_the_size_change(site: Site, capture: Capture) -> None:
    capture.take()
    site.postgres.psql("INSERT INTO users (email) SELECT 'more' || g || '@example.com' FROM generate_series(1, 2000) g")
    job = site.run("backup", backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN), backup_webhook_format="json")
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    first, second = sorted(glob.glob(site.path("postgresql", "postgres_backup_*.sql.gz")))
    [hook] = capture.take()
    body = hook.json()  # the generic JSON format: the run summary itself
    assert body["source"] == "cclite.backup" and body["kind"] == "backup" and body["status"] == "ok"
    assert body["text"] == body["summary"] and body["errors"] == [] and body["warnings"] == []
    [result] = body["hosts"][0]["results"]
    assert result["artifact"] == os.path.basename(second)
    assert result["size"] == os.path.getsize(second)
    assert result["previous_size"] == os.path.getsize(first)
    assert result["size_change"] == os.path.getsize(second) - os.path.getsize(first) > 0
    assert result["size_change_human"].startswith("+")
    assert "median_size" not in result or result["median_size"] is None  # two backups are no trend yet
    assert re.search(r"operator_demo\s+OK\s+\S+\s+[\d.]+ KiB\s+\+[\d.]+ (KiB|B) \(\+[\d.]+%\)", job.stdout)


def test_verify_reports_and_sets_the_verification_metric(site: Site, capture: Capture) -> None:
    capture.take()
    job = site.run("verify", backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert "All backups are healthy!" in job.stdout
    [hook] = capture.take()
    assert hook.json()["text"].startswith(":white_check_mark: cclite.backup verify OK on 1 host")
    [report_path] = reports(site, "verify")
    report = json.load(open(report_path, encoding="utf-8"))
    assert report["verification"] == [{"store": "postgresql", "target": "operator_demo", "status": "ok", "problems": [], "error": None}]
    metrics = parse_metrics(os.path.join(site.metrics, "cclite_backup.prom"))
    pg = labels(store="postgresql", target="operator_demo")
    assert metrics[("cclite_backup_last_verification_status", pg)] == 1
    assert ("cclite_backup_last_size_bytes", pg) in metrics  # the backup's samples are kept


def test_failed_backup_is_notified_without_secrets(site: Site, capture: Capture) -> None:
    capture.take()
    before = parse_metrics(os.path.join(site.metrics, "cclite_backup.prom"))
    wrong = "Wrong-Secret-77aa"
    job = site.run("backup", postgresql_backup_login_password=wrong, backup_webhook_format="json",
                   backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN),
                   backup_healthcheck_url="%s/ping/%s/" % (capture.base, PING_UUID))
    assert job.status == "failed" and job.rc != 0
    received = capture.take()
    [hook] = [r for r in received if r.path.startswith("/hook/")]
    body = hook.json()
    assert body["status"] == "failed"
    assert body["summary"].startswith("cclite.backup backup FAILED on 1 host: 1 failed")
    [result] = body["hosts"][0]["results"]
    assert result["status"] == "failed" and result["store"] == "postgresql" and result["target"] == "operator_demo"
    assert "password authentication failed" in result["error"]
    assert body["errors"] and body["errors"][0].startswith("localhost postgresql backup operator_demo: ")
    # the dead-man's switch hears of the failure (trailing slash of the URL handled)
    assert [r.path for r in received if r.path.startswith("/ping/")] == ["/ping/%s/fail" % PING_UUID]
    for request in received:
        no_secrets(request.body.decode())
        assert wrong not in request.body.decode()
    assert wrong not in job.stdout and PG_PASSWORD not in job.stdout
    metrics = parse_metrics(os.path.join(site.metrics, "cclite_backup.prom"))
    pg = labels(store="postgresql", target="operator_demo")
    assert metrics[("cclite_backup_last_run_status", labels(store="postgresql", target="operator_demo", action="backup"))] == 0
    assert metrics[("cclite_backup_last_success_timestamp_seconds", pg)] == before[("cclite_backup_last_success_timestamp_seconds", pg)]
    report = json.load(open(reports(site, "backup")[-1], encoding="utf-8"))
    assert report["status"] == "failed"


def test_broken_webhook_never_fails_a_good_backup(site: Site, capture: Capture) -> None:
    capture.take()
    job = site.run("backup", backup_webhook_url="%s/broken/%s" % (capture.base, WEBHOOK_TOKEN))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert len(capture.take()) == 1
    assert re.search(r"\[WARNING\]: webhook could not be delivered: Status code was 500", job.stdout)
    assert WEBHOOK_TOKEN not in job.stdout
    report = json.load(open(reports(site, "backup")[-1], encoding="utf-8"))
    assert report["status"] == "ok"
    assert report["notifications"] == [
        {"channel": "webhook", "status": "failed", "http_status": 500, "message": report["notifications"][0]["message"]}
    ]
    assert WEBHOOK_TOKEN not in json.dumps(report)


def test_size_trend_warns_against_the_median(site: Site, capture: Capture, tmp_path) -> None:
    """A backup far smaller than the median of the ones before it is reported, not failed."""
    capture.take()
    root = str(tmp_path / "trend")
    os.makedirs(os.path.join(root, "postgresql"), mode=0o700)
    now = datetime.datetime.now()
    for days in (1, 2, 3, 4):  # earlier backups of 4 MiB each
        name = "postgres_backup_%s.sql.gz" % (now - datetime.timedelta(days=days)).strftime("%Y%m%d_%H%M%S")
        with open(os.path.join(root, "postgresql", name), "wb") as handle:
            handle.write(os.urandom(4 << 20))
    job = site.run("backup", backup_root=root, backup_metrics_dir=str(tmp_path / "metrics"), backup_retention_days=30,
                   backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    [hook] = capture.take()
    message = hook.json()
    warnings = [a for a in message["attachments"] if a["title"] == "Warnings"]
    assert len(warnings) == 1 and "size trend:" in warnings[0]["text"] and "of the median of the previous 4 backups (4.0 MiB)" in warnings[0]["text"]
    assert message["attachments"][0]["color"] == "warning"
    metrics = parse_metrics(str(tmp_path / "metrics" / "cclite_backup.prom"))
    assert metrics[("cclite_backup_size_median_ratio", labels(store="postgresql", target="operator_demo"))] < 0.5
    report = json.load(open(sorted(glob.glob(os.path.join(root, "logs", "backup_*.json")))[-1], encoding="utf-8"))
    assert report["status"] == "ok" and "size trend:" in report["results"][0]["warnings"][0]


def test_restore_runs_with_extra_vars_only(site: Site, capture: Capture) -> None:
    # AWX cannot answer a prompt: without the survey's confirmation the job fails, it never waits
    job = site.run("restore")
    assert job.status == "failed" and "Restore not confirmed" in job.stdout
    site.postgres.psql("DELETE FROM users WHERE id > 10")
    capture.take()
    job = site.run("restore", restore_confirm=True, restore_postgresql_file="latest.sql.gz",
                   backup_webhook_url="%s/hook/%s" % (capture.base, WEBHOOK_TOKEN))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert site.postgres.psql("SELECT count(*) FROM users") == "5000"
    [hook] = capture.take()
    assert hook.json()["text"].startswith(":white_check_mark: cclite.backup restore OK on 1 host")
    assert reports(site, "restore")


def test_list_runs_with_extra_vars_only(site: Site) -> None:
    job = site.run("list")
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert re.search(r"postgresql \(.*\): \d+ backup\(s\)", job.stdout)


def test_a_job_killed_at_its_timeout_says_so(site: Site, tmp_path) -> None:
    # backup_job's timeout kills the module (timeout -s KILL): the task fails naming the timeout,
    # not as a module that printed nothing
    job = site.run("../tests/runner/playbooks/job_timeout", backup_root=str(tmp_path))

    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    [shown] = [r["msg"] for r in job.module_results("ansible.builtin.debug") if r.get("msg", "").startswith("JOB-TIMEOUT ")]
    said = json.loads(shown[len("JOB-TIMEOUT "):])
    assert said.get("failed") is True and said.get("rc") == 137, said
    assert said["msg"].startswith("ansible.builtin.command ran longer than the job's timeout of 1 s and was killed"), said
    assert "MODULE FAILURE" not in job.stdout, job.stdout[-3000:]
