"""Calibrate offline equivalence backends against the reference classifier's partitions.

    python benchmarks/calibrate_noveltybench.py [--data ../shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl]

For each backend setting, partitions every prompt's generations and prints the mean number
of classes (the reference's is 1.80) and the mean adjusted Rand index against the
reference partitions. The backends are those of crpo_bench/noveltybench.py: unigram
without the short-text rule (as in the reference), embedding with it (as the classifier it
stands in for). The embedding threshold there is the best of this sweep.
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

import numpy as np

from crpo_bench import noveltybench as nb
from crpo_bench.models import load_embedder

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl"


def adjusted_rand_index(a: list[int], b: list[int]) -> float:
    pairs = comb(len(a), 2)
    same_a = sum(comb(c, 2) for c in np.bincount(a))
    same_b = sum(comb(c, 2) for c in np.bincount(b))
    both = sum(comb(c, 2) for c in np.unique(np.array(a) * (max(b) + 1) + np.array(b), return_counts=True)[1])
    expected = same_a * same_b / pairs
    best = (same_a + same_b) / 2
    return 1.0 if best == expected else (both - expected) / (best - expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.open()]
    texts = sorted({g for r in rows for g in r["generations"]})
    embedder = load_embedder()
    vectors = dict(zip(texts, embedder.encode(texts, batch_size=8).astype(np.float64)))
    print(f"{len(rows)} prompts; reference mean classes {np.mean([max(r['partition']) + 1 for r in rows]):.2f}")
    settings = [("unigram", nb.UNIGRAM_THRESHOLD, nb.unigram_equivalence())]
    settings += [("embedding", t, nb.embedding_equivalence(vectors, t)) for t in np.arange(0.56, 0.97, 0.02)]
    for name, threshold, equivalent in settings:
        labels = [nb.partition(r["generations"], equivalent) for r in rows]
        classes = np.mean([max(lab) + 1 for lab in labels])
        ari = np.mean([adjusted_rand_index(lab, r["partition"]) for lab, r in zip(labels, rows)])
        print(f"{name:10s} threshold {threshold:.2f}: mean classes {classes:.2f}, mean ARI vs reference {ari:.3f}")


if __name__ == "__main__":
    main()
