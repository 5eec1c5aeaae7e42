"""The CrPO weight of a preference pair (docs: metrics-spec, "CrPO weight").

    add:  w = sum  over k with lambda_k > 0 of lambda_k * max(0, s_k(chosen) - s_k(rejected))
    mult: w = prod over the same k          of lambda_k * max(0, s_k(chosen) - s_k(rejected))
    w = 1 when every lambda is 0 (plain DPO)

A missing rejected score counts as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

STRATEGIES = ("add", "mult")


def crpo_weight(chosen: Mapping[str, float], rejected: Mapping[str, float], lambdas: Mapping[str, float],
                strategy: str = "add") -> float:
    active = {k: lam for k, lam in lambdas.items() if lam > 0}
    if not active:
        return 1.0
    gains = [lam * max(0.0, chosen[k] - rejected.get(k, 0.0)) for k, lam in active.items()]
    if strategy == "add":
        return math.fsum(gains)
    if strategy == "mult":
        return math.prod(gains)
    raise ValueError(f"crpo_strategy {strategy!r}: choose one of {STRATEGIES}")
