"""`crpo-bench`: the command line. Each verb lives in crpo_bench/commands/."""

from __future__ import annotations

import argparse
import sys

from .commands import check, equivalence, leaderboard, models, noveltybench, originality, run, score, serve, validate
from .jsonl import InputError
from .models import ModelLoadError

VERBS = {"score": score, "serve": serve, "noveltybench": noveltybench, "originality": originality,
         "equivalence": equivalence, "models": models,
         "validate": validate, "run": run, "leaderboard": leaderboard, "check": check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crpo-bench", description="Measure LLM creativity.")
    subparsers = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS.values():
        verb.add_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return VERBS[args.verb].run(args)
    except (InputError, ModelLoadError, ValueError) as err:
        print(f"crpo-bench {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
