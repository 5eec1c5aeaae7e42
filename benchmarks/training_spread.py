"""How far retraining the packaged models moves when embeddings differ in their last bits.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_spread.py [--model surrogate|originality|both]
                                                                      [--runs 4] [--noise 1e-7]

Another CPU computes the same embeddings with other float rounding (vector instruction sets,
thread counts): the vectors agree to about float32 precision and no further. This script
imitates that on one machine: it retrains each packaged model from the shared data with its
embeddings multiplied element-wise by (1 + noise * N(0, 1)) (seeded, then made unit length
again), `--runs` times, and prints what the reproduction tests compare:

- surrogate: the chosen setting and threshold, and the mean ARI of the retrained model's
  partitions against the packaged model's on the published runs' prompts;
- originality: the chosen ridge strengths, and the largest and mean absolute difference of
  predictions from the packaged v3 on every fifth validation answer (10-50 scale).

Run 0 is unperturbed (this machine as it is). The tests' tolerances come from these figures
and from the spread measured between real machines (README, "Reproducing the packaged models").
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NB = SHARED / "noveltybench"
PUBLISHED = (NB / "published/2025-03-27_gemini-1.5-pro/nb-curated/scores.jsonl",
             NB / "published/2025-11-21_CrPO-llama-3.1-8b-instruct-cre/nb-curated/scores.jsonl")
HUMANS = NB / "equivalence/humans.jsonl"  # the packaged surrogate's training data, with PUBLISHED


def perturbed(vectors: np.ndarray, noise: float, seed: int) -> np.ndarray:
    if noise == 0:
        return vectors
    out = vectors * (1 + noise * np.random.default_rng(seed).standard_normal(vectors.shape))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@contextlib.contextmanager
def embeddings_perturbed(scorer, noise: float, seed: int):
    """The scorer's embeddings as another machine might compute them."""
    original = scorer.embed
    calls = iter(range(10**6))
    scorer.embed = lambda texts, *a, **k: perturbed(original(texts, *a, **k), noise, seed * 1000 + next(calls))
    try:
        yield
    finally:
        scorer.embed = original


def surrogate_spread(runs: int, noise: float) -> None:
    from crpo_bench.noveltybench import surrogate as es
    from crpo_bench.noveltybench import surrogate_training as et
    from crpo_bench.models import minilm_tokenizer
    from crpo_bench.scoring import Scorer, ScoringConfig

    sources = {et.source_name(f): et.read_partitions(f) for f in (*PUBLISHED, HUMANS)}
    texts = [g for rows in sources.values() for r in rows for g in r["generations"]]
    scorer, tokenizer = Scorer(ScoringConfig()), minilm_tokenizer()
    packaged = es.SurrogateModel.load(es.packaged_path())

    def prompts_of(views):
        return [et.Prompt(r, views, name, et.source_short_rule(rows)) for name, rows in sources.items() for r in rows]

    plain = prompts_of(es.make_views(texts, lambda t: scorer.embed(t, "embedding", 16), tokenizer))
    compared = [p for p in plain if p.source != "humans"]  # the published runs' prompts
    reference = [p.partition(packaged.trees.probability(p.X), packaged.threshold) for p in compared]
    print(f"surrogate, packaged: setting {packaged.card['setting']}, threshold {packaged.threshold}")
    for run in range(runs):
        with embeddings_perturbed(scorer, noise * (run > 0), run):
            views = es.make_views(texts, lambda t: scorer.embed(t, "embedding", 16), tokenizer)
        trees, threshold, setting, scores = et.fit(prompts_of(views))
        labels = [p.partition(trees.probability(p.X), threshold) for p in compared]
        ari = np.mean([et.adjusted_rand_index(a, b) for a, b in zip(labels, reference)])
        print(f"  run {run}: setting {setting} (class error {scores[setting]:.4f}), threshold {threshold}, "
              f"partitions vs packaged: mean ARI {ari:.4f}", flush=True)


def originality_spread(runs: int, noise: float) -> None:
    from crpo_bench import muce
    from crpo_bench.scoring import originality_training
    from crpo_bench.models import DEFAULT_ORIGINALITY_MODEL
    from crpo_bench.metrics.originality import OriginalityModel
    from crpo_bench.scoring import Scorer, ScoringConfig

    train_rows = muce.read_rated(SHARED / "ocsai1" / "alltests_train.jsonl")
    val = muce.read_rated(SHARED / "ocsai1" / "alltests_val.jsonl")[::5]
    scorer = Scorer(ScoringConfig())
    packaged = OriginalityModel.load(DEFAULT_ORIGINALITY_MODEL)
    answers, items = originality_training.embed(val, scorer)
    args = (answers, items, originality_training.tasks_of(val), originality_training.items_of(val),
            originality_training.word_counts(val))
    want = packaged.score(*args)
    print(f"originality, packaged: ridge {packaged.card['ridge']}, memory ridge {packaged.card['memory']['ridge']}")
    for run in range(runs):
        with embeddings_perturbed(scorer, noise * (run > 0), run):
            model = originality_training.train(train_rows, None, scorer)
        gap = np.abs(model.score(*args) - want)
        print(f"  run {run}: ridge {model.card['ridge']}, memory ridge {model.card['memory']['ridge']}, "
              f"|prediction - packaged| max {gap.max():.5f}, mean {gap.mean():.6f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("surrogate", "originality", "both"), default="both")
    parser.add_argument("--runs", type=int, default=4, help="retrainings; run 0 is unperturbed")
    parser.add_argument("--noise", type=float, default=1e-7, help="relative noise on each embedding component")
    args = parser.parse_args()
    if args.model in ("surrogate", "both"):
        surrogate_spread(args.runs, args.noise)
    if args.model in ("originality", "both"):
        originality_spread(args.runs, args.noise)


if __name__ == "__main__":
    main()
