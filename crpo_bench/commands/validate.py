"""`crpo-bench validate --data FILE`: how far every scorer agrees with human ratings."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from ..scoring import registry

# the registry's per-answer scores (a metric whose first field is its own name), except
# those needing a reward model; answer length as a baseline
SCORERS = (*(m for m, metric in registry.REGISTRY.items() if metric.scorer and metric.fields[0] == m
             and "reward_model" not in metric.needs), "length")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("validate", help="agreement of every scorer with human ratings (table and plot)")
    p.add_argument("--data", required=True, help="human-rated answers: ocsai file, MuCE-schema file, or 'hub'")
    p.add_argument("--scorers", nargs="+", choices=SCORERS, default=list(SCORERS))
    p.add_argument("--plot", type=Path, default=Path("validity.png"), help="where to write the plot (PNG)")
    p.add_argument("--iters", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--embedder")
    p.add_argument("--lm")
    p.add_argument("--transfer", action="store_true",
                   help="also fit originality v5 on --data in three cross-validations (random split, whole items held "
                        "out, whole task types held out) and print Spearman per task type beside length, semantic "
                        "distance and diversity")
    p.add_argument("--originality-model", nargs="+", metavar="MODEL",
                   help="trained originality model(s): a folder or a packaged name (v2 to v5; default v5). Two or more "
                        "are compared in one table, one row each")


def run(args: argparse.Namespace) -> int:
    from .. import muce, text
    from ..scoring import Scorer, ScoringConfig
    from ..stats.validity import validity

    from ..jsonl import check_writable

    # matplotlib adds .png to a name without a suffix: say the name it will have, and check it now
    args.plot = args.plot if args.plot.suffix else args.plot.with_name(args.plot.name + ".png")
    check_writable(args.plot, "plot")
    rows = muce.read_rated(args.data, "val" if args.data == "hub" else None)  # a local file is used whole
    if not rows:
        raise ValueError(f"{args.data}: no rated answers")
    answers = [str(r["Response"]) for r in rows]
    items = [str(r["Prompt"]) for r in rows]
    tasks = [muce.task_slug(str(r["TasksNamesFull"])) for r in rows]
    human = [r["facsco_grm_scaled"] for r in rows]
    originality_models = args.originality_model or [None]
    prompts = task_instructions(rows)
    columns = {}
    for k, model in enumerate(originality_models):
        scorer = Scorer(ScoringConfig(embedder=args.embedder, lm=args.lm, originality_model=model, progress=True))
        # the other scorers do not depend on the originality model: scored with the first one only
        metrics = [m for m in args.scorers if m != "length" and (k == 0 or m == "originality")]
        # corpus = the answers to one item of one task, as in the paper's per-prompt scope
        result = scorer.score(answers, corpus_ids=list(zip(tasks, items)), prompts=prompts, metrics=metrics,
                              items=items, tasks=tasks)
        for m in metrics:
            name = f"{m}[{model}]" if m == "originality" and len(originality_models) > 1 else m
            columns[name] = [row[registry.REGISTRY[m].fields[0]] for row in result.rows]
    if "length" in args.scorers:
        columns["length"] = [len(text.word_sequence(a)) for a in answers]
    names = [n for m in args.scorers for n in columns if n == m or n.startswith(f"{m}[")]

    def agreement(keep_row) -> dict:
        out = {}
        for name in names:
            keep = [k for k, v in enumerate(columns[name]) if v is not None and keep_row(k)]
            out[name] = validity([columns[name][k] for k in keep], [human[k] for k in keep],
                                 [(tasks[k], items[k]) for k in keep], iters=args.iters)
        return out

    stats = agreement(lambda k: True)
    print(f"{len(rows)} human-rated answers from {args.data}, {len(set(zip(tasks, items)))} items; "
          "95% bootstrap CIs over items")
    print(tabulate([[n, *(interval(v) for v in stats[n].values())] for n in names],
                   headers=["scorer", "Spearman", "Pearson", "Spearman within item", "Pearson within item"]))
    by_task = []
    for task in sorted(set(tasks)):
        per_task = agreement(lambda k: tasks[k] == task)
        n_items = len({items[k] for k in range(len(rows)) if tasks[k] == task})
        by_task += [[task, f"{tasks.count(task)} / {n_items}", n, interval(per_task[n]["spearman"]),
                     interval(per_task[n]["spearman_within"])] for n in names]
    print("\nper task type")
    print(tabulate(by_task, headers=["task", "answers / items", "scorer", "Spearman", "Spearman within item"]))
    if args.transfer:
        from ..scoring.originality_training import transfer_report, transfer_rows

        header, table = transfer_rows(transfer_report(rows, Scorer(ScoringConfig(embedder=args.embedder))))
        print("\noriginality v5 fitted on these ratings, cross-validated: Spearman with people within each task type")
        print(tabulate(table, headers=header, disable_numparse=True))
    plot(stats, args.plot)
    print(f"plot: {args.plot}")
    return 0


def interval(value: tuple) -> str:
    estimate, low, high = value
    return f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}]"


def plot(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats)
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (key, label) in enumerate((("spearman", "overall"), ("spearman_within", "within item"))):
        est = [stats[n][key][0] for n in names]
        err = [[stats[n][key][0] - stats[n][key][1] for n in names], [stats[n][key][2] - stats[n][key][0] for n in names]]
        ax.bar([i + (k - 0.5) * 0.38 for i in range(len(names))], est, 0.38, yerr=err, capsize=3, label=label)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("Spearman with human ratings")
    ax.set_title("Agreement of each scorer with human originality ratings (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def task_instructions(rows: list[dict]) -> list[str]:
    """What the tasks ask each rated answer's model: the paper's instruction for the row, so
    the surprise validated here is the surprise the tasks report."""
    from .. import muce

    return [muce.row_full_prompt(r) or str(r["Prompt"]) for r in rows]
