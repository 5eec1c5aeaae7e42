"""Preference pairs -> creativity scores of the chosen (and optionally rejected) answers.

Per split and prompt, the corpus is the prompt's unique chosen answers (with
`score_rejected`, its unique chosen and rejected answers). Every dimension is scored
with the core scorers over that corpus, then min-max normalised within it:

    s' = (s - min) / (max - min)

One rule for every dimension: where the corpus has no spread (max == min, which
includes a prompt with a single answer) every answer gets 0.5, the midpoint, because
the data says nothing about which answer is more creative. (The paper's code gives a
single-answer prompt diversity 0 and 0.5 on the other dimensions: its novelty comment says
0, but its min-max of one value gives 0.5.)

Degenerate answers (empty, no words, one unique word) are left out of the min and max
and get 0 on every dimension, so a degenerate chosen answer never earns a positive
CrPO weight.

`rules="paper"` reproduces the paper's code (`extend_crpo_data.py`) instead, where it differs:
surprise is min-max normalised as perplexity, not as mean NLL (log-perplexity); a prompt with
a single answer gets diversity 0 (and 0.5 on the other dimensions); degenerate answers stay in
their corpus and are scored like any other (the scorer must keep them: degenerate policy
`reference_compat`, which gives a one-word answer the paper's novelty 2 * DSI(corpus)).

Columns carry the paper's names, `<dim>_chosen` and `<dim>_rejected`, so datasets
written here and the paper's published pair datasets train the same way.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from crpo_bench.scoring import registry
from crpo_bench.scoring import Scorer

DIMENSIONS = registry.crpo_dimensions()  # novelty, diversity, surprise, originality, quality
NO_SPREAD = 0.5
RULES = ("ours", "paper")


def min_max(values: list[float | None]) -> list[float]:
    """Normalise one corpus; None (degenerate or undefined) becomes 0."""
    kept = [v for v in values if v is not None]
    if not kept:
        return [0.0] * len(values)
    low, high = min(kept), max(kept)
    if high == low:
        return [0.0 if v is None else NO_SPREAD for v in values]
    return [0.0 if v is None else (v - low) / (high - low) for v in values]


def raw_value(row: dict, dim: str, rules: str) -> float | None:
    """The value of `dim` that is normalised: ours leaves degenerate answers out (None) and
    normalises surprise as mean NLL; the paper's keeps every answer and normalises perplexity."""
    if rules == "paper":
        return _finite(row.get("perplexity" if dim == "surprise" else dim))
    return None if row["degenerate"] else _finite(row.get(dim))


def normalised(raw: list[float | None], dim: str, rules: str) -> list[float]:
    """One corpus's min-max scores; the paper's code gives a lone answer diversity 0 (its
    diversity is the mean distance to the others: there are none)."""
    if rules == "paper" and dim == "diversity" and len(raw) == 1:
        return [0.0]
    return min_max(raw)


def _prompt_key(pair: dict) -> str:
    """The prompt of a pair, explicit or (the paper's published pairs) the chosen
    conversation's turns before the answer."""
    prompt = pair["prompt"] if "prompt" in pair else pair["chosen"][:-1]
    return "\n".join(m["content"] for m in prompt) if isinstance(prompt, list) else prompt


def _answer(message) -> str:
    return message[-1]["content"] if isinstance(message, list) else message


def score_column(dimension: str, side: str) -> str:
    """The paper's column name of a normalised score: `novelty_chosen`, `quality_rejected`."""
    return f"{dimension}_{side}"


def score_pairs(splits: dict[str, list[dict]], scorer: Scorer, dimensions=DIMENSIONS,
                score_rejected: bool = False, rules: str = "ours") -> dict[str, list[dict]]:
    """Return copies of the pair records with `<dim>_chosen` (and `<dim>_rejected`) columns."""
    if rules not in RULES:
        raise ValueError(f"rules {rules!r}: choose one of {RULES}")
    if rules == "paper" and scorer.config.degenerate != "reference_compat":
        raise ValueError("the paper's rules score degenerate answers like any other: give the scorer "
                         "degenerate='reference_compat'")
    sides = ("chosen", "rejected") if score_rejected else ("chosen",)
    # 1. the unique answers of each (split, prompt) corpus, and a pair that names its item and task
    corpora: dict[tuple, dict[str, None]] = defaultdict(dict)
    first: dict[tuple, dict] = {}
    for split, pairs in splits.items():
        for pair in pairs:
            key = (split, _prompt_key(pair))
            first.setdefault(key, pair)
            for side in sides:
                corpora[key][_answer(pair[side])] = None
    keys = [(key, answer) for key, answers in corpora.items() for answer in answers]

    # 2. raw scores, one Scorer call for all corpora
    result = scorer.score(
        [answer for _, answer in keys],
        corpus_ids=[key for key, _ in keys],
        prompts=[key[1] for key, _ in keys],
        metrics=list(dimensions),
        items=[first[key].get("item") for key, _ in keys],
        tasks=[first[key].get("task") for key, _ in keys],
    )

    # 3. min-max within each corpus (ours: degenerate answers get 0)
    by_corpus: dict[tuple, list[int]] = defaultdict(list)
    for i, (key, _) in enumerate(keys):
        by_corpus[key].append(i)
    scores: dict[tuple, dict[str, float]] = defaultdict(dict)
    for dim in dimensions:
        for idx in by_corpus.values():
            raw = [raw_value(result.rows[i], dim, rules) for i in idx]
            for i, value in zip(idx, normalised(raw, dim, rules)):
                scores[keys[i]][dim] = value

    # 4. attach
    out: dict[str, list[dict]] = {}
    for split, pairs in splits.items():
        out[split] = []
        for pair in pairs:
            record = dict(pair)
            for side in sides:
                answer_scores = scores[((split, _prompt_key(pair)), _answer(pair[side]))]
                record.update({score_column(dim, side): answer_scores[dim] for dim in dimensions})
            out[split].append(record)
    return out


def _finite(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
