"""`crpo-bench leaderboard`: results -> LEADERBOARD.md and index.html."""

from __future__ import annotations

import sys
from pathlib import Path

from ..results import leaderboard
from ..jsonl import write_texts_atomic


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="build leaderboard/LEADERBOARD.md and index.html from results")
    p.add_argument("--results", default="leaderboard/results", help="results folder (default leaderboard/results)")
    p.add_argument("--out", default="leaderboard", help="folder for LEADERBOARD.md and index.html")


def run(args) -> int:
    entries, notes = leaderboard.separate_incomparable(leaderboard.read_results(args.results))
    out = Path(args.out)
    # Both rendered before either is written: a failure while drawing the page must not
    # leave a new LEADERBOARD.md beside an old index.html.
    text = leaderboard.markdown(entries, notes)
    page = leaderboard.page(entries, notes)
    try:
        write_texts_atomic({out / "LEADERBOARD.md": text + "\n", out / "index.html": page})
    except OSError as err:  # --out names a file, a folder we may not write, a full disk
        print(f"crpo-bench leaderboard: error: {err.filename or out}: cannot write ({err.strerror or err})",
              file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {out / 'LEADERBOARD.md'} and {out / 'index.html'}")
    return 0
