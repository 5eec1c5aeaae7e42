"""Results files -> leaderboard entries -> a Markdown table and an HTML page with plots.

Reads the `<model>/<task>.json` files that `crpo-bench run` writes (lm-eval results).
Within each task, models are ranked per metric (1 = best, by the metric's
higher_is_better). A model that is not a baseline is marked where it differs from the
best baseline beyond noise: |a - b| > 2 * sqrt(se_a^2 + se_b^2) (about a 95% two-sided
test of independent estimates), ▲ better, ▼ worse.

A value that is not a finite number (NaN, Infinity: a metric that could not be computed) is
shown as such, "NaN (not ranked)", and left out of ranks, marks and plots. A model name
that is not a string is refused (exit 2, naming the file and field) rather than converted:
`check` matches results to the baseline by name, so a guessed spelling could match the
wrong row. Names are escaped in both outputs (Markdown: | < > & \\ and newlines; HTML:
html.escape) and drawn without matplotlib's mathtext, so a `$` is just a character.
"""

from __future__ import annotations

import html
import io
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..scoring import registry
from ..scoring.card import COMPARED_FIELDS, compared, differences

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
    card: dict | None = None  # the metric card the value was made under (crpo_bench.scoring.card)
    where: str | None = None  # "FILE: results.TASK.KEY" it was read from, for messages


def shown(value) -> str:
    """A value as it is spelled in JSON ("x", NaN, Infinity), for messages; containers by kind."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def finite(value: float) -> bool:
    return math.isfinite(value)


def read_results(folder: str | Path) -> list[Entry]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"results folder {folder} does not exist")
    entries, first_file = [], {}
    for path in sorted(folder.glob("*/*.json")):
        found = _read_file(path)
        for model, task in dict.fromkeys((e.model, e.task) for e in found):
            # two results for one (model, task), e.g. a stale copy in results/m.bak/: which is
            # meant cannot be told, and letting one win silently could hide a regression
            other = first_file.setdefault((model, task), path)
            if other != path:
                raise ResultsError(f"two results for model {model!r} on task {task!r}: {other} and {path}; "
                                   "keep one (move the other out of the results folder)")
        entries += found
    if not entries:
        raise ResultsError(f"no results under {folder} (expected <model>/<task>.json from `crpo-bench run`)")
    return entries


def _read_file(path: Path) -> list[Entry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get("crpo_bench", {})
        model = _model_name(path, meta)
        baseline = meta.get("baseline", False)
        if not isinstance(baseline, bool):
            raise ResultsError(f"{path}: crpo_bench.baseline: expected true or false, got {shown(baseline)}")
        entries = []
        for task, metrics in data["results"].items():
            better = data.get("higher_is_better", {}).get(task, {})
            card = _card(path, data, meta, task)
            for key, value in metrics.items():
                metric, _, _ = key.partition(",")
                if metric.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                stderr = metrics.get(key.replace(",", "_stderr,", 1))
                stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None
                # a non-finite value is kept: dropping it would show a blank cell and let `check`
                # see a "missing" metric instead of a broken one
                entries.append(Entry(model, task, metric, float(value), stderr, better.get(metric), baseline, card,
                                     where=f"{path}: results.{task}.{key}"))
        return entries
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, OverflowError) as err:
        raise ResultsError(f"{path}: not an lm-eval results file ({type(err).__name__}: {err})") from None


def _model_name(path: Path, meta: dict) -> str:
    """The model's name: crpo_bench.model, else the folder's. Not converted from another type,
    since `check` matches results to a baseline by this name."""
    model = meta.get("model", path.parent.name)
    if not isinstance(model, str) or not model.strip():
        raise ResultsError(f"{path}: crpo_bench.model: expected a non-empty string, got {shown(model)}")
    return model


def _card(path: Path, data: dict, meta: dict, task: str) -> dict | None:
    """The metric card: crpo_bench.scoring.card (crpo-bench run), else the task's lm-eval metadata."""
    card, field = meta.get("card"), "crpo_bench.scoring.card"
    if not card:
        card, field = ((data.get("configs", {}).get(task) or {}).get("metadata") or {}).get("card"), \
            f"configs.{task}.metadata.card"
    if card is not None and not isinstance(card, dict):
        raise ResultsError(f"{path}: {field}: expected an object (a metric card), got {shown(card)}")
    return card or None


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
            key = tuple(json.dumps(compared(c, f), sort_keys=True) for f in COMPARED_FIELDS) if c else ("no card",)
            groups.setdefault(key, []).append(model)
        if len(groups) < 2:
            continue
        known = [by_model[models[0]] for models in groups.values() if by_model[models[0]]]
        fields = sorted({f for a in known for b in known for f in differences(a, b)}, key=COMPARED_FIELDS.index)
        for models in groups.values():
            c = by_model[models[0]]
            label = ", ".join(f"{f}={_short(compared(c or {}, f))}" for f in fields) if c else "no metric card"
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
        group = [e for e in group if finite(e.value)]  # NaN has no place in an order
        if not group:
            continue
        sign = -1 if group[0].higher_is_better is not False else 1
        values = sorted({sign * e.value for e in group})
        for e in group:
            out[e.model, task, metric] = values.index(sign * e.value) + 1
    return out


