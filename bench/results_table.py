# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print the Markdown tables of a bench_all.py results file (the README's Benchmarks figures).

A ratio's Floor is the same ratio of the raw pipeline run as the one task of a playbook
(bench_all.py's FLOOR_PLAYBOOK): a target below it cannot be met by any playbook on that machine.

Usage: python bench/results_table.py [tests/output/bench/results.json]
"""

from __future__ import annotations

import json
import os
import statistics
import sys

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "output", "bench", "results.json")


def seconds(figure: object) -> str:
    if isinstance(figure, dict):
        rounds = figure.get("rounds") or []
        if not rounds:
            return "-"
        return "%.1f s (%s)" % (statistics.median(rounds), ", ".join("%.1f" % r for r in rounds))
    if isinstance(figure, (int, float)):
        return "%.1f s" % figure
    return "-" if figure is None else str(figure)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    print("Run %s to %s, %s CPUs, load average %s at the start and %s at the end; %s round(s)."
          % (results.get("started"), results.get("finished"), machine.get("cpus"),
             " / ".join("%.1f" % x for x in machine.get("loadavg_start", [])),
             " / ".join("%.1f" % x for x in machine.get("loadavg_end", [])), settings.get("rounds")))
    print()
    print("| Section | What | Median (rounds) |")
    print("|---|---|---|")
    for section, figures in results.get("sections", {}).items():
        for label, figure in figures.items():
            print("| %s | %s | %s |" % (section, label.replace("|", "\\|"), seconds(figure)))
    print()
    print("| Ratio | Median | Rounds | Target | | Floor |")
    print("|---|---|---|---|---|---|")
    for row in results.get("ratios", []):
        median = "-" if row.get("median") is None else "%.2f" % row["median"]
        rounds = ", ".join("%.2f" % r for r in row.get("rounds", []))
        verdict = "not available" if row.get("met") is None else ("MET" if row["met"] else "NOT MET")
        target = "-" if row.get("target") is None else "<= %s" % row["target"]
        floor = "-" if row.get("floor") is None else "%.2f" % row["floor"]
        shown = verdict if row.get("target") is not None else ""
        print("| %s | %s | %s | %s | %s | %s |" % (row["ratio"].replace("|", "\\|"), median, rounds, target, shown, floor))
    if results.get("peak_rss_mb"):
        print()
        print("| Module process | Peak RSS, large data (MB) | small data (MB) |")
        print("|---|---|---|")
        for module, peaks in sorted(results["peak_rss_mb"].items()):
            print("| %s | %s | %s |" % (module, "-" if peaks.get("large") is None else "%.1f" % peaks["large"],
                                        "-" if peaks.get("small") is None else "%.1f" % peaks["small"]))
    for label, why in results.get("unavailable", {}).items():
        print("\nNot available: %s: %s" % (label, why))


if __name__ == "__main__":
    main()
