"""Peak memory of scoring one very long answer (issue: a single 5 MB response took 7 GB).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_long_response.py [--mb 5]

Scores one answer of about --mb megabytes with every offline metric (novelty, diversity,
themes, n-grams, surprise under the packaged SmolLM2, semantic distance, originality), once
with the default cap on answer length (ScoringConfig.max_response_chars) and once without a
cap but with the chunked logits, each in a fresh process, and prints peak RSS and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from crpo_bench import Scorer, ScoringConfig
mb, cap = float(sys.argv[1]), json.loads(sys.argv[2])
words = ["brick", "mural", "pigment", "garden", "window", "planter", "doorstop", "oven"]
text = " ".join(f"{words[i % 8]}{i % 997}" for i in range(int(mb * 1e6 / 8)))
start = time.perf_counter()
import dataclasses
capped = "max_response_chars" in {f.name for f in dataclasses.fields(ScoringConfig)}  # older code: no cap
config = ScoringConfig(max_response_chars=cap) if capped else ScoringConfig()
row = Scorer(config).score([text, "grind it into red pigment"], items=["brick", "brick"]).rows[0]
print(json.dumps({"chars": len(text), "cap": cap, "seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  "truncated_at": row.get("truncated_at"), "surprise": row["surprise"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--code", help="another checkout's folder to measure instead (e.g. a git worktree of "
                                       "an older commit); its crpo_bench is imported first")
    args = parser.parse_args()
    env = {**os.environ, **({"PYTHONPATH": args.code} if args.code else {})}
    for cap in ((None,) if args.code else (10_000, None)):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.mb), json.dumps(cap)], capture_output=True,
                             text=True, env=env)
        print(out.stdout.strip() or out.stderr[-2000:])


if __name__ == "__main__":
    main()