def versus_best_baseline(entries: list[Entry]) -> dict[tuple[str, str, str], str]:
    """(model, task, metric) -> '▲' or '▼' where a non-baseline model differs beyond noise."""
    marks = {}
    for group in _by_task_metric(entries).values():
        group = [e for e in group if finite(e.value)]
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


def _spelled(value: float) -> str:
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def rounded(value: float, stderr: float | None) -> str:
    """'value ± stderr' to the precision the standard error supports: the error to two
    significant digits, the value to the same decimal place (0.05494 ± 0.005392 ->
    0.0549 ± 0.0054); without a usable error, four significant digits."""
    if stderr is None or not finite(stderr) or stderr <= 0:
        return f"{value:.4g}" + (f" ± {stderr:.2g}" if stderr == 0 else "")
    places = max(0, 1 - math.floor(math.log10(stderr)))  # the decimal place of the second digit
    return f"{value:.{places}f} ± {stderr:.{places}f}"


UNVALIDATED = "†"


def unvalidated(e: Entry) -> bool:
    """An originality value on a task type its scorer was never validated on (its card says)."""
    return e.metric == "originality" and (e.card or {}).get("originality_domain") == "unvalidated task type"


def _cell(e: Entry, rank: int | None, mark: str) -> str:
    if not finite(e.value):
        return f"{_spelled(e.value)} (not ranked)"
    flag = f" {UNVALIDATED}" if unvalidated(e) else ""
    return f"{rounded(e.value, e.stderr)}{flag} ({rank}){' ' + mark if mark else ''}"


def win_rates(entries: list[Entry]) -> dict[str, tuple[float, int, tuple[str, ...]]]:
    """model -> (mean win rate, columns, tasks), as HELM ranks: in each (task, metric) column
    of the leaderboard with at least two models, a model's win rate is the share of the other
    models it beats there (ties count half); the overall figure is its mean over the columns it
    appears in, which come from `tasks`. Models that share no column with another get none."""
    columns = set(registry.leaderboard_columns())
    found: dict[str, list[float]] = {}
    tasks: dict[str, set[str]] = {}
    for (task, metric), group in _by_task_metric(entries).items():
        group = [e for e in group if finite(e.value) and e.higher_is_better is not None]
        if metric not in columns or len(group) < 2:
            continue
        sign = 1 if group[0].higher_is_better else -1
        for e in group:
            beaten = sum((sign * e.value > sign * o.value) + 0.5 * (e.value == o.value) for o in group if o is not e)
            found.setdefault(e.model, []).append(beaten / (len(group) - 1))
            tasks.setdefault(e.model, set()).add(task)
    return {model: (sum(rates) / len(rates), len(rates), tuple(sorted(tasks[model]))) for model, rates in found.items()}


OVERALL_RULE = ("Overall: mean win rate (as HELM ranks models): in each task's leaderboard column with at least "
                "two models, a model's win rate is the share of the other models it beats (ties count half); "
                "the mean is over the columns the model appears in (counted in the last column). Models are "
                "ranked only against those on the same tasks: rows are grouped by their tasks. Higher is better.")


def overall_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]] | None:
    rates = win_rates(entries)
    if not rates:
        return None
    baselines = {e.model for e in entries if e.baseline}
    order = sorted(rates, key=lambda m: (rates[m][2], -rates[m][0], m))
    rows = [[m, "baseline" if m in baselines else "model", ", ".join(rates[m][2]), f"{rates[m][0]:.2f}",
             str(rates[m][1])] for m in order]
    return ["model", "kind", "tasks", "mean win rate", "columns"], rows


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
                row.append(_cell(e, rank.get((model, task, metric)), marks.get((model, task, metric), "")) if e else "")
            rows.append(row)
        tables[task] = (["model", "kind", *metrics], rows)
    return tables


LEGEND = ("Cells: value ± standard error (rank among models, 1 = best). ▲/▼: better/worse than the best "
          "baseline by more than 2 combined standard errors.")
UNVALIDATED_NOTE = (f"{UNVALIDATED}: originality on a task type whose answers its scorer never saw rated by people "
                    "(an unvalidated task type; the results card names the types it was validated on and how it "
                    "transferred to held-out ones)")


def non_finite_note(entries: list[Entry]) -> str | None:
    """Where any value is NaN or infinite, a note saying so (the cells name them too)."""
    broken = [e for e in entries if not finite(e.value)]
    if not broken:
        return None
    return (f"{len(broken)} value(s) are not finite numbers (NaN or Infinity: the metric could not be computed); "
            "they are shown as such and left out of ranks, marks and plots")


