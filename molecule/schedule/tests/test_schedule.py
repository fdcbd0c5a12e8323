"""What the schedule installed (copies kept by side_effect.yml), what its scheduled command
produced, and that uninstall left nothing of its own behind (and everything else in place)."""

from __future__ import annotations

import json
import re

import pytest

COMMAND = "/usr/local/sbin/cclite-backup"


@pytest.fixture()
def name(host):
    return host.backend.get_hostname()


def test_cron_entries_had_the_guide_times(host, name):
    if name != "cclite-schedule-1":
        pytest.skip("systemd backend on this instance")
    lines = host.file("/tmp/installed/cron.d/cclite-backup").content_string.splitlines()
    entries = [l for l in lines if l and not l.startswith("#")]
    assert entries == [
        "0 2 * * * root %s backup" % COMMAND,
        "0 6 * * * root %s verify" % COMMAND,
        "0 3 * * 0 root %s verify_extended" % COMMAND,
        "0 4 1 * * root %s drill_monthly" % COMMAND,  # a restore drill of a random older set (issue 15)
    ]
    assert [l for l in lines if l.startswith("#Ansible:")] == [
        "#Ansible: cclite-backup backup", "#Ansible: cclite-backup verify", "#Ansible: cclite-backup verify_extended",
        "#Ansible: cclite-backup drill_monthly"]
    assert not host.file("/tmp/installed/systemd/cclite-backup-backup.timer").exists


def test_systemd_timers_had_the_configured_times(host, name):
    if name != "cclite-schedule-2":
        pytest.skip("cron backend on this instance")
    calendars = {}
    for job in ("backup", "verify", "verify-extended"):
        timer = host.file("/tmp/installed/systemd/cclite-backup-%s.timer" % job).content_string
        calendars[job] = re.search(r"^OnCalendar=(.*)$", timer, re.M).group(1)
        assert "\nPersistent=true\n" in timer and "\nRandomizedDelaySec=900\n" in timer
        service = host.file("/tmp/installed/systemd/cclite-backup-%s.service" % job).content_string
        assert "\nExecStart=%s %s\n" % (COMMAND, job.replace("-", "_")) in service
    assert calendars == {"backup": "*-*-* 01:30:00", "verify": "Mon,Tue,Wed,Thu,Fri *-*-* 05:45:00",
                         "verify-extended": "Sat *-*-* 04:15:00"}
    assert not host.file("/tmp/installed/cron.d/cclite-backup").exists
    # systemd (PID 1 in this container) had the three timers enabled and waiting
    timers = host.file("/tmp/installed/timers.txt").content_string
    for job in ("backup", "verify", "verify-extended"):
        line = [l for l in timers.splitlines() if "cclite-backup-%s.timer" % job in l]
        assert len(line) == 1 and "cclite-backup-%s.service" % job in line[0], timers
    assert "3 timers listed." in timers


def test_systemd_has_no_timer_left(host, name):
    if name != "cclite-schedule-2":
        pytest.skip("cron backend on this instance")
    listed = host.run("systemctl list-timers --all --no-pager 'cclite-backup-*'")
    assert "0 timers listed." in listed.stdout
    assert host.run("ls /etc/systemd/system/timers.target.wants").stdout.count("cclite-backup") == 0


SECRET = "Molecule-Schedule-Secret-2b9d"


def test_local_inventory_was_private_encrypted_and_complete(host):
    inventory = host.file("/tmp/installed/cclite-backup/inventory.yml")
    assert inventory.mode == 0o600
    assert inventory.content_string.startswith("$ANSIBLE_VAULT;1.2;AES256;cclite-backup\n")
    password = host.file("/tmp/installed/cclite-backup/vault-password")
    assert password.mode == 0o400 and password.user == "root"
    text = host.file("/tmp/decrypted-inventory.yml").content_string  # side_effect.yml: ansible-vault view with it
    assert "backup_root: /srv/backups" in text and "postgresql_backup_run_as: postgres" in text
    assert "ansible_connection: local" in text and "schedule_" not in text and SECRET in text
    assert host.file("/tmp/installed/cclite-backup/installed.json").exists


def test_no_secret_in_clear_in_any_file_the_schedule_wrote(host):
    # every file install wrote (copies kept before uninstall), the logs and reports of the jobs
    found = host.run("grep -rlF %s /tmp/installed /srv/backups/logs /srv/metrics" % SECRET)
    assert found.rc == 1 and found.stdout == "", found.stdout  # grep: 1 = no match
    listed = host.run("find /tmp/installed /srv/backups/logs -type f").stdout.split()
    assert any(p.endswith("/inventory.yml") for p in listed) and any(p.endswith("cron.log") for p in listed)


def test_scheduled_command_made_a_backup_and_logged_it(host):
    names = host.run("ls /srv/backups/postgresql").stdout.split()
    backups = [n for n in names if re.fullmatch(r"postgres_backup_\d{8}_\d{6}\.sql\.gz", n)]
    assert len(backups) == 1, names
    manifest = json.loads(host.file("/srv/backups/postgresql/%s.manifest.json" % backups[0]).content_string)
    assert manifest["source"]["tables"] == {"public.users": 4000}
    log = host.file("/srv/backups/logs/cron.log").content_string
    assert re.search(r"^\S+ cclite-backup\[\d+\] backup: start \(cclite\.backup\.backup\)$", log, re.M)
    assert re.search(r"^\S+ cclite-backup\[\d+\] backup: OK in \d+s$", log, re.M)
    assert re.search(r"^\S+ cclite-backup\[\d+\] verify: OK in \d+s$", log, re.M)
    assert "PLAY RECAP" in log
    logs = host.run("ls /srv/backups/logs").stdout.split()
    assert [n for n in logs if re.fullmatch(r"backup_\d{8}_\d{6}\.log", n)]
    assert [n for n in logs if re.fullmatch(r"verify_\d{8}_\d{6}\.json", n)]
    metrics = host.file("/srv/metrics/cclite_backup.prom").content_string
    size = host.file("/srv/backups/postgresql/" + backups[0]).size
    assert 'cclite_backup_last_size_bytes{store="postgresql",target="operator_demo"} %d' % size in metrics
    assert 'cclite_backup_last_verification_status{store="postgresql",target="operator_demo"} 1' in metrics


def test_uninstall_left_nothing_of_its_own(host):
    assert host.run("ls /etc/cron.d").stdout.split().count("cclite-backup") == 0
    for path in (COMMAND, "/etc/cclite-backup", "/opt/cclite-backup/venv", "/opt/cclite-backup/collections/ansible_collections/cclite/backup"):
        assert not host.file(path).exists, path
    assert host.run("ls /etc/systemd/system").stdout.count("cclite-backup") == 0


def test_uninstall_left_everything_else(host):
    other = host.file("/etc/cron.d/other-team").content_string
    assert "17 * * * * root /bin/true" in other
    assert host.file("/srv/backups/logs/cron.log").exists  # logs and backups are data, not the schedule
