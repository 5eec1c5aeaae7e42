"""Does originality transfer? The three cross-validations of v4 on the shared ratings, and how
its rarity signals hold up when a held-out task type's items have fewer answers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/originality_transfer.py [--data FILE] [--sizes 25 50 100]

1. Spearman with people within each task type, for v4 fitted in each cross-validation (random
   split of the answers, each item held out, each task type held out), v4 without its rarity
   signals (what answers in corpora of fewer than rarity.MIN_PEERS others get), and the simple
   signals (length, semantic distance, diversity);
2. leave-one-task-type-out again, with the held-out type's rarity features computed among a
   random `size` of the other answers to the item (a smaller study than the training data):
   v4 fitted on full corpora, scoring smaller ones.
Also prints the scoring throughput of the packaged v4 (answers per second, embeddings included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from crpo_bench import Scorer, ScoringConfig, muce, text
from crpo_bench.metrics import rarity
from crpo_bench.metrics.originality import transfer_features
from crpo_bench.scoring.originality_training import (TransferData, choose_ridges, embed, transfer_rows, transfer_validation,
                                             word_counts)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocsai1"


def subsampled_peers(data: TransferData, answers: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Each answer's rarity features among a random `size` of the other answers to its item."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(answers), len(rarity.FEATURES)))
    for key in sorted(set(data.items)):
        idx = np.flatnonzero(data.items == key)
        for i in idx:
            others = idx[idx != i]
            pick = rng.choice(others, min(size, len(others)), replace=False)
            group = np.concatenate([[i], pick])
            features, _ = rarity.peer_features(answers[group], [0] * len(group), min_peers=1)
            out[i] = features[0]
    return out


def smaller_corpora(data: TransferData, rows, answers, items, sizes) -> list[list[str]]:
    ridges, _ = choose_ridges(data)
    tasks = sorted(set(data.tasks))
    table = []
    for size in sizes:
        peers = transfer_features(answers, items, word_counts(rows), subsampled_peers(data, answers, size))
        per = {}
        for task in tasks:
            held = data.tasks == task
            _, head = data.fit(~held, ridges)
            per[task] = float(np.corrcoef(*(np.argsort(np.argsort(v)) for v in (head.predict(peers[held]),
                                                                                  data.y[held])))[0, 1])
        table.append([f"{size} other answers per item", *(f"{per[t]:+.3f}" for t in tasks),
                      f"{np.mean(list(per.values())):+.3f}"])
    return table


def throughput(repeats: int) -> float:
    rows = muce.read_rated(SHARED / "alltests_val.jsonl")
    answers, items = [r["Response"] for r in rows], [r["Prompt"] for r in rows]
    tasks = [muce.task_slug(r["TasksNamesFull"]) for r in rows]
    corpora = [f"{t}\t{i}" for t, i in zip(tasks, items)]
    seconds = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:  # an empty embedding cache: every answer embedded
            scorer = Scorer(ScoringConfig(cache_path=Path(tmp) / "cache.sqlite"))
            start = time.perf_counter()
            scorer.score(answers, corpus_ids=corpora, items=items, tasks=tasks, metrics=["originality"])
            seconds.append(time.perf_counter() - start)
    return len(rows) / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "alltests_train.jsonl")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [r for r in muce.read_rated(args.data) if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    scorer = Scorer(ScoringConfig())
    answers, items = embed(rows, scorer)
    data = TransferData.build(rows, answers, items, np.array([r["facsco_grm_scaled"] for r in rows]))
    ridges, _ = choose_ridges(data)
    header, table = transfer_rows(transfer_validation(data, ridges))
    print(f"{len(rows)} rated answers of {args.data}, {len(set(data.items))} items; Spearman within each task type\n")
    print(tabulate(table, headers=header, disable_numparse=True))
    print("\nheld-out task type, its rarity features among fewer answers per item (fitted on full corpora)\n")
    print(tabulate(smaller_corpora(data, rows, answers, items, args.sizes), disable_numparse=True,
                   headers=["corpus of the held-out type", *sorted(set(data.tasks)), "mean"]))
    rate = throughput(args.repeats)
    print(f"\nthroughput: {rate:.0f} answers/s (alltests_val, embeddings included, median of {args.repeats})")


if __name__ == "__main__":
    main()
