"""Per-group summaries of scored rows: means over the non-degenerate answers."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable


def summarize(rows: list[dict], fields: list[str], group: Callable[[dict], Hashable],
              include_degenerate: bool = False) -> dict:
    """group -> {"n", "degenerate", field: mean over non-degenerate rows with a value}.

    Degenerate answers are counted but left out of every mean, like they are left
    out of every corpus (`include_degenerate` keeps them, as the paper's code does);
    a field with no value in a group is None.
    """
    summary: dict = {}
    for row in rows:
        entry = summary.setdefault(group(row), {"n": 0, "degenerate": 0, "_values": {f: [] for f in fields}})
        entry["n"] += 1
        if row.get("degenerate"):
            entry["degenerate"] += 1
            if not include_degenerate:
                continue
        for f in fields:
            value = row.get(f)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                entry["_values"][f].append(value)
    for entry in summary.values():
        values = entry.pop("_values")
        entry.update({f: (sum(v) / len(v) if v else None) for f, v in values.items()})
    return summary
