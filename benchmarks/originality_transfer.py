"""Does originality transfer? The three cross-validations of v5 on the shared ratings, and how
its rarity signals hold up when a held-out task type's items have fewer answers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/originality_transfer.py [--data FILE] [--sizes 25 50 100]

1. Spearman with people within each task type, for v5 fitted in each cross-validation (random
   split of the answers, each item held out, each task type held out), v5 without its rarity
   signals (what answers in corpora of fewer than rarity.MIN_PEERS others get), and the simple
   signals (length, semantic distance, diversity);
2. leave-one-task-type-out again, the held-out type's answers scored in smaller studies: each
   item's answers split at random into groups of `size` + 1, rarity features within each group
   (v5 fitted on full corpora, scoring smaller ones).
Also prints the scoring throughput of the packaged v5 (answers per second, embeddings included).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats
from tabulate import tabulate

from crpo_bench import Scorer, ScoringConfig, muce, text
from crpo_bench.metrics import rarity
from crpo_bench.metrics.originality import transfer_features
from crpo_bench.scoring.originality_training import (TransferData, choose_ridges, embed, transfer_rows, transfer_validation,
                                             word_counts)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocsai1"


def smaller_studies(data: TransferData, answers: np.ndarray, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """As if each item had been asked in smaller studies: its answers split at random into disjoint
    groups of size + 1, each answer's rarity features (raw, then z-scores) taken within its group.
    (features, in_a_study): answers left over after the last whole group are in none."""
    rng = np.random.default_rng(seed)
    raw, study = np.zeros((len(answers), len(rarity.FEATURES))), np.full(len(answers), -1)
    for key in sorted(set(data.items)):
        idx = rng.permutation(np.flatnonzero(data.items == key))
        for start in range(0, len(idx) - size, size + 1):
            group = idx[start:start + size + 1]
            raw[group], _ = rarity.peer_features(answers[group], [0] * len(group), min_peers=1)
            study[group] = study.max() + 1
    in_a_study = study >= 0
    return np.hstack([raw, rarity.within_corpus_z(raw, study, in_a_study)]), in_a_study


def smaller_corpora(data: TransferData, rows, answers, items, sizes) -> list[list[str]]:
    """v5, and v4's features (v5 without the z-scores; ridges chosen per head as v5's are, so not the packaged
    v4's single ridge), each fitted on full corpora."""
    width = len(rarity.FEATURES)
    v4 = dataclasses.replace(data, peers=data.peers[:, :2 + width])  # [length, distance, raw rarity]
    tasks = sorted(set(data.tasks))
    table = []
    for size in sizes:
        studies, in_a_study = smaller_studies(data, answers, size)
        peers = transfer_features(answers, items, word_counts(rows), studies[:, :width], studies[:, width:])
        for name, fitted in (("v5", data), ("v4 features", v4)):
            ridges, _ = choose_ridges(fitted)
            per = {}
            for task in tasks:
                held = data.tasks == task
                _, head = fitted.fit(~held, ridges)
                scored = held & in_a_study
                per[task] = float(stats.spearmanr(head.predict(peers[scored][:, :fitted.peers.shape[1]]),
                                                  data.y[scored]).statistic)
            table.append([f"{name}, studies of {size + 1} answers per item", *(f"{per[t]:+.3f}" for t in tasks),
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
    print("\nheld-out task type, scored in smaller studies of its items (fitted on full corpora)\n")
    print(tabulate(smaller_corpora(data, rows, answers, items, args.sizes), disable_numparse=True,
                   headers=["corpus of the held-out type", *sorted(set(data.tasks)), "mean"]))
    rate = throughput(args.repeats)
    print(f"\nthroughput: {rate:.0f} answers/s (alltests_val, embeddings included, median of {args.repeats})")


if __name__ == "__main__":
    main()
