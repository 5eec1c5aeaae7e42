"""Compare leaderboard results with a stored baseline: did any metric get worse?

Baseline file (JSON):
    {"tolerance": {"default": {"abs": 0.0, "rel": 0.02}, "surprise": {"abs": 0.01}},
     "metrics": {"MODEL/TASK/METRIC": {"value": 0.0972, "higher_is_better": true}, ...}}

A metric regresses when it moves in its bad direction by more than
max(abs, rel * |baseline|) (tolerance of the metric's name, else "default"); where the
direction is unknown, any move beyond the tolerance counts. A metric in the baseline
that the results lack regresses too (a run that stopped measuring it). Results made under
a metric card (crpo_bench.card) that differs from the baseline's stored card in a field
that changes a metric are not compared at all: the check stops as unusable input.

Two-sided (`--two-sided`, CI's gate on the fixed, seeded demo): a move beyond tolerance in
either direction fails, status "moved" for a move in the good direction, because there any
change of a metric is a change of behaviour (a metric inflated by a bug looks "better").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .card import differences
from .leaderboard import Entry

DEFAULT_TOLERANCE = {"abs": 1e-6, "rel": 0.02}


@dataclass
class Comparison:
    key: str
    baseline: float
    value: float | None
    allowed: float
    status: str  # "ok", "better", "regressed", "missing"; "moved" (better, under the two-sided check)


def read_baseline(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        metrics = data["metrics"]
        for key, spec in metrics.items():
            float(spec["value"])
            if key.count("/") < 2:
                raise KeyError(f"metric key {key!r} is not MODEL/TASK/METRIC")
    except FileNotFoundError:
        raise ValueError(f"baseline file {path} does not exist (create it with --update)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"baseline file {path}: {type(err).__name__}: {err}") from None
    return data


def tolerance_for(metric: str, tolerances: dict) -> dict:
    return {**DEFAULT_TOLERANCE, **tolerances.get("default", {}), **tolerances.get(metric, {})}


FAILING = ("regressed", "missing", "moved")


def compare(entries: list[Entry], baseline: dict, two_sided: bool = False) -> list[Comparison]:
    current = {f"{e.model}/{e.task}/{e.metric}": e for e in entries}
    out = []
    for key, spec in sorted(baseline["metrics"].items()):
        tol = tolerance_for(key.rsplit("/", 1)[1], baseline.get("tolerance", {}))
        base = float(spec["value"])
        allowed = max(tol["abs"], tol["rel"] * abs(base))
        e = current.get(key)
        if e is None:
            out.append(Comparison(key, base, None, allowed, "missing"))
            continue
        higher = spec.get("higher_is_better", e.higher_is_better)
        change = e.value - base
        worse = -change if higher is True else change if higher is False else abs(change)
        status = "regressed" if worse > allowed else "ok"
        if status == "ok" and abs(change) > allowed:
            status = "moved" if two_sided else "better" if higher is not None else "ok"
        out.append(Comparison(key, base, e.value, allowed, status))
    return out


def card_mismatches(entries: list[Entry], baseline: dict) -> list[str]:
    """One line per MODEL/TASK whose results were made under a metric card that differs from
    the baseline's in a field that changes a metric: such numbers cannot be compared."""
    current = {f"{e.model}/{e.task}": e.card for e in entries}
    out = []
    for key, card in sorted(baseline.get("cards", {}).items()):
        if key not in current:
            continue
        if current[key] is None:
            out.append(f"{key}: the results carry no metric card (the baseline has one)")
            continue
        for name in differences(card, current[key]):
            out.append(f"{key}: {name} differs (baseline {card.get(name)!r}, results {current[key].get(name)!r})")
    return out


def baseline_from(entries: list[Entry], tolerance: dict | None = None) -> dict:
    ordered = sorted(entries, key=lambda e: (e.model, e.task, e.metric))
    return {"tolerance": tolerance or {"default": dict(DEFAULT_TOLERANCE)},
            "cards": {f"{e.model}/{e.task}": e.card for e in ordered if e.card},
            "metrics": {f"{e.model}/{e.task}/{e.metric}": {"value": e.value, "higher_is_better": e.higher_is_better}
                        for e in ordered}}
