# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: the size trend (a backup against the median of the ones before it)."""

from __future__ import annotations


class ModuleDocFragment:
    # Used by backup_trend_info and backup_report_html; the spec is _report.trend_argument_spec().
    DOCUMENTATION = r"""
options:
  history:
    description: How many of the backups before the new one make the median.
    type: int
    default: 7
  min_history:
    description: Fewer earlier backups than this give no median and no trend warning.
    type: int
    default: 3
  smaller_ratio:
    description: Warn when the new backup is smaller than this share of the median.
    type: float
    default: 0.5
  larger_ratio:
    description: Warn when the new backup is larger than this multiple of the median.
    type: float
    default: 2.0
"""
