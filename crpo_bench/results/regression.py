"""Compare leaderboard results with a stored baseline: did any metric get worse?

Baseline file (JSON):
    {"tolerance": {"default": {"abs": 0.0, "rel": 0.02}, "surprise": {"abs": 0.01}},
     "metrics": {"MODEL/TASK/METRIC": {"value": 0.0972, "higher_is_better": true}, ...}}

A metric regresses when it moves in its bad direction by more than
max(abs, rel * |baseline|) (tolerance of the metric's name, else "default"); where the
direction is unknown, any move beyond the tolerance counts. A metric in the baseline
that the results lack regresses too (a run that stopped measuring it). Results made under
a metric card (crpo_bench.scoring.card) that differs from the baseline's stored card in a field
that changes a metric are not compared at all: the check stops as unusable input.

Two-sided (`--two-sided`, CI's gate on the fixed, seeded demo): a move beyond tolerance in
either direction fails, status "moved" for a move in the good direction, because there any
change of a metric is a change of behaviour (a metric inflated by a bug looks "better").

Every malformed baseline is unusable input (exit 2, `FILE: field: what is wrong`): a
tolerance or metric spec that is not an object, a tolerance that is not a finite number >= 0,
an unknown field (a misspelt "higher_is_beter" or "tolerances" would otherwise be ignored
in silence), a value that is not a finite number (NaN, Infinity), an empty "metrics" (a gate
comparing nothing always passes), a "cards" entry that is not a MODEL/TASK -> card object.
A result value that is not finite (NaN, Infinity) where the baseline has a number regresses,
status "not finite" (exit 1), like a metric that disappeared: the run no longer measures it.
`--update` leaves such values out of the new baseline and names each on stderr: strict JSON
cannot hold them, and some metrics are legitimately undefined on tiny runs (lm-eval reports
an n-gram diversity of answers shorter than n as NaN).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..scoring.card import COMPARED_FIELDS, compared, differences
from ..jsonl import InputError, non_finite_field
from .leaderboard import Entry, shown

DEFAULT_TOLERANCE = {"abs": 1e-6, "rel": 0.02}


@dataclass
class Comparison:
    key: str
    baseline: float
    value: float | None
    allowed: float
    status: str  # "ok", "better", "regressed", "missing", "not finite"; "moved" (better, two-sided check)


BASELINE_FIELDS = ("tolerance", "metrics", "cards")
TOLERANCE_FIELDS = ("abs", "rel")
METRIC_SPEC_FIELDS = ("value", "higher_is_better")


def _fail(path: Path, field: str, what: str) -> NoReturn:
    raise InputError(f"{path}: {field}: {what}" if field else f"{path}: {what}")


def _load(path: Path):
    """The parsed JSON; NaN and Infinity are let through here so that the field holding them
    can be named below."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(path, "", "does not exist (create it with --update)")
    except IsADirectoryError:
        _fail(path, "", "is a directory, not a baseline file")
    except OSError as err:
        _fail(path, "", f"cannot be read ({err.strerror})")
    except UnicodeDecodeError:
        _fail(path, "", "not UTF-8 text")
    except json.JSONDecodeError as err:
        _fail(path, "", f"malformed JSON ({err.msg} at line {err.lineno} column {err.colno})")


def _object(path: Path, field: str, value, what: str = "an object") -> dict:
    if not isinstance(value, dict):
        _fail(path, field, f"expected {what}, got {shown(value)}")
    return value


def _known_fields(path: Path, field: str, value: dict, known: tuple[str, ...]) -> None:
    for name in value:
        if name not in known:
            _fail(path, f"{field}.{name}" if field else name, f"unknown field (expected {', '.join(known)})")


def _number(path: Path, field: str, value, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, field, f"expected a number, got {shown(value)}")
    try:
        number = float(value)  # an integer literal of 400 digits is beyond a float
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        _fail(path, field, f"expected a finite number, got {shown(value)}")
    if minimum is not None and number < minimum:
        _fail(path, field, f"expected a number >= {minimum:g}, got {shown(value)}")
    return number


def _top(path: Path, data) -> dict:
    _object(path, "", data, "a JSON object with tolerance, metrics and cards")
    _known_fields(path, "", data, BASELINE_FIELDS)
    return data


def _tolerances(path: Path, tolerance) -> dict:
    """{"default" | METRIC: {"abs": x, "rel": y}}, each a finite number >= 0."""
    _object(path, "tolerance", tolerance, 'an object of metric -> {"abs": ..., "rel": ...}')
    for name, spec in tolerance.items():
        where = f"tolerance.{name}"
        _object(path, where, spec, 'an object such as {"abs": 0.0, "rel": 0.02}')
        _known_fields(path, where, spec, TOLERANCE_FIELDS)
        for key, value in spec.items():
            _number(path, f"{where}.{key}", value, minimum=0)
    return tolerance


