"""How far a scorer agrees with human ratings: Spearman and Pearson, overall and within item,
with percentile bootstrap confidence intervals."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy import stats

MIN_PER_ITEM = 3  # a correlation within an item needs at least three answers


def correlation(x, y, method: str) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    fn = stats.spearmanr if method == "spearman" else stats.pearsonr
    return float(fn(x, y).statistic)


def within_item(x, y, items, method: str) -> float:
    """Mean over items (with >= MIN_PER_ITEM answers) of the correlation inside the item."""
    groups = defaultdict(list)
    for k, item in enumerate(items):
        groups[item].append(k)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    values = [correlation(x[idx], y[idx], method) for idx in groups.values() if len(idx) >= MIN_PER_ITEM]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def validity(scores, human, items, iters: int = 1000, seed: int = 0) -> dict:
    """{"spearman", "pearson", "spearman_within", "pearson_within"}: (estimate, low, high), 95% CI.

    Overall correlations resample answers; within-item means resample items (whole groups).
    """
    scores, human, items = np.asarray(scores, dtype=float), np.asarray(human, dtype=float), list(items)
    rng = np.random.default_rng(seed)
    out = {}
    for method in ("spearman", "pearson"):
        draws = [correlation(scores[k], human[k], method) for k in
                 (rng.integers(0, len(scores), len(scores)) for _ in range(iters))]
        out[method] = (correlation(scores, human, method), *np.nanpercentile(draws, [2.5, 97.5]))
    unique = sorted(set(items))
    by_item = {item: [k for k, i in enumerate(items) if i == item] for item in unique}
    for method in ("spearman", "pearson"):
        draws = []
        for _ in range(iters):
            chosen = rng.integers(0, len(unique), len(unique))
            idx = [k for c in chosen for k in by_item[unique[c]]]
            labels = [f"{c}-{n}" for n, c in enumerate(chosen) for _ in by_item[unique[c]]]  # a redrawn item is a new group
            draws.append(within_item(scores[idx], human[idx], labels, method))
        out[f"{method}_within"] = (within_item(scores, human, items, method), *np.nanpercentile(draws, [2.5, 97.5]))
    return out
