"""`crpo-bench originality train --data FILE --out DIR`: fit the originality scorer on human ratings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("originality", help="train the learned originality scorer")
    verbs = p.add_subparsers(dest="originality_verb", required=True)
    t = verbs.add_parser("train", help="fit on human-rated answers; writes weights.npz and card.json",
                         description="Data: an ocsai JSONL, a local MuCE-schema file (JSONL, CSV, parquet), "
                         "or 'hub' for MuCE's train split. Deterministic: the same data gives the same model.")
    t.add_argument("--data", required=True, help="training data (ocsai file, MuCE-schema file, or 'hub')")
    t.add_argument("--val", help="held-out data for the card's agreement figures (same formats; 'hub' = val split)")
    t.add_argument("--out", required=True, type=Path, help="output folder")
    t.add_argument("--method", choices=("transfer", "memory", "ridge"), default="transfer",
                   help="transfer (v5, default): v3's memory head for rated items, heads chosen by leave-one-task-type-"
                        "out transfer for the others (length, distance from the item, rarity among the corpus's "
                        "answers, raw and as z-scores within the corpus); memory (v3): v2's features plus the "
                        "ratings of the nearest rated answers to the same item; ridge (v2): ridge regression on "
                        "embedding features only")
    t.add_argument("--ridge", type=float, help="ridge strength of every head (default: each head's chosen on --data, "
                                               "by leave-one-task-type-out for transfer, by 5-fold cross-validation "
                                               "for memory and ridge)")
    t.add_argument("--embedder", help="sentence embedder (default: packaged all-MiniLM-L6-v2)")


def run(args: argparse.Namespace) -> int:
    from .. import muce
    from ..scoring.originality_training import train
    from ..scoring import Scorer, ScoringConfig

    # from the hub, MuCE's train and val splits; a local file is used whole
    train_rows = muce.read_rated(args.data, "train" if args.data == "hub" else None)
    val_rows = muce.read_rated(args.val, "val" if args.val == "hub" else None) if args.val else None
    scorer = Scorer(ScoringConfig(embedder=args.embedder, progress=True))
    model = train(train_rows, val_rows, scorer, ridge=args.ridge, data_name=Path(args.data).name,
                  method=args.method)
    model.save(args.out)
    print(json.dumps(model.card, indent=1))
    return 0
