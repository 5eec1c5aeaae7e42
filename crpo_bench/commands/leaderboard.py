"""`crpo-bench leaderboard`: results -> LEADERBOARD.md and index.html."""

from __future__ import annotations

from pathlib import Path

from .. import leaderboard
from ..jsonl import write_text_atomic


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="build leaderboard/LEADERBOARD.md and index.html from results")
    p.add_argument("--results", default="leaderboard/results", help="results folder (default leaderboard/results)")
    p.add_argument("--out", default="leaderboard", help="folder for LEADERBOARD.md and index.html")


def run(args) -> int:
    entries, notes = leaderboard.separate_incomparable(leaderboard.read_results(args.results))
    out = Path(args.out)
    text = leaderboard.markdown(entries, notes)
    write_text_atomic(out / "LEADERBOARD.md", text + "\n")
    write_text_atomic(out / "index.html", leaderboard.page(entries))
    print(text)
    print(f"wrote {out / 'LEADERBOARD.md'} and {out / 'index.html'}")
    return 0
