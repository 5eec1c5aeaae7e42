"""Human-rated responses -> preference pairs in TRL's conversational format.

Answers are grouped as the paper groups them: per split, task and full prompt (the
instruction a model sees, crpo_bench.muce.prompts). Within a group, a pair is two answers
whose human scores are both at least `min_score` and differ by at least
`min_score_diff`; the higher-scored one is chosen. Each answer joins at most
`max_matching` pairs. Two ways to take pairs under that cap:

- `widest` (default): an answer given several times keeps its mean score, and pairs are
  taken widest gap first (best answer against worst), so a small `max_matching` keeps the
  clearest preferences. Ties keep the data's order.
- `paper`: the paper's code (`prepare_preference_data`): repeated answers stay separate,
  and pairs (i, j), i < j, are taken greedily in data order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations, product

from crpo_bench import muce

SCORE = "facsco_grm_scaled"  # MuCE's human score, 10-50


MATCHINGS = ("widest", "paper")


@dataclass(frozen=True)
class PairSettings:
    min_score: float = 20.0
    min_score_diff: float = 5.0
    max_matching: int = 10  # the paper's datasets use 10 (min score difference 5)
    matching: str = "widest"

    def __post_init__(self):
        if self.max_matching < 1:
            raise ValueError(f"max_matching must be at least 1, got {self.max_matching}")
        if self.min_score_diff <= 0:
            raise ValueError(f"min_score_diff must be positive (a pair needs a preference), got {self.min_score_diff}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching {self.matching!r}: choose one of {MATCHINGS}")


def rated_answers(rows: list[dict]) -> dict[tuple[str, str, str], list[tuple[str, float, str]]]:
    """(split, task slug, full prompt) -> [(answer, score, item)] in data order, repeats kept.
    Non-English rows and rows the paper excludes (no full prompt) are left out."""
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if not muce.is_english(row.get("Language")):
            continue
        full = muce.row_full_prompt(row)
        if full is None:
            continue
        key = (row["split"], muce.task_slug(row["TasksNamesFull"]), full)
        groups[key].append((str(row["Response"]).strip(), float(row[SCORE]), str(row["Prompt"]).strip()))
    return dict(groups)


def merge_repeats(answers: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
    """One entry per distinct answer, with the mean of its scores, in first-seen order."""
    scores: dict[str, list[float]] = defaultdict(list)
    item = {}
    for answer, score, it in answers:
        scores[answer].append(score)
        item.setdefault(answer, it)
    return [(answer, sum(s) / len(s), item[answer]) for answer, s in scores.items()]


def match_widest(answers: list[tuple], settings: PairSettings) -> list[tuple[int, int]]:
    """(chosen index, rejected index) pairs of one group, widest score gap first."""
    eligible = [i for i, a in enumerate(answers) if a[1] >= settings.min_score]
    best_first = sorted(eligible, key=lambda i: -answers[i][1])  # sorted() is stable: ties keep data order
    worst_first = sorted(eligible, key=lambda i: answers[i][1])
    candidates = [(c, r) for c, r in product(best_first, worst_first)
                  if answers[c][1] - answers[r][1] >= settings.min_score_diff]
    candidates.sort(key=lambda cr: -(answers[cr[0]][1] - answers[cr[1]][1]))  # widest gap first
    return _take(candidates, len(answers), settings.max_matching)


def match_in_order(answers: list[tuple], settings: PairSettings) -> list[tuple[int, int]]:
    """The paper's greedy matching: pairs (i, j), i < j, in data order."""
    candidates = []
    for i, j in combinations(range(len(answers)), 2):
        si, sj = answers[i][1], answers[j][1]
        if min(si, sj) >= settings.min_score and abs(si - sj) >= settings.min_score_diff:
            candidates.append((i, j) if si > sj else (j, i))
    return _take(candidates, len(answers), settings.max_matching)


def _take(candidates: list[tuple[int, int]], n: int, max_matching: int) -> list[tuple[int, int]]:
    """Candidates in order, each answer in at most `max_matching` pairs."""
    used = [0] * n
    pairs = []
    for c, r in candidates:
        if used[c] < max_matching and used[r] < max_matching:
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
    tasks = {muce.task_slug(t) for t in tasks} if tasks else None
    for (split, task, full), answers in sorted(rated_answers(rows).items()):
        if (tasks and task not in tasks) or (max_prompts is not None and taken[split, task] >= max_prompts):
            continue
        taken[split, task] += 1
        if settings.matching == "widest":
            answers = merge_repeats(answers)
            matched = match_widest(answers, settings)
        else:
            matched = match_in_order(answers, settings)
        prompt = [{"role": "user", "content": full}]
        for c, r in matched:
            splits[split].append({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": answers[c][0]}],
                "rejected": [{"role": "assistant", "content": answers[r][0]}],
                "score_chosen": answers[c][1],
                "score_rejected": answers[r][1],
                "task": task,
                "item": answers[c][2],
            })
    return dict(splits)


def sft_messages(rows: list[dict], min_score: float = 30.0, tasks: set[str] | None = None) -> dict[str, list[dict]]:
    """split -> SFT rows as the paper's `prepare_sft_data` makes them: every answer rated at
    least `min_score`, repeats kept, as chat `messages` [user: the full prompt, assistant:
    the answer] (TRL trains on the whole sequence), in the data's order (training shuffles)."""
    splits: dict[str, list[dict]] = defaultdict(list)
    tasks = {muce.task_slug(t) for t in tasks} if tasks else None
    for (split, task, full), answers in sorted(rated_answers(rows).items()):
        if tasks and task not in tasks:
            continue
        for answer, score, item in answers:
            if score >= min_score:
                splits[split].append({"messages": [{"role": "user", "content": full},
                                                   {"role": "assistant", "content": answer}],
                                      "task": task, "item": item, "score": score})
    return dict(splits)
