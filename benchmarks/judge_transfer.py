"""Does the offline NoveltyBench judge count classes as the reference does on models it never saw?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/judge_transfer.py [--packaged]

Sources in ../shared/data/noveltybench, each a regime of its own:
- gemini: Gemini-1.5-pro's 100 curated prompts with the reference classifier's partitions
  (few classes: 1.83 per prompt);
- crpo: the CrPO paper's Llama-3.1-8B-cre on the same prompts (many classes: 8.30);
- pairs: 1,000 + 100 answer pairs from about 20 models labelled by people (the data the
  reference classifier was trained on), each pair a two-answer "prompt".

Leave one model out: the surrogate's whole fitting procedure (setting and threshold chosen on
out-of-fold probabilities, equivalence_training.fit) runs on the other sources, and its mean
classes per prompt on the held-out model are compared with the reference's. `--packaged` also
prints the packaged surrogate's figures on each published run, its accuracy on the 100
human-labelled pairs of val.jsonl (never fitted on) and its agreement with the human
partitions of people's own answers (humans.jsonl). Embeddings come from the embedding cache.
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
          "crpo": DATA / "published/2025-11-21_CrPO-llama-3.1-8b-instruct-cre/nb-curated"}
PAIRS = (DATA / "equivalence/train.jsonl",)  # val.jsonl stays out: the packaged judge is measured on it
VAL, HUMANS = DATA / "equivalence/val.jsonl", DATA / "equivalence/humans.jsonl"


def sources() -> dict[str, list[dict]]:
    rows = {name: [{"generations": p.generations, "partition": _renumbered(p.partition)}
                   for p in read_published(path).prompts] for name, path in MODELS.items()}
    rows["pairs"] = [{"generations": [r["generation_0"], r["generation_1"]], "partition": [0, 1 - int(r["similar"])]}
                     for path in PAIRS for r in map(json.loads, path.read_text().splitlines())
                     if r["generation_0"].strip() and r["generation_1"].strip()]
    return rows


def _renumbered(labels):
    order = {}
    return [order.setdefault(c, len(order)) for c in labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packaged", action="store_true", help="also the packaged surrogate's figures")
    args = parser.parse_args()
    rows = sources()
    scorer = Scorer(ScoringConfig(progress=True))
    texts = [g for group in rows.values() for r in group for g in r["generations"]]
    views = es.make_views(texts, lambda t: scorer.embed(t, "embedding", 16), minilm_tokenizer())
    prompts = {name: [et.Prompt(r, views, name) for r in group] for name, group in rows.items()}
    classes = lambda ps, probs, t: float(np.mean([max(p.partition(q, t)) + 1 for p, q in zip(ps, probs)]))  # noqa
    if args.packaged:
        model = es.SurrogateModel.load(es.packaged_path())
        for name in MODELS:
            ps = prompts[name]
            ours = classes(ps, [model.trees.probability(p.X) for p in ps], model.threshold)
            ref = float(np.mean([max(p.reference) + 1 for p in ps]))
            print(f"packaged {es.packaged_path().name} on {name}: {ours:.2f} classes, reference {ref:.2f} "
                  f"({ours / ref - 1:+.1%})", flush=True)
    if args.packaged:
        val = [json.loads(line) for line in VAL.read_text().splitlines()]
        humans = [json.loads(line) for line in HUMANS.read_text().splitlines()]
        more = [r[k] for r in val for k in ("generation_0", "generation_1")] + [g for r in humans for g in r["generations"]]
        views.update(es.make_views(more, lambda t: scorer.embed(t, "embedding", 16), minilm_tokenizer()))
        said = [r["generation_0"] == r["generation_1"] or
                model.probability(views[r["generation_0"]], views[r["generation_1"]]) > model.threshold for r in val]
        truth = [bool(r["similar"]) for r in val]
        majority = max(np.mean(truth), 1 - np.mean(truth))
        print(f"val.jsonl: {np.mean([a == b for a, b in zip(said, truth)]):.3f} accuracy on {len(val)} human-labelled "
              f"pairs (always the commoner label: {majority:.3f})", flush=True)
        hp = [et.Prompt({"generations": r["generations"], "partition": _renumbered(r["partition"])}, views)
              for r in humans]
        ours = [p.partition(model.trees.probability(p.X), model.threshold) for p in hp]
        print(f"humans.jsonl: {np.mean([max(x) + 1 for x in ours]):.2f} classes against the human partitions' "
              f"{np.mean([max(p.reference) + 1 for p in hp]):.2f}, mean ARI "
              f"{np.mean([et.adjusted_rand_index(x, p.reference) for x, p in zip(ours, hp)]):.3f}", flush=True)
    for held in MODELS:
        train = [p for name, ps in prompts.items() if name != held for p in ps]
        trees, threshold, setting, _ = et.fit(train)
        ps = prompts[held]
        ours = classes(ps, [trees.probability(p.X) for p in ps], threshold)
        ref = float(np.mean([max(p.reference) + 1 for p in ps]))
        ari = float(np.mean([et.adjusted_rand_index(p.partition(trees.probability(p.X), threshold), p.reference)
                             for p in ps]))
        print(f"held out {held}: fitted on {[n for n in prompts if n != held]} -> setting {setting}, threshold "
              f"{threshold}; {ours:.2f} classes against the reference's {ref:.2f} ({ours / ref - 1:+.1%}), "
              f"mean ARI {ari:.3f}", flush=True)


if __name__ == "__main__":
    main()
