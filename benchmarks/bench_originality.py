"""Originality scoring throughput: answers per second, v2 to v5, embeddings included.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_originality.py [--repeats 3]

Scores the 1,263 answers of ../shared/data/ocsai1/alltests_val.jsonl (an empty embedding
cache each time, so MiniLM embeds every answer and item) and prints the median wall time
of --repeats runs per model, the answers per second, and each one's cost relative to v2.
One corpus per item (as `validate` scores), so v4 and v5 compute each answer's rarity among the
others of its item.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from crpo_bench import Scorer, ScoringConfig, muce
from crpo_bench.scoring.scorer import _load_originality

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocsai1" / "alltests_val.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = muce.read_rated(args.data)
    answers, items = [r["Response"] for r in rows], [r["Prompt"] for r in rows]
    tasks = [muce.task_slug(r["TasksNamesFull"]) for r in rows]
    corpora = [f"{t}\t{i}" for t, i in zip(tasks, items)]
    Scorer(ScoringConfig()).embedder  # loaded once per process (shared): model loading is not scoring
    seconds = {}
    for name in ("v2", "v3", "v4", "v5"):
        _load_originality(name)
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                scorer = Scorer(ScoringConfig(originality_model=name, cache_path=Path(tmp) / "cache.sqlite"))
                start = time.perf_counter()
                scorer.score(answers, corpus_ids=corpora, items=items, tasks=tasks, metrics=["originality"])
                runs.append(time.perf_counter() - start)
        seconds[name] = statistics.median(runs)
        print(f"{name}: {len(rows)} answers in {seconds[name]:.2f} s (median of {args.repeats}): "
              f"{len(rows) / seconds[name]:.0f} answers/s")
    print("; ".join(f"{name} / v2 time: {seconds[name] / seconds['v2']:.2f}" for name in ("v3", "v4", "v5")))


if __name__ == "__main__":
    main()
