"""Speed of the offline NoveltyBench equivalence backends, embeddings included.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_equivalence.py [--data FILE] [--repeats 3]

Partitions every prompt of a file in the reference format (default: the Gemini calibration
half, 500 generations) with the embedding and surrogate backends from scratch (no embedding
cache), and prints the median seconds, generations per second and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from crpo_bench import noveltybench as nb
from crpo_bench.noveltybench.surrogate_training import read_partitions
from crpo_bench.models import load_embedder

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = read_partitions(args.data)
    generations = [g for r in rows for g in r["generations"]]
    embedder = load_embedder()
    embed = lambda texts: embedder.encode(texts, batch_size=16).astype(np.float64)  # noqa: E731
    medians = {}
    for backend in ("embedding", "surrogate"):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            equivalent = nb.make_equivalence(backend, generations, embed)
            for row in rows:
                nb.partition(row["generations"], equivalent)
            seconds.append(time.perf_counter() - start)
        medians[backend] = float(np.median(seconds))
        print(f"{backend:10s} median {medians[backend]:.2f} s for {len(generations)} generations: "
              f"{len(generations) / medians[backend]:.1f} generations/s")
    print(f"surrogate / embedding time: {medians['surrogate'] / medians['embedding']:.2f}")


if __name__ == "__main__":
    main()
