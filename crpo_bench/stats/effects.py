"""How far one model differs from another on the same items: paired differences with
percentile bootstrap intervals over items.

Two models answered the same prompts, so the comparison is paired: the difference is
taken item by item, and the bootstrap resamples items (both models' values of a drawn
item come along together). That removes the between-item spread, which on creativity
metrics is far larger than the between-model one.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def paired_difference(a, b, iters: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """mean(a - b) over the items where both are finite, with a percentile bootstrap interval.

    Returns {"diff", "low", "high", "items"}; the interval excludes 0 when the difference is
    beyond what resampling the items explains.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same items: {a.shape} and {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if len(d) == 0:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"), "items": 0}
    draws = np.random.default_rng(seed).integers(0, len(d), (iters, len(d)))
    means = d[draws].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"diff": float(d.mean()), "low": float(low), "high": float(high), "items": int(len(d))}


def paired_correlation_difference(x, y_a, y_b, iters: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman(x, y_a) - Spearman(x, y_b) over the same cases, bootstrapping cases.

    The mechanism check: x a pair's CrPO weight, y_a how far the CrPO checkpoint raised the
    pair's implicit reward margin, y_b how far DPO did. Returns {"a", "b", "diff", "low", "high"}.
    """
    x, y_a, y_b = (np.asarray(v, dtype=float) for v in (x, y_a, y_b))
    rho = lambda idx: (stats.spearmanr(x[idx], y_a[idx]).statistic, stats.spearmanr(x[idx], y_b[idx]).statistic)
    everything = np.arange(len(x))
    rho_a, rho_b = rho(everything)
    rng = np.random.default_rng(seed)
    diffs = np.array([np.subtract(*rho(rng.integers(0, len(x), len(x)))) for _ in range(iters)])
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(diffs, [tail, 100 - tail])
    return {"a": float(rho_a), "b": float(rho_b), "diff": float(rho_a - rho_b), "low": float(low), "high": float(high)}


def beyond_interval(effect: dict) -> bool:
    """Whether the interval excludes 0."""
    return bool(effect["low"] > 0 or effect["high"] < 0)
