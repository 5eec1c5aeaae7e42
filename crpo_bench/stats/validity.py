"""How far a scorer agrees with human ratings: Spearman and Pearson, overall and within item,
with percentile bootstrap confidence intervals."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy import stats

MIN_PER_ITEM = 3  # a correlation within an item needs at least three answers


def correlation(x, y, method: str) -> float:
    """Pearson, or Spearman as the Pearson correlation of average ranks (what scipy computes,
    without its per-call overhead: the bootstrap calls this thousands of times)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / np.sqrt((x @ x) * (y @ y)))


def item_groups(items) -> list[np.ndarray]:
    """The positions of each item's answers, items in order of first appearance."""
    groups = defaultdict(list)
    for k, item in enumerate(items):
        groups[item].append(k)
    return [np.array(idx) for idx in groups.values()]


def per_item(x, y, items, method: str) -> np.ndarray:
    """The correlation inside each item with >= MIN_PER_ITEM answers (NaN-free)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    values = [correlation(x[idx], y[idx], method) for idx in item_groups(items) if len(idx) >= MIN_PER_ITEM]
    return np.array([v for v in values if not np.isnan(v)])


def within_item(x, y, items, method: str) -> float:
    """Mean over items (with >= MIN_PER_ITEM answers) of the correlation inside the item."""
    values = per_item(x, y, items, method)
    return float(values.mean()) if len(values) else float("nan")


def validity(scores, human, items, iters: int = 1000, seed: int = 0) -> dict:
    """{"spearman", "pearson", "spearman_within", "pearson_within"}: (estimate, low, high), 95% CI.

    Every interval resamples whole items: the answers to one item share its difficulty and
    its raters, so they are not independent draws. Overall correlations pool the drawn
    items' answers; within-item means average the drawn items' own correlations.
    """
    scores, human, items = np.asarray(scores, dtype=float), np.asarray(human, dtype=float), list(items)
    rng = np.random.default_rng(seed)
    members = item_groups(items)
    out = {}
    for method in ("spearman", "pearson"):
        draws = [correlation(scores[k], human[k], method) for k in
                 (np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
                  for _ in range(iters))]
        out[method] = (correlation(scores, human, method), *np.nanpercentile(draws, [2.5, 97.5]))
    for method in ("spearman", "pearson"):
        # resampling whole items: each drawn item brings its own fixed correlation
        values = per_item(scores, human, items, method)
        if len(values) == 0:
            out[f"{method}_within"] = (float("nan"),) * 3
            continue
        draws = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(iters)]
        out[f"{method}_within"] = (float(values.mean()), *np.percentile(draws, [2.5, 97.5]))
    return out
