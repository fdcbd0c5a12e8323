# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pass-through options for a tool: refuse the ones that would move or reshape the output.

A backup's output must go where the core writes it (the tool's stdout, into the temp file the
artifact writer renames into place) in the format the catalog records. Options that write a
file elsewhere, change the format, compress or pick another source are refused before anything
runs, by name, with the reason. The options are read the way the tool's getopt_long reads them:
short options may be bundled (``-vf x``), a short option's value may be glued on (``-fx``) or be
the next element, long options may be abbreviated to any unambiguous prefix (``--fil=x`` is
``--file``) and take their value after ``=`` or as the next element.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ToolOptions:
    """What a tool's getopt knows, and what cclite.backup refuses of it."""

    tool: str
    setting: str  # the variable or option the user set, for the message
    short_with_value: str  # short options that take a value, e.g. "fF"
    short_flags: str  # short options without a value
    long_with_value: t.FrozenSet[str]
    long_flags: t.FrozenSet[str]
    refused: t.Mapping[str, str]  # option (as "-f" or "--file") -> why it is refused
    positional: str = ""  # why a bare argument is refused; empty: allowed

    def _long_names(self) -> list[str]:
        return sorted(self.long_with_value | self.long_flags)

    def _refuse(self, given: str, option: str) -> t.NoReturn:
        """``given`` is the option as written without its value (a connection string may hold a password)."""
        shown = given if given == option else "%s (%s)" % (given, option)
        raise ConfigError(
            "%s: %s %s is refused: %s. Remove it from %s." % (self.setting, self.tool, shown, self.refused[option], self.setting)
        )

    def check(self, options: t.Sequence[str]) -> None:
        """Raise :class:`ConfigError` naming the first refused option and why."""
        items = list(options)
        index = 0
        while index < len(items):
            item = items[index]
            index += 1
            if not isinstance(item, str):
                raise ConfigError("%s: every option must be a string, got %r" % (self.setting, item))
            if item == "--":
                if index < len(items) and self.positional:
                    raise ConfigError("%s: a bare argument after '--' is refused: %s" % (self.setting, self.positional))
                return
            if item.startswith("--"):
                name, has_value, _value = item[2:].partition("=")
                matches = [n for n in self._long_names() if n == name] or [n for n in self._long_names() if n.startswith(name)]
                refused = [m for m in matches if "--" + m in self.refused]
                if refused:  # an abbreviation of a refused option (ambiguous or not) is refused
                    self._refuse(item.split("=")[0], "--" + refused[0])
                if len(matches) == 1 and matches[0] in self.long_with_value and not has_value:
                    index += 1  # its value is the next element
                continue
            if item.startswith("-") and len(item) > 1:
                for position, letter in enumerate(item[1:]):
                    if "-" + letter in self.refused:
                        self._refuse("-" + letter, "-" + letter)  # never the value: it may hold a password
                    if letter in self.short_with_value:
                        if position == len(item) - 2:
                            index += 1  # the value is the next element
                        break  # the rest of the element is the value
                continue
            if self.positional:
                raise ConfigError("%s: a bare argument is refused: %s" % (self.setting, self.positional))
