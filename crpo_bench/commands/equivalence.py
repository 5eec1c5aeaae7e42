"""`crpo-bench equivalence train --data FILE --out DIR`: fit the offline NoveltyBench equivalence
surrogate on a reference classifier's partitions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("equivalence", help="train the offline NoveltyBench equivalence surrogate")
    verbs = p.add_subparsers(dest="equivalence_verb", required=True)
    t = verbs.add_parser("train", help="fit on reference partitions; writes trees.npz and card.json",
                         description="Data: a NoveltyBench partitions or scores file (id, generations, partition), "
                         "such as ../shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl. "
                         "Deterministic: the same data gives the same model. The card holds the agreement of the "
                         "whole procedure on held-out prompts (cross-validation over prompts).")
    t.add_argument("--data", required=True, type=Path, help="reference partitions (JSONL)")
    t.add_argument("--out", required=True, type=Path, help="output folder")
    t.add_argument("--splits", type=int, default=10,
                   help="random 5-fold splits of the prompts for the card's cross-validated agreement "
                        "(default 10; 0 skips it)")


def run(args: argparse.Namespace) -> int:
    from ..equivalence_surrogate import make_views
    from ..equivalence_training import read_partitions, train
    from ..models import minilm_tokenizer
    from ..scoring import Scorer, ScoringConfig

    if args.splits < 0:
        raise ValueError(f"--splits {args.splits}: must be 0 or more")
    rows = read_partitions(args.data)
    scorer = Scorer(ScoringConfig(progress=True))
    views = make_views([g for r in rows for g in r["generations"]],
                       lambda texts: scorer.embed(texts, "embedding generations", scorer.config.text_batch_size),
                       minilm_tokenizer())
    model = train(rows, views, args.data.name, args.data.read_bytes(), seeds=args.splits, progress=True)
    model.save(args.out)
    print(json.dumps(model.card, indent=1))
    return 0
