# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention on S3 (never the newest good copy), stale multipart uploads, and the lifecycle rule."""

from __future__ import annotations

import datetime
import json
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._retention import Keep, generations
from ansible_collections.cclite.backup.plugins.module_utils._offsite._checks import is_good
from ansible_collections.cclite.backup.plugins.module_utils._offsite._remote import Remote, RemoteEntry, STALE_UPLOAD


def prune(
    remote: Remote,
    store: str,
    retention_days: int,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
    keep: Keep | None = None,
) -> dict[str, t.Any]:
    """Delete copies older than ``retention_days`` that no generation of ``keep`` holds
    (``_core._retention``) from S3, never the newest good one of each series; when no copy of
    a series checks out as good, keep all of them."""
    now = now or local_now()
    cutoff = datetime.timedelta(days=retention_days)
    entries = remote.entries(store)
    by_series: dict[str, list[RemoteEntry]] = {}
    for entry in entries:
        by_series.setdefault(entry.series, []).append(entry)
    deleted: list[str] = []
    protected: list[str] = []
    reasons: list[str] = []
    kept: dict[str, list[str]] = {}
    for series, items in sorted(by_series.items()):
        label = "%s%s" % (store, " (%s)" % series if series else "")
        items = sorted(items, key=lambda e: e.created, reverse=True)
        held = generations([e.created for e in items], keep)
        kept.update({items[i].name: why for i, why in held.items() if now - items[i].created > cutoff})
        expired = [e for i, e in enumerate(items) if now - e.created > cutoff and i not in held]
        if not expired:
            reasons.append("%s: no copy is older than %d days" % (label, retention_days))
            continue
        keep = next((e for e in items if is_good(remote, e)), None)
        if keep is None:
            reasons.append("%s: no copy on S3 checks out as good: kept all %d expired copies" % (label, len(expired)))
            continue
        protected.append(keep.name)
        for entry in expired:
            if entry is keep:
                continue
            deleted.append(entry.name)
            if not dry_run:
                if entry.manifest_key:
                    remote.delete(entry.manifest_key)  # the manifest first: a half-deleted copy is never "good"
                remote.delete(entry.key)
        reasons.append("%s: kept %s, the newest good copy" % (label, keep.name))
    aborted = [] if dry_run else _abort_stale_uploads(remote, store, now)
    return {
        "store": store,
        "deleted": deleted,
        "protected": protected,
        "aborted_uploads": aborted,
        "generations": kept,
        "reason": "; ".join(reasons) or "no copy on S3",
    }


def _abort_stale_uploads(remote: Remote, store: str, now: datetime.datetime) -> list[str]:
    """Multipart uploads a killed run left behind (they cost storage but are invisible)."""
    try:
        page = remote.client.list_multipart_uploads(Bucket=remote.conn.bucket, Prefix=remote.conn.store_prefix(store))
    except (s3.ClientError, s3.BotoCoreError):
        return []  # some S3-compatible stores do not list uploads: a lifecycle rule covers it
    aborted = []
    for upload in page.get("Uploads", []):
        initiated = upload.get("Initiated")
        if initiated is not None and now - initiated > STALE_UPLOAD:
            remote.call("aborting a stale upload of %s" % upload["Key"], "abort_multipart_upload",
                        Bucket=remote.conn.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted.append(upload["Key"])
    return aborted


# Lifecycle rule -----------------------------------------------------------------------------


def lifecycle_rule(rule_id: str, prefix: str, days: int, abort_days: int) -> dict[str, t.Any]:
    rule: dict[str, t.Any] = {"ID": rule_id, "Filter": {"Prefix": prefix}, "Status": "Enabled", "Expiration": {"Days": days}}
    if abort_days > 0:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    return rule


def lifecycle(remote: Remote, rule_id: str, days: int, abort_days: int, state: str, check_mode: bool) -> dict[str, t.Any]:
    """Put (or remove) one rule of the bucket's lifecycle configuration, keeping the others."""
    if state == "present" and days < 1:
        raise ConfigError("a lifecycle rule needs at least 1 day of expiration, got %d" % days)
    bucket = remote.conn.bucket
    try:
        rules = remote.client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except s3.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise remote.conn.error(exc, "reading the lifecycle rules of %s" % bucket) from exc
        rules = []
    except s3.BotoCoreError as exc:
        raise remote.conn.error(exc, "reading the lifecycle rules of %s" % bucket) from exc
    others = [r for r in rules if r.get("ID") != rule_id]
    current = next((r for r in rules if r.get("ID") == rule_id), None)
    wanted = lifecycle_rule(rule_id, remote.conn.base + "/", days, abort_days) if state == "present" else None

    def normal(rule: dict[str, t.Any] | None) -> t.Any:
        if rule is None:
            return None
        keys = ("ID", "Filter", "Status", "Expiration", "AbortIncompleteMultipartUpload")
        return json.dumps({k: rule.get(k) for k in keys}, sort_keys=True, default=str)

    changed = normal(current) != normal(wanted)
    if changed and not check_mode:
        new_rules = others + ([wanted] if wanted else [])
        if new_rules:
            remote.call("writing the lifecycle rules of %s" % bucket, "put_bucket_lifecycle_configuration",
                        Bucket=bucket, LifecycleConfiguration={"Rules": new_rules})
        else:
            remote.call("removing the lifecycle rules of %s" % bucket, "delete_bucket_lifecycle", Bucket=bucket)
    return {"changed": changed, "rule": wanted, "previous": current, "other_rules": len(others)}