def _split_key(key: str, parts: int) -> list[str] | None:
    """MODEL/TASK[/METRIC] split from the right (a model name may hold a "/"), or None."""
    pieces = key.rsplit("/", parts - 1)
    return pieces if len(pieces) == parts and all(pieces) else None


def _metrics(path: Path, metrics) -> dict:
    _object(path, "metrics", metrics, 'an object of "MODEL/TASK/METRIC" -> {"value": ..., "higher_is_better": ...}')
    if not metrics:
        _fail(path, "metrics", "is empty: a baseline with nothing to compare would pass every run")
    for key, spec in metrics.items():
        where = f"metrics.{key}"
        if not _split_key(key, 3):
            _fail(path, where, "key is not MODEL/TASK/METRIC")
        _object(path, where, spec, 'an object such as {"value": 0.1, "higher_is_better": true}')
        _known_fields(path, where, spec, METRIC_SPEC_FIELDS)
        if "value" not in spec:
            _fail(path, f"{where}.value", "missing")
        _number(path, f"{where}.value", spec["value"])
        higher = spec.get("higher_is_better")
        if higher is not None and not isinstance(higher, bool):
            _fail(path, f"{where}.higher_is_better", f"expected true, false or null, got {shown(higher)}")
    return metrics


def _cards(path: Path, cards) -> dict:
    """MODEL/TASK -> metric card: a non-empty object whose metric fields are plain JSON values."""
    _object(path, "cards", cards, "an object of MODEL/TASK -> metric card")
    for key, card in cards.items():
        where = f"cards.{key}"
        if not _split_key(key, 2):
            _fail(path, where, "key is not MODEL/TASK")
        _object(path, where, card, "an object (a metric card)")
        if not card:  # differences() skips an empty card: the settings check would be off in silence
            _fail(path, where, "is empty (remove the entry to compare without a card)")
        for name in COMPARED_FIELDS:
            value = card.get(name)
            if isinstance(value, (dict, list)):
                _fail(path, f"{where}.{name}", f"expected a string, number, true/false or null, got {shown(value)}")
        found = non_finite_field(card, where)
        if found:
            _fail(path, found[0], f"expected a finite number, got {found[1]}")
    return cards


def read_baseline(path: str | Path) -> dict:
    """The baseline, checked field by field; InputError ("FILE: field: what is wrong") if unusable."""
    path = Path(path)
    data = _top(path, _load(path))
    _tolerances(path, data.get("tolerance", {}))
    if "metrics" not in data:
        _fail(path, "metrics", "missing")
    _metrics(path, data["metrics"])
    _cards(path, data.get("cards", {}))
    return data


def tolerance_to_keep(path: str | Path) -> dict | None:
    """The tolerances `--update` carries over: None where there is no baseline yet. A baseline
    that exists but whose tolerances cannot be read stops the update rather than being
    replaced with the defaults in silence (its metrics and cards are replaced anyway)."""
    path = Path(path)
    if not path.exists():
        return None
    data = _top(path, _load(path))
    return _tolerances(path, data.get("tolerance", {})) or None


def tolerance_for(metric: str, tolerances: dict) -> dict:
    return {**DEFAULT_TOLERANCE, **tolerances.get("default", {}), **tolerances.get(metric, {})}


FAILING = ("regressed", "missing", "moved", "not finite")


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
        if not math.isfinite(e.value):  # NaN compares false with everything: it would pass as "ok"
            out.append(Comparison(key, base, e.value, allowed, "not finite"))
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
            out.append(f"{key}: {name} differs (baseline {compared(card, name)!r}, "
                       f"results {compared(current[key], name)!r})")
    return out


def unrecordable(entries: list[Entry]) -> list[Entry]:
    """The entries a baseline cannot hold: NaN and Infinity (strict JSON has neither)."""
    return [e for e in entries if not math.isfinite(e.value)]


def baseline_from(entries: list[Entry], tolerance: dict | None = None) -> dict:
    """The baseline of these results, without the unrecordable ones (the caller names them)."""
    recordable = [e for e in entries if math.isfinite(e.value)]
    ordered = sorted(recordable, key=lambda e: (e.model, e.task, e.metric))
    return {"tolerance": tolerance or {"default": dict(DEFAULT_TOLERANCE)},
            "cards": {f"{e.model}/{e.task}": e.card for e in ordered if e.card},
            "metrics": {f"{e.model}/{e.task}/{e.metric}": {"value": e.value, "higher_is_better": e.higher_is_better}
                        for e in ordered}}
