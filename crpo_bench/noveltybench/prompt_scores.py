"""One prompt's NoveltyBench figures, the one rule that `crpo-bench noveltybench` (a record per
prompt, streamed and resumable) and the lm-eval noveltybench tasks (all prompts batched) share:
classes from the partition, novelty and diversity over the generations that count, and, with a
reward model, the reference's ratings, first-of-class scores and patience-weighted utility."""

from __future__ import annotations

from collections.abc import Sequence

from ..scoring import counted_mean
from .rules import PATIENCE, generation_scores, partition_scores, rating, utility


def prompt_scores(labels: Sequence[int], semantic_rows: list[dict], rewards: Sequence[float] | None,
                  patience: float = PATIENCE, degenerate: str = "exclude") -> dict:
    """`labels`: the partition; `semantic_rows`: the generations' scorer rows (novelty, diversity,
    degenerate); `rewards`: their raw rewards, None without a reward model (scores and utility None).
    novelty / diversity are None where every generation is degenerate."""
    out = {"num_classes": len(set(labels)), "generation_scores": None, "partition_scores": None, "utility": None}
    if rewards is not None:
        ratings = [rating(r) for r in rewards]
        out["generation_scores"] = generation_scores(labels, ratings)
        out["partition_scores"] = partition_scores(labels, ratings)
        out["utility"] = utility(out["generation_scores"], patience)
    out["novelty"] = counted_mean(semantic_rows, "novelty", degenerate)
    out["diversity"] = counted_mean(semantic_rows, "diversity", degenerate)
    return out
