"""`crpo-bench import SOURCE --model NAME`: a published NoveltyBench evaluation as a leaderboard row.

SOURCE is an evaluation folder as NoveltyBench publishes it (v1.0: scores.jsonl or
partitions.jsonl and summary.json; v1.1: generations.jsonl and v1.1/{partitions,scores}.jsonl),
or a JSONL file of v1.0 rows (NoveltyBench's human answers). It writes
OUT/NAME/TASK.json, a result that `leaderboard` and `check` read like any other:

- *reported*, the reference judge's figures kept as published: `distinct_reported` (classes
  per prompt, counted from each `partition`) and `utility_reported`;
- *measured* by crpo-bench on the same generations, each prompt's answers one corpus:
  `distinct` (classes by our offline judge, with the short-text rule or, when the published
  partitions contradict it as those made before 2025-03-19 do, without it: provenance says
  which, and how many verdicts on two short texts it read), `novelty`, `diversity`, `surprise` (unless
  `--lm none`) and the n-gram diversities of each prompt's answers;
- each with its standard error over prompts; provenance (source, file hashes, reference judge
  and metric version, kind `published`) in the result and its metric card.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ..run.runner import NAME_PATTERN, NAME_RULE

REFERENCE_JUDGES = {"1.0": "yimingzhang/deberta-v3-large-generation-similarity (NoveltyBench v1.0)",
                    "1.1": "an LLM judge (NoveltyBench v1.1)"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("import", help="a published NoveltyBench evaluation as a leaderboard result",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="evaluation folder (v1.0 or v1.1) or a JSONL file of v1.0 rows")
    p.add_argument("--model", required=True, help="the row's name (a safe file name: it becomes a folder)")
    p.add_argument("--out", type=Path, default=Path("leaderboard/results"), help="results folder")
    p.add_argument("--task", default="noveltybench_curated", help="task name of the row (default noveltybench_curated)")
    p.add_argument("--baseline", action="store_true", help="mark the row a baseline (an API model, people)")
    p.add_argument("--equivalence", default="surrogate", help="our judge for `distinct` (default surrogate)")
    p.add_argument("--lm", help="LM for surprise (default: packaged SmolLM2); 'none' leaves surprise out")


def run(args: argparse.Namespace) -> int:
    from .. import noveltybench as nb
    from ..scoring.card import metric_card
    from ..jsonl import check_writable, json_line, write_text_atomic
    from ..noveltybench.published import read_published
    from ..scoring import Scorer, ScoringConfig, counted_mean

    if not NAME_PATTERN.fullmatch(args.model):
        raise ValueError(f"--model {args.model!r}: it names a folder, so it must be {NAME_RULE}")
    if args.equivalence not in nb.BACKENDS:
        raise ValueError(f"--equivalence {args.equivalence!r}: choose one of {nb.BACKENDS}")
    published = read_published(args.source)  # every row checked before any model loads
    target = args.out / args.model / f"{args.task}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    check_writable(target, "result")
    surprise = (args.lm or "").lower() != "none"
    config = ScoringConfig(lm=args.lm if surprise else None, progress=True)
    scorer = Scorer(config)
    texts = [g for p in published.prompts for g in p.generations]
    ids = [p.id for p in published.prompts for _ in p.generations]
    prompts = [p.prompt for p in published.prompts for _ in p.generations]
    metrics = ["novelty", "diversity", "ngram_diversity"] + (["surprise"] if surprise else [])
    scored = scorer.score(texts, corpus_ids=ids, prompts=prompts, metrics=metrics)
    embed = lambda batch: scorer.embed(batch, "embedding generations", config.text_batch_size)  # noqa: E731
    # whether the reported partitions followed the short-text rule, read from their own
    # verdicts: a surrogate judge then does the same, so reported and measured are comparable
    agreeing, compared = nb.short_rule_counts([(p.generations, nb.canonical(p.partition)) for p in published.prompts])
    short_rule = agreeing == compared  # as rules.made_with_short_rule: no such verdict, the rule (today's code)
    judge = nb.make_equivalence(args.equivalence, texts, embed, short_rule=short_rule)
    per_prompt: dict[str, list[float]] = {"distinct_reported": published.classes,
                                          "distinct": [len(set(nb.partition(p.generations, judge)))
                                                       for p in published.prompts]}
    utilities = [p.utility for p in published.prompts if p.utility is not None]
    if utilities:
        per_prompt["utility_reported"] = utilities
    by_prompt: dict[str, list[dict]] = {}
    for pid, row in zip(ids, scored.rows):
        by_prompt.setdefault(pid, []).append(row)
    for field in ("novelty", "diversity", *(["surprise"] if surprise else [])):
        values = [counted_mean(by_prompt[p.id], field) for p in published.prompts]
        per_prompt[field] = [v for v in values if v is not None]
    for n in range(1, 6):
        values = [scored.corpora[p.id].get(f"ngram_diversity_{n}") for p in published.prompts]
        per_prompt[f"ngram_diversity_{n}"] = [v for v in values if v is not None and math.isfinite(v)]
    results = {"alias": args.task}
    for field, values in per_prompt.items():
        if values:
            results[f"{field},samples"] = float(np.mean(values))
            results[f"{field}_stderr,samples"] = float(np.std(values, ddof=1) / math.sqrt(len(values))) \
                if len(values) > 1 else None
    provenance = {"kind": "published", "source": str(args.source), "files": published.files,
                  "reference_judge": REFERENCE_JUDGES.get(published.version, f"NoveltyBench v{published.version}"),
                  "metric_version": published.version, "reference_short_rule": short_rule,
                  "reference_short_text_verdicts": {"compared": compared, "agreeing_with_rule": agreeing},
                  "published_model": published.model,
                  "published_summary": published.summary, "prompts": len(published.prompts)}
    samples = sorted({len(p.generations) for p in published.prompts})
    card = metric_card(config, surprise=surprise, corpus="prompt",
                       samples_per_prompt=samples[0] if len(samples) == 1 else samples,
                       equivalence=nb.recorded_backend(args.equivalence))
    card["provenance"] = provenance
    higher = {f: True for f in per_prompt}  # every field here: more classes, more novel, more surprising
    result = {"results": {args.task: results}, "higher_is_better": {args.task: higher},
              "crpo_bench": {"model": args.model, "baseline": args.baseline, "kind": "published", "card": card,
                             "provenance": provenance}}
    write_text_atomic(target, json.dumps(result, indent=1, allow_nan=False) + "\n")
    shown = {f: round(results[f"{f},samples"], 4) for f in per_prompt if f"{f},samples" in results}
    print(json_line({"model": args.model, "task": args.task, "version": published.version, **shown}))
    print(f"wrote {target}")
    return 0