_MD_ESCAPES = {"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_escape(text: str) -> str:
    """Text from results (model and task names) as literal Markdown table-cell text: a `|`
    would end the cell, a newline the row, and HTML in it would be rendered."""
    text = "".join(_MD_ESCAPES.get(c, c) for c in str(text))
    return text.replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def markdown(entries: list[Entry], notes: list[str] = ()) -> str:
    from tabulate import tabulate

    notes = [md_escape(n) for n in notes]
    parts = ["# crpo-bench leaderboard", "", LEGEND, "", *(f"Note: {n}." for n in notes), *([""] if notes else [])]
    overall = overall_table(entries)
    if overall:
        header, rows = overall
        table = tabulate([[md_escape(c) for c in row] for row in rows], header, tablefmt="github",
                         disable_numparse=True)
        parts += ["## Overall", "", table, "", OVERALL_RULE, ""]
    for task, (header, rows) in task_tables(entries).items():
        cells = [[md_escape(c) for c in row] for row in rows]
        # disable_numparse: a model named "1.50" stays "1.50", not the number 1.5
        table = tabulate(cells, [md_escape(h) for h in header], tablefmt="github", disable_numparse=True)
        parts += [f"## {md_escape(task)}", "", table, ""]
    note = non_finite_note(entries)
    if note:  # after the tables, so the tables keep their place in the file
        parts += [f"Note: {note}.", ""]
    if any(unvalidated(e) for e in entries):
        parts += [f"{UNVALIDATED_NOTE}.", ""]
    return "\n".join(parts)


# --- HTML page ---------------------------------------------------------------------------


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


@contextmanager
def _plain_text():
    """Labels drawn as given: without this, matplotlib reads `$...$` in a model name as
    mathtext and fails on, or mangles, a name such as `gpt-$5`. (A decorator: the labels'
    Text objects take the setting when they are made, and the SVG is saved inside.)"""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


@_plain_text()
def scatter(entries: list[Entry], task: str, x_metric: str, y_metric: str) -> str | None:
    plt, index = _pyplot(), _index(entries)
    points = [(m, index.get((m, task, x_metric)), index.get((m, task, y_metric)))
              for m in sorted({e.model for e in entries if e.task == task})]
    points = [(m, x, y) for m, x, y in points if x and y and finite(x.value) and finite(y.value)]
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


@_plain_text()
def profile(entries: list[Entry], task: str) -> str | None:
    """Each model's value on each dimension divided by the best model's (1 = best)."""
    import numpy as np

    plt, index, groups = _pyplot(), _index(entries), _by_task_metric(entries)
    metrics = table_metrics(entries, task)
    models = sorted({e.model for e in entries if e.task == task})
    if not metrics:
        return None
    best = {metric: max((abs(e.value) for e in groups[task, metric] if finite(e.value)), default=0.0) or 1.0
            for metric in metrics}
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(metrics), 3.6))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        heights = [_height(index.get((model, task, m)), best[m]) for m in metrics]
        ax.bar(np.arange(len(metrics)) + k * width, heights, width, label=model)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics, rotation=20, fontsize=8)
    ax.set_ylabel("value / best model's")
    ax.set_title(f"{task}: profile across dimensions", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not over them
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _height(e: Entry | None, best: float) -> float:
    return e.value / best if e is not None and finite(e.value) else 0.0  # no bar where there is no number


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


def page(entries: list[Entry], notes: list[str] = ()) -> str:
    index = _index(entries)
    sections = []
    overall = overall_table(entries)
    if overall:
        header, rows = overall
        head = "".join(f"<th title='click to sort'>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        sections.append(f"<section><h2>Overall</h2><table class='board'><thead><tr>{head}</tr></thead>"
                        f"<tbody>{body}</tbody></table><p class='note'>{html.escape(OVERALL_RULE)}</p></section>")
    for task, (header, rows) in task_tables(entries).items():
        head = "".join(f"<th title='click to sort'>{html.escape(h)}</th>" for h in header)
        body = []
        for row in rows:
            cells = []
            for name, cell in zip(header, row):
                e = index.get((row[0], task, name))
                value = f" data-value='{e.value!r}'" if e and finite(e.value) else ""
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
    broken = non_finite_note(entries)
    flagged = [UNVALIDATED_NOTE] if any(unvalidated(e) for e in entries) else []
    notes = "".join(f"<p class='note'>Note: {html.escape(n)}.</p>" for n in [*notes, *([broken] if broken else []),
                                                                              *flagged])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>crpo-bench leaderboard</title>"
            f"<style>{style}</style></head><body><h1>crpo-bench leaderboard</h1><p>{html.escape(LEGEND)}</p>"
            f"{notes}{''.join(sections)}<script>{SORT_SCRIPT}</script></body></html>\n")
