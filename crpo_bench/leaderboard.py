"""Results files -> leaderboard entries -> a Markdown table and an HTML page with plots.

Reads the `<model>/<task>.json` files that `crpo-bench run` writes (lm-eval results).
Within each task, models are ranked per metric (1 = best, by the metric's
higher_is_better). A model that is not a baseline is marked where it differs from the
best baseline beyond noise: |a - b| > 2 * sqrt(se_a^2 + se_b^2) (about a 95% two-sided
test of independent estimates), ▲ better, ▼ worse.
"""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from . import registry
from .card import METRIC_FIELDS, differences

NOISE_Z = 2.0


class ResultsError(ValueError):
    """Results that cannot be read; the message names the file."""


@dataclass
class Entry:
    model: str
    task: str
    metric: str
    value: float
    stderr: float | None
    higher_is_better: bool | None
    baseline: bool
    card: dict | None = None  # the metric card the value was made under (crpo_bench.card)


def read_results(folder: str | Path) -> list[Entry]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"results folder {folder} does not exist")
    entries = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
            meta = data.get("crpo_bench", {})
            model = meta.get("model", path.parent.name)
            for task, metrics in data["results"].items():
                better = data.get("higher_is_better", {}).get(task, {})
                card = meta.get("card") or ((data.get("configs", {}).get(task) or {}).get("metadata") or {}).get("card")
                for key, value in metrics.items():
                    metric, _, _ = key.partition(",")
                    if metric.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    stderr = metrics.get(key.replace(",", "_stderr,", 1))
                    stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None
                    if math.isfinite(value):
                        entries.append(Entry(model, task, metric, float(value), stderr, better.get(metric),
                                             bool(meta.get("baseline", False)), card))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ResultsError(f"{path}: not an lm-eval results file ({type(err).__name__}: {err})") from None
    if not entries:
        raise ResultsError(f"no results under {folder} (expected <model>/<task>.json from `crpo-bench run`)")
    return entries


def separate_incomparable(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """Results of one task made under metric cards that differ in a field that changes a
    metric are never ranked together: each card gets its own table, named by the fields that
    differ. Returns the entries (tasks renamed where split) and one note per split task."""
    cards: dict[str, dict[str, dict | None]] = {}
    for e in entries:
        cards.setdefault(e.task, {})[e.model] = e.card
    rename, notes = {}, []
    for task, by_model in cards.items():
        groups: dict[tuple, list[str]] = {}
        for model, c in by_model.items():
            key = tuple(json.dumps((c or {}).get(f), sort_keys=True) for f in METRIC_FIELDS) if c else ("no card",)
            groups.setdefault(key, []).append(model)
        if len(groups) < 2:
            continue
        known = [by_model[models[0]] for models in groups.values() if by_model[models[0]]]
        fields = sorted({f for a in known for b in known for f in differences(a, b)}, key=METRIC_FIELDS.index)
        for models in groups.values():
            c = by_model[models[0]]
            label = ", ".join(f"{f}={_short((c or {}).get(f))}" for f in fields) if c else "no metric card"
            rename.update({(task, m): f"{task} [{label}]" for m in models})
        notes.append(f"{task}: results made under different settings are not ranked together "
                     f"(they differ in {', '.join(fields) or 'having a metric card'})")
    out = [Entry(**{**e.__dict__, "task": rename.get((e.task, e.model), e.task)}) for e in entries]
    return out, notes


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else "..." + text[-37:]


def table_metrics(entries: list[Entry], task: str) -> list[str]:
    """The registry's leaderboard columns, in its order, that the task reports."""
    present = {e.metric for e in entries if e.task == task}
    return [m for m in registry.leaderboard_columns() if m in present]


def _index(entries: list[Entry]) -> dict[tuple[str, str, str], Entry]:
    return {(e.model, e.task, e.metric): e for e in entries}


def _by_task_metric(entries: list[Entry]) -> dict[tuple[str, str], list[Entry]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.task, e.metric), []).append(e)
    return groups


def ranks(entries: list[Entry]) -> dict[tuple[str, str, str], int]:
    """(model, task, metric) -> rank within the task's models, 1 = best (ties share a rank)."""
    out = {}
    for (task, metric), group in _by_task_metric(entries).items():
        sign = -1 if group[0].higher_is_better is not False else 1
        values = sorted({sign * e.value for e in group})
        for e in group:
            out[e.model, task, metric] = values.index(sign * e.value) + 1
    return out


def versus_best_baseline(entries: list[Entry]) -> dict[tuple[str, str, str], str]:
    """(model, task, metric) -> '▲' or '▼' where a non-baseline model differs beyond noise."""
    marks = {}
    for group in _by_task_metric(entries).values():
        baselines = [e for e in group if e.baseline]
        if not baselines:
            continue
        higher = group[0].higher_is_better is not False
        best = max(baselines, key=lambda e: e.value if higher else -e.value)
        for e in group:
            if e.baseline or e.stderr is None or best.stderr is None:
                continue
            diff = e.value - best.value
            if abs(diff) > NOISE_Z * math.hypot(e.stderr, best.stderr):
                marks[e.model, e.task, e.metric] = "▲" if (diff > 0) == higher else "▼"
    return marks


def _cell(e: Entry, rank: int, mark: str) -> str:
    se = f" ± {e.stderr:.4g}" if e.stderr is not None else ""
    return f"{e.value:.4g}{se} ({rank}){' ' + mark if mark else ''}"


