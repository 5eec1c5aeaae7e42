"""`crpo-bench check`: exit 0 when no metric regressed against the baseline, 1 when one
did (with a table of them; with --two-sided, also when one moved beyond tolerance the good
way), 2 when the results or the baseline cannot be used."""

from __future__ import annotations

import json
import sys

from .. import leaderboard, regression
from ..jsonl import write_text_atomic


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("check", help="regression check of results against a stored baseline",
                              description=regression.__doc__)
    p.add_argument("--baseline", required=True, help="baseline JSON file")
    p.add_argument("--results", default="leaderboard/results", help="results folder (default leaderboard/results)")
    p.add_argument("--update", action="store_true", help="write the current results as the new baseline")
    p.add_argument("--two-sided", action="store_true",
                   help="fail on a move beyond tolerance in either direction (fixed, seeded runs such as CI's demo)")


def _rows(comparisons) -> list[list[str]]:
    return [[c.key, f"{c.baseline:.6g}", "-" if c.value is None else f"{c.value:.6g}",
             "-" if c.value is None else f"{c.value - c.baseline:+.3g}", f"{c.allowed:.3g}", c.status]
            for c in comparisons]


def run(args) -> int:
    from tabulate import tabulate

    try:
        entries = leaderboard.read_results(args.results)
    except leaderboard.ResultsError as err:
        print(f"crpo-bench check: error: {err}", file=sys.stderr)
        return 2
    if args.update:
        try:
            tolerance = regression.read_baseline(args.baseline).get("tolerance")
        except ValueError:
            tolerance = None
        write_text_atomic(args.baseline, json.dumps(regression.baseline_from(entries, tolerance), indent=2) + "\n")
        print(f"wrote {len(entries)} metrics to {args.baseline}")
        return 0
    try:
        baseline = regression.read_baseline(args.baseline)
    except ValueError as err:
        print(f"crpo-bench check: error: {err}", file=sys.stderr)
        return 2
    mismatched = regression.card_mismatches(entries, baseline)
    if mismatched:
        print(f"crpo-bench check: error: results and {args.baseline} were made under different settings, so their "
              "metrics cannot be compared:\n  " + "\n  ".join(mismatched), file=sys.stderr)
        return 2
    results = regression.compare(entries, baseline, two_sided=args.two_sided)
    bad = [c for c in results if c.status in regression.FAILING]
    better = [c for c in results if c.status == "better"]
    header = ["metric", "baseline", "now", "change", "allowed", "status"]
    if better:
        print(f"{len(better)} metric(s) improved beyond tolerance:")
        print(tabulate(_rows(better), header, tablefmt="github"))
    if bad:
        what = "moved further" if args.two_sided else "got worse"
        print(f"REGRESSION: {len(bad)} of {len(results)} metric(s) {what} than {args.baseline} allows:",
              file=sys.stderr)
        print(tabulate(_rows(bad), header, tablefmt="github"), file=sys.stderr)
        return 1
    print(f"no regression: {len(results)} metric(s) within tolerance of {args.baseline}")
    return 0
