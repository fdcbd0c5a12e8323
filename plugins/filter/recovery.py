# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the dr role: each store's counts after a restore against its manifest, and the
recovery time and point, as run records."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _recovery


def dr_store_checks(registered: t.Mapping[str, t.Any] | None, store: str, manifests: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    if store not in _recovery.MEASURES:
        raise AnsibleFilterError("dr_store_checks: unknown store %r; use one of %s" % (store, ", ".join(_recovery.MEASURES)))
    return _recovery.store_checks(store, registered, manifests or {})


def dr_figures(steps: t.Sequence[t.Mapping[str, t.Any]], started: str, restored: t.Sequence[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    try:
        return _recovery.figures(steps, started, restored or [])
    except (KeyError, ValueError, TypeError) as exc:
        raise AnsibleFilterError("dr_figures: the steps or times are not as expected: %s" % exc) from exc


def dr_step_records(figure: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    return _recovery.step_records(figure)


def dr_step_line(step: t.Mapping[str, t.Any]) -> str:
    return _recovery.step_line(step)


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"dr_store_checks": dr_store_checks, "dr_figures": dr_figures, "dr_step_records": dr_step_records, "dr_step_line": dr_step_line}
