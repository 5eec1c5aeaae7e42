"""`crpo-bench check`: exit 0 when no metric regressed against the baseline, 1 when one
did (with a table of them; with --two-sided, also when one moved beyond tolerance the good
way, or came out NaN or infinite), 2 when the results or the baseline cannot be used (each
problem as `FILE: field: what is wrong`). `--update` leaves NaN and Infinity out of the new
baseline and names each one."""

from __future__ import annotations

import json
import math
import sys

from ..results import leaderboard, regression
from ..jsonl import write_text_atomic


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("check", help="regression check of results against a stored baseline",
                              description=regression.__doc__)
    p.add_argument("--baseline", required=True, help="baseline JSON file")
    p.add_argument("--results", default="leaderboard/results", help="results folder (default leaderboard/results)")
    p.add_argument("--update", action="store_true", help="write the current results as the new baseline")
    p.add_argument("--two-sided", action="store_true",
                   help="fail on a move beyond tolerance in either direction (fixed, seeded runs such as CI's demo)")


def _number(value: float | None, spec: str) -> str:
    """A table cell; NaN and Infinity spelled as in JSON, a missing value as '-'."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return format(value, spec)


def _rows(comparisons) -> list[list[str]]:
    return [[c.key, _number(c.baseline, ".6g"), _number(c.value, ".6g"),
             _number(None if c.value is None else c.value - c.baseline, "+.3g"), _number(c.allowed, ".3g"), c.status]
            for c in comparisons]


def _error(message: str) -> int:
    print(f"crpo-bench check: error: {message}", file=sys.stderr)
    return 2


def _update(args, entries) -> int:
    """Write the results as the new baseline, keeping the old one's tolerances."""
    try:
        baseline = regression.baseline_from(entries, regression.tolerance_to_keep(args.baseline))
        text = json.dumps(baseline, indent=2, allow_nan=False) + "\n"  # strict JSON, always
    except ValueError as err:
        return _error(str(err))
    if not baseline["metrics"]:  # read_baseline refuses an empty one: never write it
        return _error(f"{args.results}: no finite metric values to record in {args.baseline}")
    try:
        write_text_atomic(args.baseline, text)
    except OSError as err:
        return _error(f"{args.baseline}: cannot write ({err.strerror or err})")
    _warn_unrecorded(regression.unrecordable(entries), args.baseline)
    print(f"wrote {len(baseline['metrics'])} metrics to {args.baseline}")
    return 0


def _warn_unrecorded(entries, baseline) -> None:
    """Name each value left out of the baseline: its metric will not be checked until a later
    --update records a finite value."""
    if entries:
        print(f"crpo-bench check: warning: {len(entries)} value(s) are not finite numbers and were left out of "
              f"{baseline}:\n  " + "\n  ".join(f"{e.where}: {_number(e.value, 'g')}" for e in entries),
              file=sys.stderr)


def _table(comparisons) -> str:
    from tabulate import tabulate

    # disable_numparse: tabulate would respell "NaN" as "nan" (and leave "Infinity" as is)
    return tabulate(_rows(comparisons), ["metric", "baseline", "now", "change", "allowed", "status"],
                    tablefmt="github", disable_numparse=True)


def run(args) -> int:
    try:
        entries = leaderboard.read_results(args.results)
    except leaderboard.ResultsError as err:
        return _error(str(err))
    if args.update:
        return _update(args, entries)
    try:
        baseline = regression.read_baseline(args.baseline)
    except ValueError as err:
        return _error(str(err))
    mismatched = regression.card_mismatches(entries, baseline)
    if mismatched:
        print(f"crpo-bench check: error: results and {args.baseline} were made under different settings, so their "
              "metrics cannot be compared:\n  " + "\n  ".join(mismatched), file=sys.stderr)
        return 2
    results = regression.compare(entries, baseline, two_sided=args.two_sided)
    bad = [c for c in results if c.status in regression.FAILING]
    better = [c for c in results if c.status == "better"]
    if better:
        print(f"{len(better)} metric(s) improved beyond tolerance:")
        print(_table(better))
    if bad:
        what = "moved further" if args.two_sided else "got worse"
        print(f"REGRESSION: {len(bad)} of {len(results)} metric(s) {what} than {args.baseline} allows:",
              file=sys.stderr)
        print(_table(bad), file=sys.stderr)
        return 1
    print(f"no regression: {len(results)} metric(s) within tolerance of {args.baseline}")
    return 0
