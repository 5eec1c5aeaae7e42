"""Human-rated responses -> preference pairs in TRL's conversational format.

Within one (split, task, prompt) group, a pair is two different answers whose human
scores are both at least `min_score` and differ by at least `min_score_diff`; the
higher-scored one is chosen. Each answer joins at most `max_matching` pairs.

Pairs are taken widest gap first (best answer against worst), so a small
`max_matching` keeps the clearest preferences. Ties are broken by the data's order, so
the same input always gives the same pairs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import product

from crpo_bench import muce

SCORE = "facsco_grm_scaled"  # MuCE's human score, 10-50


@dataclass(frozen=True)
class PairSettings:
    min_score: float = 20.0
    min_score_diff: float = 5.0
    max_matching: int = 10  # the paper's datasets use 10 (min score difference 5)

    def __post_init__(self):
        if self.max_matching < 1:
            raise ValueError(f"max_matching must be at least 1, got {self.max_matching}")
        if self.min_score_diff <= 0:
            raise ValueError(f"min_score_diff must be positive (a pair needs a preference), got {self.min_score_diff}")


def rated_answers(rows: list[dict]) -> dict[tuple[str, str, str], list[tuple[str, float]]]:
    """(split, task slug, item) -> [(answer, score)] in data order; an answer given several
    times in one group keeps the mean of its scores. Non-English rows are left out."""
    scores: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if not muce.is_english(row.get("Language")):
            continue
        key = (str(row["Set"]), muce.task_slug(str(row["TasksNamesFull"])), str(row["Prompt"]).strip())
        scores[key][str(row["Response"]).strip()].append(float(row[SCORE]))
    return {key: [(answer, sum(s) / len(s)) for answer, s in answers.items()] for key, answers in scores.items()}


def match_pairs(answers: list[tuple[str, float]], settings: PairSettings) -> list[tuple[int, int]]:
    """(chosen index, rejected index) pairs of one group."""
    eligible = [i for i, (_, score) in enumerate(answers) if score >= settings.min_score]
    best_first = sorted(eligible, key=lambda i: -answers[i][1])  # sorted() is stable: ties keep data order
    worst_first = sorted(eligible, key=lambda i: answers[i][1])
    candidates = [(c, r) for c, r in product(best_first, worst_first)
                  if answers[c][1] - answers[r][1] >= settings.min_score_diff]
    candidates.sort(key=lambda cr: -(answers[cr[0]][1] - answers[cr[1]][1]))  # widest gap first
    used = [0] * len(answers)
    pairs = []
    for c, r in candidates:
        if used[c] < settings.max_matching and used[r] < settings.max_matching:
            pairs.append((c, r))
            used[c] += 1
            used[r] += 1
    return pairs


def build_pairs(rows: list[dict], settings: PairSettings, tasks: set[str] | None = None,
                max_prompts: int | None = None) -> dict[str, list[dict]]:
    """split -> pair records: conversational prompt/chosen/rejected plus the human scores.
    `max_prompts` keeps the first prompts (sorted) of each split and task, whole."""
    splits: dict[str, list[dict]] = defaultdict(list)
    taken: dict[tuple[str, str], int] = defaultdict(int)
    for (split, task, item), answers in sorted(rated_answers(rows).items()):
        if (tasks and task not in tasks) or (max_prompts is not None and taken[split, task] >= max_prompts):
            continue
        taken[split, task] += 1
        prompt = [{"role": "user", "content": muce.instruction(task, item)}]
        for c, r in match_pairs(answers, settings):
            splits[split].append({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": answers[c][0]}],
                "rejected": [{"role": "assistant", "content": answers[r][0]}],
                "score_chosen": answers[c][1],
                "score_rejected": answers[r][1],
                "task": task,
                "item": item,
            })
    return dict(splits)
