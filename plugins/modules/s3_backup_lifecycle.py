#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_lifecycle
short_description: Put the S3 lifecycle rule that expires the off-site copies by age
version_added: 0.1.0
description:
  - Adds, updates or removes one rule, O(rule_id), in the bucket's lifecycle configuration - expire
    objects under C(<prefix>/) after O(expiration_days) days, and abort multipart uploads left
    unfinished for O(abort_incomplete_days) days. The bucket's other rules are kept.
  - "Why a module of our own: amazon.aws has no lifecycle module (it lives in community.aws,
    which this collection does not depend on), and this one touches only its own rule."
  - "A lifecycle rule deletes by age alone: when backups stop, it deletes the last copies too.
    The guarded prune (M(cclite.backup.s3_backup_prune)) never deletes the newest good copy, but
    needs delete permission for the backup credentials. Use the rule when those credentials must
    not delete (write-once buckets, compliance), with O(expiration_days) well above the retention
    and the verify playbook alerting on the age of the newest copy."
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  rule_id:
    description: ID of the rule.
    type: str
    default: cclite-backup-retention
  expiration_days:
    description: Days after which S3 deletes a copy.
    type: int
    default: 37
  abort_incomplete_days:
    description: Days after which S3 aborts an unfinished multipart upload; V(0) leaves that out.
    type: int
    default: 2
  state:
    description: V(present) puts the rule, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs C(s3:GetLifecycleConfiguration) and C(s3:PutLifecycleConfiguration) on the bucket.
"""

EXAMPLES = r"""
- name: Let S3 expire the copies after 40 days
  cclite.backup.s3_backup_lifecycle:
    bucket: my-backups
    expiration_days: 40
"""

RETURN = r"""
rule:
  description: The rule as put (null with O(state=absent)).
  returned: always
  type: dict
previous:
  description: The rule before (null when there was none).
  returned: always
  type: dict
other_rules:
  description: How many other rules the bucket has (kept as they are).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _prune, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


def main() -> None:
    argument_spec = dict(
        rule_id=dict(type="str", default="cclite-backup-retention"),
        expiration_days=dict(type="int", default=37),
        abort_incomplete_days=dict(type="int", default=2),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    argument_spec.update(s3.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        remote = _remote.Remote(s3.connection_from(p))
        result = _prune.lifecycle(remote, p["rule_id"], p["expiration_days"], p["abort_incomplete_days"], p["state"], module.check_mode)
        result["msg"] = "%s the lifecycle rule %s of %s" % (
            ("would change" if module.check_mode else "changed") if result["changed"] else "kept", p["rule_id"], p["bucket"])
        return result

    _module.run(module, action)


if __name__ == "__main__":
    main()
