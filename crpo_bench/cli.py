"""`crpo-bench`: the command line. Each verb lives in crpo_bench/commands/."""

from __future__ import annotations

import argparse
import errno
import sys

from .commands import (check, equivalence, import_published, leaderboard, models, noveltybench, originality, run,
                       score, serve, validate)
from .jsonl import InputError
from .models import ModelLoadError

VERBS = {"score": score, "serve": serve, "noveltybench": noveltybench, "originality": originality,
         "equivalence": equivalence, "models": models, "import": import_published,
         "validate": validate, "run": run, "leaderboard": leaderboard, "check": check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crpo-bench", description="Measure LLM creativity.")
    subparsers = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS.values():
        verb.add_parser(subparsers)
    args = parser.parse_args(argv)
    return run_verb(f"crpo-bench {args.verb}", lambda: VERBS[args.verb].run(args))


def run_verb(name: str, run) -> int:
    """Run a command; what ends it early is one line on stderr and an exit code, never a
    traceback: bad input 2, a full disk 1, Ctrl-C 130. Every output is written atomically, so
    an interrupted command leaves the files it had finished and nothing half-written."""
    try:
        return run()
    except (InputError, ModelLoadError, ValueError, FileNotFoundError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"{name}: error: no space left on the device{where}; free some and run again (finished outputs "
              "are complete, the one being written was not kept)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
