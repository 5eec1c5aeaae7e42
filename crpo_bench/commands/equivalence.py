"""`crpo-bench equivalence train --data FILE... [--pairs FILE...] --out DIR`: fit the offline
NoveltyBench equivalence surrogate on a reference judge's partitions (and, optionally, human-labelled
pairs, which the packaged surrogate leaves out)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("equivalence", help="train the offline NoveltyBench equivalence surrogate")
    verbs = p.add_subparsers(dest="equivalence_verb", required=True)
    t = verbs.add_parser("train", help="fit on reference partitions; writes trees.npz and card.json",
                         description="Each file is a source: NoveltyBench partitions or scores files (id, "
                         "generations, partition), e.g. a published run's scores.jsonl, and human-labelled pair "
                         "files (generation_0, generation_1, similar), e.g. ../shared/data/noveltybench/"
                         "equivalence/train.jsonl. Deterministic: the same data gives the same model. The card "
                         "holds each source's class counts and, with two or more partition sources, each one's "
                         "figures when it is left out of the fit.")
    t.add_argument("--data", required=True, nargs="+", type=Path, help="reference partitions (JSONL), one source each")
    t.add_argument("--pairs", nargs="*", type=Path, default=[], help="human-labelled answer pairs (JSONL); people's labels, not the "
                   "classifier's verdicts: the packaged surrogate leaves them out")
    t.add_argument("--out", required=True, type=Path, help="output folder")
    t.add_argument("--no-held-out", action="store_true",
                   help="skip the leave-one-source-out figures (one extra fit per partition source)")


def run(args: argparse.Namespace) -> int:
    from ..noveltybench.surrogate import make_views
    from ..noveltybench.surrogate_training import read_pairs, read_partitions, source_name, train
    from ..jsonl import InputError
    from ..models import minilm_tokenizer
    from ..scoring import Scorer, ScoringConfig

    sources, data = {}, {}
    for path, read in [*((p, read_partitions) for p in args.data), *((p, read_pairs) for p in args.pairs)]:
        name = source_name(path)
        if name in sources:
            raise InputError(f"{path}: a second source named {name!r}; rename one of the files")
        sources[name], data[name] = read(path), path.read_bytes()
    partitions = [source_name(p) for p in args.data]
    scorer = Scorer(ScoringConfig(progress=True))
    views = make_views([g for rows in sources.values() for r in rows for g in r["generations"]],
                       lambda texts: scorer.embed(texts, "embedding generations", scorer.config.text_batch_size),
                       minilm_tokenizer())
    held_out = [] if args.no_held_out or len(partitions) < 2 else partitions
    model = train(sources, views, data, held_out, progress=True)
    model.save(args.out)
    print(json.dumps(model.card, indent=1))
    return 0
