"""Does the offline NoveltyBench judge count classes as the reference does on models it never saw?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/judge_transfer.py [--packaged] [--pairs]

Sources in ../shared/data/noveltybench, each a regime of its own, all partitioned by the
reference classifier:
- gemini: Gemini-1.5-pro's 100 curated prompts (few classes: 1.83 per prompt), partitioned
  before NoveltyBench had its short-text rule;
- crpo: the CrPO paper's Llama-3.1-8B-cre on the same prompts (many classes: 8.30), with the rule;
- humans: NoveltyBench's 8 human answers to each curated prompt (6.58 classes), with the rule.
`--pairs` adds the 1,000 human-labelled answer pairs of train.jsonl as a fourth source (people's
labels, not the classifier's verdicts; the packaged judge leaves them out).

Leave one model out: the surrogate's whole fitting procedure (setting and threshold chosen on
out-of-fold probabilities, surrogate_training.fit) runs on the other sources, and its mean
classes per prompt on the held-out one are compared with the reference's, the held-out
source partitioned with the short-text rule or without it as its reference was. `--packaged`
also prints the packaged surrogate's figures on each source (and on Gemini with the rule, as
NoveltyBench's code would partition it today) and its accuracy on the 100 human-labelled
pairs of val.jsonl (never fitted on). Embeddings come from the embedding cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crpo_bench.noveltybench import surrogate as es
from crpo_bench.noveltybench import surrogate_training as et
from crpo_bench.models import minilm_tokenizer
from crpo_bench.noveltybench.published import read_published
from crpo_bench.scoring import Scorer, ScoringConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "noveltybench"
MODELS = {"gemini": DATA / "published/2025-03-27_gemini-1.5-pro/nb-curated",
          "crpo": DATA / "published/2025-11-21_CrPO-llama-3.1-8b-instruct-cre/nb-curated",
          "humans": DATA / "equivalence/humans.jsonl"}
PAIRS = DATA / "equivalence/train.jsonl"  # val.jsonl stays out: the packaged judge is measured on it
VAL = DATA / "equivalence/val.jsonl"


def sources(pairs: bool) -> dict[str, list[dict]]:
    rows = {name: [{"generations": p.generations, "partition": _renumbered(p.partition)}
                   for p in read_published(path).prompts] for name, path in MODELS.items()}
    if pairs:
        rows["pairs"] = et.read_pairs(PAIRS)
    return rows


def _renumbered(labels):
    order = {}
    return [order.setdefault(c, len(order)) for c in labels]


def line(name, prompts, trees, threshold) -> str:
    labels = [p.partition(trees.probability(p.X), threshold) for p in prompts]
    ours, ref = np.mean([max(x) + 1 for x in labels]), np.mean([max(p.reference) + 1 for p in prompts])
    ari = np.mean([et.adjusted_rand_index(x, p.reference) for x, p in zip(labels, prompts)])
    rule = "with" if prompts[0].short_rule else "without"
    return (f"{name} ({rule} the short-text rule): {ours:.2f} classes against the reference's {ref:.2f} "
            f"({ours / ref - 1:+.1%}), mean ARI {ari:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packaged", action="store_true", help="also the packaged surrogate's figures")
    parser.add_argument("--pairs", action="store_true", help="fit on the human-labelled pairs too")
    args = parser.parse_args()
    rows = sources(args.pairs)
    scorer = Scorer(ScoringConfig(progress=True))
    texts = [g for group in rows.values() for r in group for g in r["generations"]]
    val = [json.loads(line) for line in VAL.read_text().splitlines()]
    texts += [r[k] for r in val for k in ("generation_0", "generation_1")]
    views = es.make_views(texts, lambda t: scorer.embed(t, "embedding", 16), minilm_tokenizer())
    prompts = {name: [et.Prompt(r, views, name, et.source_short_rule(group)) for r in group]
               for name, group in rows.items()}
    if args.packaged:
        model = es.SurrogateModel.load(es.packaged_path())
        for name in MODELS:
            print(f"packaged {es.packaged_path().name} on " + line(name, prompts[name], model.trees, model.threshold))
        ruled = [et.Prompt(r, views, "gemini", short_rule=True) for r in rows["gemini"]]
        print(f"packaged {es.packaged_path().name} on " + line("gemini", ruled, model.trees, model.threshold))
        judge = es.SurrogateJudge(model, views, short_rule=True)
        said = [judge(r["generation_0"], r["generation_1"]) for r in val]
        truth = [bool(r["similar"]) for r in val]
        majority = max(np.mean(truth), 1 - np.mean(truth))
        print(f"val.jsonl: {np.mean([a == b for a, b in zip(said, truth)]):.3f} accuracy on {len(val)} human-labelled "
              f"pairs (always the commoner label: {majority:.3f}; 'same' said to {np.mean(said):.2f})", flush=True)
    for held in MODELS:
        train = [p for name, ps in prompts.items() if name != held for p in ps]
        trees, threshold, setting, _ = et.fit(train)
        print(f"held out, fitted on {[n for n in prompts if n != held]} (setting {setting}, threshold {threshold}): "
              + line(held, prompts[held], trees, threshold), flush=True)


if __name__ == "__main__":
    main()
