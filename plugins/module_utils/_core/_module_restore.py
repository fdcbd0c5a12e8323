# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the ``*_restore`` modules share beyond ``_module``: the restore spec from their options,
and the drill options and run."""

from __future__ import annotations

import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _drill, _module
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec


def spec_from(params: t.Mapping[str, t.Any], catalog: Catalog, **kwargs: t.Any) -> RestoreSpec:
    """The restore options every ``*_restore`` module shares, for ``_restore.restore``."""
    return RestoreSpec(
        catalog, params["name"], params["confirm"], params["safety_backup"], params.get("keep_previous") or False,
        _module.compression_from(params), params["lock_timeout"], _module.file_mode_from(params), encryption=_module.encryption_from(params), **kwargs,
    )


def drill_argument_spec() -> dict[str, t.Any]:
    """What every ``*_restore`` module takes for a drill (doc fragment cclite.backup.drill)."""
    return {
        "drill": {"type": "bool", "default": False},
        "drill_container": {"type": "str", "default": ""},
        "drill_image": {"type": "str", "default": ""},
        "drill_memory": {"type": "str", "default": "1g"},
        "drill_start_timeout": {"type": "int", "default": 120},
        "drill_target": {"type": "dict"},
        "drill_set": {"type": "str", "default": ""},
    }


def drill(
    module: t.Any, store: str, container: str, connection_spec: t.Mapping[str, t.Any],
    build: t.Callable[[dict[str, t.Any] | None], tuple[RestoreSpec, _drill.DrillEngine]], host_mode: bool = False,
    scratch: t.Callable[[], _drill.Throwaway] | None = None,
) -> dict[str, t.Any]:
    """A ``*_restore`` module's drill: ``build`` gets the dedicated drill server's parameters
    (the module's, with ``drill_target`` over them) or ``None``, and returns the restore spec
    and the store's drill engine; in host mode ``scratch`` makes a scratch server on this host."""
    p = module.params
    if module.check_mode:
        return {"changed": False, "drill": None, "msg": "would run a %s restore drill in a throwaway target (check mode: nothing started)" % store}
    kept = None
    if p["drill_target"]:
        unknown = sorted(set(p["drill_target"]) - set(connection_spec))
        if unknown:
            raise ConfigError(
                "%s_drill_target has %s, which %s not a connection option of the module; use %s"
                % (store, ", ".join(unknown), "is" if len(unknown) == 1 else "are", ", ".join(sorted(connection_spec)))
            )
        kept = dict(p, **p["drill_target"])
        target: _drill.Throwaway = _drill.KeptTarget("the dedicated drill server (%s_drill_target)" % store)
    elif host_mode and scratch is not None:
        target = scratch()
    elif host_mode:
        raise _drill.DrillError(
            "the %s drill cannot run: the server runs on the host (mode host), a scratch %s server on this host is not "
            "supported, and no dedicated drill server is set; set %s_drill_target to one (a drill never restores into "
            "the production server)" % (store, store, store),
            drill={"store": store, "ran": False, "passed": False, "why": "mode host without %s_drill_target" % store},
        )
    else:
        target = _drill.DockerTarget(_drill.DockerSpec(
            store, p["drill_container"] or container, p["drill_image"], p["drill_memory"], start_timeout=p["drill_start_timeout"],
        ))
    spec, engine = build(kept)
    return _drill.run_drill(store, spec, engine, target, p["drill_start_timeout"], p["drill_set"] or None)