def task_tables(entries: list[Entry]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """task -> (header, rows) with cells 'value ± stderr (rank) mark'."""
    rank, marks, index = ranks(entries), versus_best_baseline(entries), _index(entries)
    baselines = {e.model for e in entries if e.baseline}
    tables = {}
    for task in sorted({e.task for e in entries}):
        metrics = table_metrics(entries, task)
        models = sorted({e.model for e in entries if e.task == task}, key=lambda m: (m not in baselines, m))
        rows = []
        for model in models:
            row = [model, "baseline" if model in baselines else "model"]
            for metric in metrics:
                e = index.get((model, task, metric))
                row.append(_cell(e, rank[model, task, metric], marks.get((model, task, metric), "")) if e else "")
            rows.append(row)
        tables[task] = (["model", "kind", *metrics], rows)
    return tables


LEGEND = ("Cells: value ± standard error (rank among models, 1 = best). ▲/▼: better/worse than the best "
          "baseline by more than 2 combined standard errors.")


def markdown(entries: list[Entry], notes: list[str] = ()) -> str:
    from tabulate import tabulate

    parts = ["# crpo-bench leaderboard", "", LEGEND, "", *(f"Note: {n}." for n in notes), *([""] if notes else [])]
    for task, (header, rows) in task_tables(entries).items():
        parts += [f"## {task}", "", tabulate(rows, header, tablefmt="github"), ""]
    return "\n".join(parts)


# --- HTML page ---------------------------------------------------------------------------


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def scatter(entries: list[Entry], task: str, x_metric: str, y_metric: str) -> str | None:
    plt, index = _pyplot(), _index(entries)
    points = [(m, index.get((m, task, x_metric)), index.get((m, task, y_metric)))
              for m in sorted({e.model for e in entries if e.task == task})]
    points = [(m, x, y) for m, x, y in points if x and y]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for model, x, y in points:
        ax.errorbar(x.value, y.value, xerr=x.stderr or 0, yerr=y.stderr or 0, fmt="s" if x.baseline else "o",
                    capsize=3, label=model)
        ax.annotate(model, (x.value, y.value), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(x_metric)
    ax.set_ylabel(y_metric)
    ax.set_title(f"{task}: {x_metric} vs {y_metric}", fontsize=10)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def profile(entries: list[Entry], task: str) -> str | None:
    """Each model's value on each dimension divided by the best model's (1 = best)."""
    import numpy as np

    plt, index, groups = _pyplot(), _index(entries), _by_task_metric(entries)
    metrics = table_metrics(entries, task)
    models = sorted({e.model for e in entries if e.task == task})
    if not metrics:
        return None
    best = {metric: max(abs(e.value) for e in groups[task, metric]) or 1.0 for metric in metrics}
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(metrics), 3.6))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        heights = [index[model, task, m].value / best[m] if (model, task, m) in index else 0.0 for m in metrics]
        ax.bar(np.arange(len(metrics)) + k * width, heights, width, label=model)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics, rotation=20, fontsize=8)
    ax.set_ylabel("value / best model's")
    ax.set_title(f"{task}: profile across dimensions", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not over them
    svg = _svg(fig)
    plt.close(fig)
    return svg


SORT_SCRIPT = """
for (const table of document.querySelectorAll('table.board')) {
  table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
    const body = table.tBodies[0], rows = Array.from(body.rows);
    const key = r => { const v = parseFloat(r.cells[col].dataset.value); return isNaN(v) ? r.cells[col].textContent : v; };
    const asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
    rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
    rows.forEach(r => body.appendChild(r));
  }));
}
"""


def page(entries: list[Entry]) -> str:
    index = _index(entries)
    sections = []
    for task, (header, rows) in task_tables(entries).items():
        head = "".join(f"<th title='click to sort'>{html.escape(h)}</th>" for h in header)
        body = []
        for row in rows:
            cells = []
            for name, cell in zip(header, row):
                e = index.get((row[0], task, name))
                value = f" data-value='{e.value!r}'" if e else ""
                cells.append(f"<td{value}>{html.escape(cell)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        quality = "quality" if any(e.metric == "quality" and e.task == task for e in entries) else "originality"
        plots = [scatter(entries, task, "novelty", quality), scatter(entries, task, "diversity", quality),
                 profile(entries, task)]
        figures = "".join(f"<figure class='plot'>{p}</figure>" for p in plots if p)
        note = "" if quality == "quality" else ("<p class='note'>No quality scores (no reward model): "
                                                "the scatter plots use originality instead.</p>")
        sections.append(f"<section><h2>{html.escape(task)}</h2><table class='board'><thead><tr>{head}</tr></thead>"
                        f"<tbody>{''.join(body)}</tbody></table>{note}<div class='plots'>{figures}</div></section>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #ccc;"
             "padding:4px 8px}th{cursor:pointer;background:#f3f3f3}.plots{display:flex;flex-wrap:wrap;gap:1em}"
             "figure.plot svg{max-width:520px;height:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>crpo-bench leaderboard</title>"
            f"<style>{style}</style></head><body><h1>crpo-bench leaderboard</h1><p>{html.escape(LEGEND)}</p>"
            f"{''.join(sections)}<script>{SORT_SCRIPT}</script></body></html>\n")
