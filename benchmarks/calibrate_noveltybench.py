"""Agreement of the offline equivalence backends with a reference classifier's partitions.

    python benchmarks/calibrate_noveltybench.py [--data ../shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl]

For each backend setting, partitions every prompt's generations and prints the mean number
of classes (the reference's is 1.80 on the calibration half) and the mean adjusted Rand
index against the reference partitions. The backends are those of crpo_bench/noveltybench/rules.py:
unigram without the short-text rule (as in the reference), embedding with it (its threshold
is the best of this sweep) and without it, and the surrogate as fitted to this file's
reference (without the rule: the published Gemini partitions were made before NoveltyBench
had it, and 72 of their 327 verdicts on two short texts contradict it), with the rule (the
default, as NoveltyBench's code partitions today), and with its pairwise decisions in the
reference's greedy loop instead of its own.
On the calibration half the surrogate's figures are on the prompts it was fitted to: its
card holds the cross-validated ones, printed last. Any other file in the reference format
(for example the odd-id half of the same Gemini run) measures it on unseen prompts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crpo_bench import noveltybench as nb
from crpo_bench.noveltybench.surrogate import SurrogateModel, packaged_path, surrogate_equivalence
from crpo_bench.noveltybench.surrogate_training import adjusted_rand_index, read_partitions
from crpo_bench.models import load_embedder, minilm_tokenizer

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT)
    args = parser.parse_args()
    rows = read_partitions(args.data)
    texts = sorted({g for r in rows for g in r["generations"]})
    embedder = load_embedder()
    vectors = dict(zip(texts, embedder.encode(texts, batch_size=8).astype(np.float64)))
    print(f"{len(rows)} prompts; reference mean classes {np.mean([max(r['partition']) + 1 for r in rows]):.2f}")
    # everything one class: the agreement any backend gets for free where the reference
    # mostly finds one class, at the price of the class count
    settings = [("one-class", 0.0, lambda a, b: True), ("unigram", nb.UNIGRAM_THRESHOLD, nb.unigram_equivalence())]
    settings.append(("embedding-norule", nb.EMBEDDING_THRESHOLD,
                     lambda a, b: float(vectors[a] @ vectors[b]) > nb.EMBEDDING_THRESHOLD))
    settings += [("embedding", t, nb.embedding_equivalence(vectors, t)) for t in np.arange(0.56, 0.97, 0.02)]
    surrogate = SurrogateModel.load(packaged_path())
    embed = lambda batch: embedder.encode(batch, batch_size=8).astype(np.float64)  # noqa: E731
    judge = surrogate_equivalence(texts, embed, minilm_tokenizer(), surrogate, short_rule=False)
    settings.append(("surrogate-norule", surrogate.threshold, judge))  # as this file's reference partitioned
    # the default: the rule's verdict (1 or 0) in place of the trees' on two short texts
    settings.append(("surrogate", surrogate.threshold, surrogate_equivalence(texts, embed, minilm_tokenizer(), surrogate)))
    # its pairwise decisions in the reference's loop (first members only): a lambda has no partition()
    settings.append(("surrogate-greedy", surrogate.threshold, lambda a, b: judge(a, b)))
    for name, threshold, equivalent in settings:
        labels = [nb.partition(r["generations"], equivalent) for r in rows]
        classes = np.mean([max(lab) + 1 for lab in labels])
        ari = np.mean([adjusted_rand_index(lab, r["partition"]) for lab, r in zip(labels, rows)])
        print(f"{name:17s} threshold {threshold:.3f}: mean classes {classes:.2f}, mean ARI vs reference {ari:.3f}")
    for source, figures in (surrogate.card.get("leave_one_source_out") or {}).items():
        print(f"surrogate refitted without {source} (its card), measured on it: mean classes "
              f"{figures['mean_classes']:.2f} (reference {figures['reference_mean_classes']:.2f}), "
              f"mean ARI {figures['mean_ari']:.3f}")

if __name__ == "__main__":
    main()
