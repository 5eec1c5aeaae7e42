"""Does CrPO move what it weights? A small-scale replication on CPU, stage by stage.

    .venv/bin/python benchmarks/crpo_effect.py            # the full run (about 2.5 h on 2 cores)
    .venv/bin/python benchmarks/crpo_effect.py --smoke    # every stage at toy size (a few minutes; CI)

0. power:     before anything runs, the number of evaluation items each target needs so that its
              95% interval is at most half the paper's effect (benchmarks/crpo_effect/power.json,
              from the pilot run's per-item spread), checked against the planned items;
1. data:      preference pairs from ../shared/data/ocsai1/alltests_train.jsonl (training) and
              alltests_val.jsonl (held-out pairs for the mechanism check), `crpo-train pairs`,
              scored for novelty, diversity, surprise and originality with `crpo-train score`;
2. sft:       SmolLM2-135M-Instruct + LoRA on the training answers rated >= 30, merged: every
              variant starts from it, as the paper's DPO and CrPO start from its SFT model;
3. train:     one variant per entry of VARIANTS, from the SFT model, benchmarks/crpo_effect/recipe.yaml:
              the same seed, data order, steps and hyperparameters; only the trainer (DPO) or the
              lambdas (CrPO) differ. CrPO weights are normalised to mean 1 over the training pairs
              (crpo_normalize_weights), so every variant takes DPO's expected step size and only the
              direction differs: plain DPO is the one matched control of every variant;
4. evaluate:  the SFT model and every checkpoint through `crpo-bench run` (lm-eval) on the items
              of alltests_val.jsonl written as MuCE held-out rows: the same decoding (the MuCE
              tasks' temperature 0.7, top-p 0.95), 4 samples per item, one corpus per item;
5. items:     each model's answers scored per item (mean over its samples) for the table;
6. mechanism: each checkpoint's implicit reward margin on held-out pairs, against the pair's
              CrPO weight;
7. report:    differences to the control (DPO) and to SFT with paired bootstrap intervals over
              items, a verdict per variant, the power plan beside the intervals reached, the
              mechanism check, a leaderboard, results.json, RESULTS.md, effect.png.

A stage whose output exists is skipped, so an interrupted run resumes where it stopped
(`--work`, default .runs/crpo_effect). Each stage's console output is in <work>/logs/.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "ocsai1"
RECIPE = ROOT / "benchmarks" / "crpo_effect" / "recipe.yaml"
SFT_RECIPE = ROOT / "benchmarks" / "crpo_effect" / "sft.yaml"
POWER = ROOT / "benchmarks" / "crpo_effect" / "power.json"
BIN = Path(sys.executable).parent

# variant -> CrPO lambdas; {} is plain DPO (TRL's DPOTrainer)
VARIANTS = {
    "dpo": {},
    "crpo_novelty": {"novelty": 1.0},
    "crpo_diversity": {"diversity": 1.0},
    "crpo_surprise": {"surprise": 1.0},
    "crpo_cre": {"novelty": 1.0, "diversity": 1.0, "surprise": 1.0},
    "crpo_originality": {"originality": 1.0},
}
# With weights of mean 1 every CrPO variant takes DPO's expected step size: DPO is the matched control.
CONTROLS = {variant: "dpo" for variant, lambdas in VARIANTS.items() if lambdas}
# Items of alltests_val.jsonl per task type: the evaluation cannot have more than these.
VAL_ITEMS_PER_TASK = {"aut": 21, "instances": 12, "consequences": 6, "sentence_completion": 12}
# The paper's effect of CrPO over DPO (its main figure), on our scales: novelty and diversity as
# they are; surprise as log-perplexity (nats), the paper's perplexity 83 -> 231 being ln(231/83).
PAPER_EFFECTS = {"novelty": 0.097 - 0.088, "diversity": 0.46 - 0.355, "surprise": math.log(231 / 83)}
DIMENSIONS = ("novelty", "diversity", "surprise", "originality")
METRICS = (*DIMENSIONS, "words")  # words: answer length, to see whether a gain is only longer answers
TASKS = ("aut", "instances", "consequences", "sentence_completion")  # the four task types of the ocsai files


@dataclass(frozen=True)
class Scale:
    max_prompts: int  # training prompts per task type (crpo-train pairs --max-prompts)
    sft_steps: int  # optimiser steps of the SFT stage
    steps: int  # optimiser steps per variant
    batch: int  # pairs per step; every variant sees the same steps x batch pairs, once each
    items_per_task: int  # evaluation items per task type
    max_gen_toks: int
    heldout_pairs: int  # pairs of the mechanism check
    bootstrap: int  # resamples of every interval
    tasks: tuple[str, ...] = TASKS
    variants: tuple[str, ...] = tuple(VARIANTS)


# 12 items per task type: 42 items (alltests_val has 6 Consequences items), the power plan's need
FULL = Scale(max_prompts=6, sft_steps=40, steps=80, batch=8, items_per_task=12, max_gen_toks=64, heldout_pairs=256,
             bootstrap=2000)
SMOKE = Scale(max_prompts=2, sft_steps=2, steps=2, batch=2, items_per_task=1, max_gen_toks=16, heldout_pairs=8,
              bootstrap=200, tasks=("aut", "instances"), variants=("dpo", "crpo_novelty"))


# --- running the project's own commands ------------------------------------------------------


def call(name: str, args: list[str], work: Path) -> None:
    """Run a crpo-train / crpo-bench command, its output in <work>/logs/<name>.log."""
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        done = subprocess.run([str(BIN / args[0]), *args[1:]], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise SystemExit(f"stage {name} failed (exit {done.returncode}); last lines of {log}:\n" + "\n".join(tail))


# --- stages ----------------------------------------------------------------------------------


def make_pairs(work: Path, scale: Scale, train: Path, val: Path) -> None:
    call("pairs", ["crpo-train", "pairs", "--data", f"train={train}", "--data", f"val={val}",
                   "--max-prompts", str(scale.max_prompts), "--tasks", *scale.tasks, "--out", str(work / "pairs")], work)


def score_pairs(work: Path) -> None:
    call("score", ["crpo-train", "score", str(work / "pairs"), "--out", str(work / "scored"),
                   "--dimensions", *DIMENSIONS], work)


def train_sft(work: Path, scale: Scale) -> None:
    partial, final = work / "models" / "sft.partial", work / "models" / "sft"
    shutil.rmtree(partial, ignore_errors=True)
    call("train_sft", ["crpo-train", str(SFT_RECIPE), "--dataset_path", str(work / "scored"),
                       "--output_dir", str(partial), "--max_steps", str(scale.sft_steps),
                       "--per_device_train_batch_size", str(scale.batch)], work)
    partial.rename(final)  # only a finished training counts as done


def sft_model(work: Path) -> Path:
    return work / "models" / "sft" / "merged"


def train_variant(work: Path, scale: Scale, variant: str) -> None:
    partial, final = work / "models" / f"{variant}.partial", work / "models" / variant
    shutil.rmtree(partial, ignore_errors=True)
    lambdas = [arg for dim, lam in VARIANTS[variant].items() for arg in (f"--lambda_{dim}", str(lam))]
    normalised = ["--crpo_normalize_weights", "true"] if lambdas else []
    call(f"train_{variant}", ["crpo-train", str(RECIPE), "--trainer", "crpo" if lambdas else "dpo",
                              "--model_name_or_path", str(sft_model(work)),
                              "--dataset_path", str(work / "scored"), "--output_dir", str(partial),
                              "--max_steps", str(scale.steps), "--per_device_train_batch_size", str(scale.batch),
                              "--max_train_pairs", str(scale.steps * scale.batch), *lambdas, *normalised], work)
    partial.rename(final)  # only a finished training counts as done


def heldout_items_file(work: Path, val: Path) -> Path:
    """alltests_val.jsonl as MuCE held-out rows: the evaluation documents of the muce_* tasks."""
    from crpo_bench import muce
    from crpo_bench.jsonl import write_jsonl_atomic

    rows = [{k: v for k, v in r.items() if not k.startswith("_") and k != "split"} | {"Set": "HeldoutItem"}
            for r in muce.read_rated(val)]
    path = work / "heldout_items.jsonl"
    write_jsonl_atomic(path, rows)
    return path


def model_specs(work: Path, scale: Scale) -> list[str]:
    return [f"sft={sft_model(work)}", *(f"{v}={work / 'models' / v}" for v in scale.variants)]


def evaluate(work: Path, scale: Scale, items: Path) -> None:
    # `crpo-bench run` skips the (model, task) pairs already written: this stage resumes itself
    metadata = {"muce_data": str(items), "corpus": "prompt"}
    call("evaluate", ["crpo-bench", "run", "--model", *model_specs(work, scale),
                      "--tasks", *(f"muce_{t}" for t in scale.tasks), "--limit", str(scale.items_per_task),
                      "--gen-kwargs", json.dumps({"max_gen_toks": scale.max_gen_toks}),
                      "--metadata", json.dumps(metadata), "--out", str(work / "results")], work)


def item_scores(work: Path, scale: Scale) -> dict:
    """{"items": [[task, item], ...], "models": {model: {metric: [per-item mean]}}}: every model's
    answers to one item form one corpus, as in the tasks (`corpus: prompt`)."""
    from crpo_bench import text
    from crpo_bench.scoring import Scorer, ScoringConfig, counts

    scorer = Scorer(ScoringConfig(progress=False))
    out = {"items": None, "models": {}}
    for spec in model_specs(work, scale):
        model = spec.split("=", 1)[0]
        answers, prompts, owner, items, tasks, keys = [], [], [], [], [], []
        for task in scale.tasks:
            path = work / "results" / model / f"muce_{task}.samples.jsonl"
            for line in path.read_text().splitlines():
                sample = json.loads(line)
                doc, responses = sample["doc"], sample["filtered_resps"][0]
                keys.append([doc["muce_task"], doc["item"]])
                for answer in responses:
                    answers.append(answer), prompts.append(doc["prompt"]), owner.append(len(keys) - 1)
                    items.append(doc["item"]), tasks.append(doc["muce_task"])
        if out["items"] is None:
            out["items"] = keys
        elif out["items"] != keys:
            raise ValueError(f"{model}: evaluated other items than the SFT model")
        result = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=list(DIMENSIONS), items=items,
                              tasks=tasks)
        per_item = {m: defaultdict(list) for m in METRICS}
        for row, answer, k in zip(result.rows, answers, owner):
            if not counts(row["degenerate"], scorer.config.degenerate):
                continue
            for m in DIMENSIONS:
                if row.get(m) is not None:
                    per_item[m][k].append(row[m])
            per_item["words"][k].append(len(text.word_sequence(answer)))
        out["models"][model] = {m: [float(np.mean(per_item[m][k])) if per_item[m][k] else None
                                    for k in range(len(keys))] for m in METRICS}
    return out


def mechanism(work: Path, scale: Scale) -> dict:
    """Implicit reward margins of every checkpoint on held-out pairs (relative to the SFT
    model, which is every variant's reference), and each CrPO variant's weight of each pair."""
    import datasets
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crpo_bench.training.margins import answer_logps, implicit_margins

    torch.manual_seed(0)
    pairs = datasets.load_from_disk(str(work / "scored"))["val"].shuffle(seed=0)
    pairs = pairs.select(range(min(scale.heldout_pairs, len(pairs))))
    prompts = [p["prompt"] for p in pairs] * 2
    answers = [p["chosen"][-1]["content"] for p in pairs] + [p["rejected"][-1]["content"] for p in pairs]
    base_path = str(sft_model(work))
    tokenizer = AutoTokenizer.from_pretrained(base_path)

    def logps(adapter: Path | None) -> tuple[np.ndarray, np.ndarray]:
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter))
        values = answer_logps(model, tokenizer, prompts, answers)
        return values[: len(pairs)], values[len(pairs):]

    beta = float(_recipe()["beta"])
    ref_chosen, ref_rejected = logps(None)
    out = {"pairs": len(pairs), "beta": beta, "margins": {}, "weights": {}}
    for variant in scale.variants:
        lambdas = VARIANTS[variant]
        chosen, rejected = logps(work / "models" / variant)
        out["margins"][variant] = implicit_margins(chosen, rejected, ref_chosen, ref_rejected, beta).tolist()
        if lambdas:
            out["weights"][variant] = pair_weights(pairs, lambdas)
    return out


def pair_weights(pairs, lambdas: dict[str, float]) -> list[float]:
    """Each pair's CrPO weight under `lambdas`, as the trainer computes it (crpo_strategy add;
    a missing rejected score counts 0)."""
    from crpo_bench.training.trainer import pair_scores, score_columns
    from crpo_bench.training.weights import crpo_weight

    columns = {dim: score_columns(pairs, dim) for dim in lambdas}
    return [crpo_weight(*pair_scores(row, columns), lambdas, "add") for row in pairs]


def _recipe() -> dict:
    import yaml

    return yaml.safe_load(RECIPE.read_text())


# --- report ----------------------------------------------------------------------------------


def power_plan(pilot: dict, planned_items: int) -> dict:
    """Items each target needs so that its 95% interval is at most half the paper's effect.

    From a pilot run's per-item values: sd = the standard deviation over items of the paired
    difference (variant - DPO) on a metric, the median over the pilot's variants; the
    interval's half-width with n items is about 1.96 sd / sqrt(n), so n = (1.96 sd / (effect / 2))^2."""
    models = pilot["per_item"]["models"]
    plan = {}
    for metric, effect in PAPER_EFFECTS.items():
        sds = []
        for variant in (v for v in models if v.startswith("crpo_")):
            a = np.array([np.nan if v is None else v for v in models[variant][metric]], float)
            b = np.array([np.nan if v is None else v for v in models["dpo"][metric]], float)
            sds.append(float(np.nanstd(a - b, ddof=1)))
        sd = float(np.median(sds))
        needed = math.ceil((1.96 * sd / (effect / 2)) ** 2)
        plan[metric] = {"paper_effect": effect, "target_half_width": effect / 2, "pilot_sd": sd,
                        "items_needed": needed, "items_planned": planned_items,
                        "expected_half_width": 1.96 * sd / math.sqrt(planned_items)}
    return plan


def power_markdown(plan: dict, reached: dict | None = None) -> list[str]:
    """The power plan as a table; with `reached` ({metric: widest half-width over the variants
    targeting it}), the half-widths the run reached beside it."""
    from tabulate import tabulate

    rows = [[m, f"{p['paper_effect']:.3f}", f"{p['target_half_width']:.4f}", f"{p['pilot_sd']:.4f}",
             p["items_needed"], p["items_planned"], f"{p['expected_half_width']:.4f}",
             *([f"{reached[m]:.4f}" if m in reached else "-"] if reached is not None else [])]
            for m, p in plan.items()]
    headers = ["target", "paper's effect over DPO", "half-width wanted", "pilot sd of item differences",
               "items needed", "items planned", "half-width expected", *(["half-width reached"] if reached else [])]
    return [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)]


def statistics(items: dict, mech: dict, iters: int, trained_items: set[str]) -> dict:
    """Means, paired differences to DPO (the control) and to the SFT model (all items, and the
    items no training pair was about), and the mechanism check."""
    from crpo_bench.stats.effects import paired_correlation_difference, paired_difference
    from crpo_bench.metrics.rated_memory import item_key

    models = items["models"]
    values = {m: {k: np.array([np.nan if v is None else v for v in vs]) for k, vs in per.items()}
              for m, per in models.items()}
    means = {m: {k: float(np.nanmean(v)) for k, v in per.items()} for m, per in values.items()}
    unseen = np.array([item_key(*key) not in trained_items for key in items["items"]])
    versus = {}
    for reference, keep in (("dpo", True), ("sft", True), ("dpo_unseen_items", unseen)):
        against = reference.split("_")[0]
        versus[reference] = {m: {k: paired_difference(values[m][k][keep], values[against][k][keep], iters)
                                 for k in METRICS} for m in models if m != against}
    checks = {v: paired_correlation_difference(mech["weights"][v], mech["margins"][v], mech["margins"]["dpo"], iters)
              for v in mech["weights"]}
    mean_margin = {v: float(np.mean(m)) for v, m in mech["margins"].items()}
    controls = {v: c for v, c in CONTROLS.items() if v in models}
    reached = {}
    for variant, control in controls.items():
        for metric in targets(variant):
            e = versus[control][variant][metric]
            reached[metric] = max(reached.get(metric, 0.0), (e["high"] - e["low"]) / 2)
    return {"items": len(items["items"]), "unseen_items": int(unseen.sum()), "controls": controls, "means": means,
            "versus": versus, "mechanism": checks, "mean_margin": mean_margin, "half_width_reached": reached}


def trained_items(work: Path) -> set[str]:
    """The (task, item) of every training pair's prompt."""
    import datasets

    from crpo_bench.metrics.rated_memory import item_key

    train = datasets.load_from_disk(str(work / "scored"))["train"]
    return {item_key(t, i) for t, i in zip(train["task"], train["item"])}


def targets(variant: str) -> list[str]:
    return list(VARIANTS.get(variant, {}))


def interval(effect: dict, digits: int = 3) -> str:
    from crpo_bench.stats.effects import beyond_interval

    mark = " *" if beyond_interval(effect) else ""
    return f"{effect['diff']:+.{digits}f} [{effect['low']:+.{digits}f}, {effect['high']:+.{digits}f}]{mark}"


def verdict(effect: dict, metric: str | None = None) -> str:
    """Up / down / no detectable change; a null result names the scale it could have seen."""
    from crpo_bench.stats.effects import beyond_interval

    if beyond_interval(effect):
        return f"{'up' if effect['diff'] > 0 else 'down'} beyond the interval ({interval(effect)})"
    detectable = (effect["high"] - effect["low"]) / 2
    paper = PAPER_EFFECTS.get(metric)
    scale = (f"; an effect of about {detectable:.3g} or more would have shown"
             + (f" (the paper's: {paper:.3g})" if paper is not None else ""))
    return f"no change beyond the interval ({interval(effect)}{scale})"


def markdown(stats: dict, run: dict) -> str:
    from tabulate import tabulate

    lines = [f"# CrPO effect: {stats['items']} held-out items, {run['scale']['steps']} steps x "
             f"{run['scale']['batch']} pairs per variant", "",
             f"Stages run at commit {', '.join(sorted(set(run.get('stage_commits', {}).values())))}, report at "
             f"{run['commit']}; wall time {run['total_seconds'] / 60:.0f} min on this machine. "
             "Differences are means over items with 95% paired bootstrap intervals over items; "
             "`*`: the interval excludes 0. A variant's own target dimensions are in **bold**.", ""]
    titles = {"dpo": "Difference to DPO (the matched control)", "sft": "Difference to the SFT model (where all start)",
              "dpo_unseen_items": f"Difference to DPO on the {stats['unseen_items']} items no training pair was about"}
    for reference, title in titles.items():
        lines += [f"## {title}", ""]
        rows = []
        for model, per in stats["versus"][reference].items():
            rows.append([model, *(f"**{interval(per[k])}**" if k in targets(model) else interval(per[k])
                                  for k in METRICS)])
        lines += [tabulate(rows, headers=["model", *METRICS], tablefmt="github", disable_numparse=True), ""]
    lines += ["## Did each CrPO variant move its own target dimensions, compared with its control?", "",
              "Every CrPO variant trained with its weights normalised to mean 1 over the training pairs "
              "(`crpo_normalize_weights`), so it took DPO's expected step size at the same learning rate; "
              "a difference to DPO is the reweighting's direction, not a smaller or larger step.", ""]
    for model, control in stats["controls"].items():
        per = stats["versus"][control][model]
        lines.append(f"- {model} (control: {control}): "
                     + "; ".join(f"{k} {verdict(per[k], k)}" for k in targets(model)) + ".")
    lines += [""]
    if run.get("power"):
        lines += ["## Power (planned before the run)", "",
                  "Items needed so that each target's 95% interval is at most half the paper's effect over DPO "
                  "(surprise as log-perplexity), from the pilot run's per-item spread "
                  "(benchmarks/crpo_effect/power.json), and the widest half-width this run reached:", "",
                  *power_markdown(run["power"], stats.get("half_width_reached", {})), ""]
    lines += ["## Means per model", "",
              tabulate([[m, *(f"{per[k]:.3f}" for k in METRICS)] for m, per in stats["means"].items()],
                       headers=["model", *METRICS], tablefmt="github", disable_numparse=True), ""]
    lines += ["## Mechanism: does a checkpoint raise heavily weighted pairs' margins more than DPO does?", "",
              f"{run['mechanism_pairs']} held-out pairs (alltests_val). Spearman between a pair's CrPO weight "
              "(under the variant's lambdas) and how far the checkpoint raised the pair's implicit reward "
              "margin over the SFT model; DPO's column uses the same weights.", "",
              tabulate([[v, f"{c['a']:+.3f}", f"{c['b']:+.3f}", interval(c)] for v, c in stats["mechanism"].items()],
                       headers=["variant", "rho(weight, margin) CrPO", "rho(weight, margin) DPO",
                                "CrPO - DPO [95% CI]"], tablefmt="github", disable_numparse=True), "",
              "Mean implicit reward margin on the held-out pairs: "
              + ", ".join(f"{v} {m:+.3f}" for v, m in stats["mean_margin"].items()) + ".", ""]
    lines += ["## Wall time per stage", "",
              tabulate([[k, f"{v:.0f}"] for k, v in run["stage_seconds"].items()], headers=["stage", "seconds"],
                       tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)


def plot(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versus = stats["versus"]["dpo"]
    models = list(versus)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4))
    for ax, metric in zip(axes, METRICS):
        effects = [versus[m][metric] for m in models]
        ax.errorbar(range(len(models)), [e["diff"] for e in effects], fmt="o", capsize=4,
                    yerr=[[e["diff"] - e["low"] for e in effects], [e["high"] - e["diff"] for e in effects]])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(models)), models, rotation=35, ha="right")
        ax.set_title(metric)
    axes[0].set_ylabel("difference to DPO (95% CI over items)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(work: Path, out: Path, run: dict) -> dict:
    from crpo_bench.jsonl import write_text_atomic

    items = json.loads((work / "items.json").read_text())
    mech = json.loads((work / "mechanism.json").read_text())
    stats = statistics(items, mech, run["scale"]["bootstrap"], trained_items(work))
    out.mkdir(parents=True, exist_ok=True)
    call("leaderboard", ["crpo-bench", "leaderboard", "--results", str(work / "results"), "--out", str(out)], work)
    shutil.copytree(work / "results", out / "results", dirs_exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps({"run": run, **stats, "per_item": items}, indent=1))
    write_text_atomic(out / "RESULTS.md", markdown(stats, run))
    plot(stats, out / "effect.png")
    return stats


def estimate(stage: str, scale: Scale) -> float:
    """Rough seconds a stage takes on 2 CPU cores (for the progress bar's time left)."""
    models, items = len(scale.variants) + 1, len(scale.tasks) * scale.items_per_task
    return {"pairs": 10, "score": 100 * scale.max_prompts,  # mostly surprise: ~5 answers/s
            "evaluate": 30 + models * items * scale.max_gen_toks * 0.15,
            "items": 10 + models * items, "mechanism": 10 + models * scale.heldout_pairs * 0.15,
            "train_sft": 15 + 5 * scale.sft_steps * scale.batch / 8,
            }.get(stage, 15 + 9 * scale.steps * scale.batch / 8)  # a training: ~9 s per step of 8 pairs


# --- driver ----------------------------------------------------------------------------------


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT)
    return (head.stdout.strip() or "unknown") + ("-dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from crpo_bench.jsonl import write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every stage at toy size (a few minutes)")
    parser.add_argument("--work", type=Path, help="stage outputs (default .runs/crpo_effect[_smoke])")
    parser.add_argument("--out", type=Path, help="report folder (default leaderboard/crpo_effect; smoke: <work>/report)")
    parser.add_argument("--train", type=Path, default=SHARED / "alltests_train.jsonl")
    parser.add_argument("--val", type=Path, default=SHARED / "alltests_val.jsonl")
    parser.add_argument("--plan-power", type=Path, metavar="PILOT_RESULTS_JSON",
                        help=f"write the power plan from a pilot run's results.json to {POWER.relative_to(ROOT)}, "
                             "and stop")
    args = parser.parse_args(argv)
    if args.plan_power:
        items = sum(min(scale_items, FULL.items_per_task) for scale_items in VAL_ITEMS_PER_TASK.values())
        plan = power_plan(json.loads(args.plan_power.read_text()), items)
        write_text_atomic(POWER, json.dumps(plan, indent=1) + "\n")
        print("\n".join(power_markdown(plan)))
        return 0
    scale = SMOKE if args.smoke else FULL
    work = args.work or ROOT / ".runs" / ("crpo_effect_smoke" if args.smoke else "crpo_effect")
    out = args.out or (work / "report" if args.smoke else ROOT / "leaderboard" / "crpo_effect")
    for path in (args.train, args.val):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (the ocsai data: ../shared/data/ocsai1, or give --train/--val)")
    work.mkdir(parents=True, exist_ok=True)
    run_file = work / "run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {"stage_seconds": {}}
    wanted = json.loads(json.dumps(asdict(scale)))  # as run.json holds it (tuples become lists)
    if run.get("scale", wanted) != wanted:
        raise SystemExit(f"{work} holds a run at another scale ({run['scale']}); give another --work")
    run.update(scale=wanted, commit=commit())
    if not args.smoke:  # the power plan is written into the run before any stage runs
        run["power"] = json.loads(POWER.read_text())
        short = {m: p for m, p in run["power"].items() if p["items_needed"] > p["items_planned"]}
        if short:
            print(f"warning: the power plan wants more items for {sorted(short)} than planned", file=sys.stderr)

    stages = [("pairs", work / "pairs", lambda: make_pairs(work, scale, args.train, args.val)),
              ("score", work / "scored", lambda: score_pairs(work)),
              ("train_sft", work / "models" / "sft", lambda: train_sft(work, scale)),
              *((f"train_{v}", work / "models" / v, (lambda v=v: train_variant(work, scale, v)))
                for v in scale.variants),
              ("evaluate", work / "results" / ".done", lambda: (evaluate(work, scale, heldout_items_file(work, args.val)),
                                                               (work / "results" / ".done").touch())),
              ("items", work / "items.json",
               lambda: write_text_atomic(work / "items.json", json.dumps(item_scores(work, scale)))),
              ("mechanism", work / "mechanism.json",
               lambda: write_text_atomic(work / "mechanism.json", json.dumps(mechanism(work, scale))))]
    # the bar counts estimated seconds, so its time left follows the slow stages
    with tqdm(total=sum(estimate(name, scale) for name, *_ in stages), desc="crpo_effect", unit="s",
              bar_format="{l_bar}{bar}| {elapsed} elapsed, about {remaining} left {postfix}") as bar:
        for name, output, action in stages:
            bar.set_postfix_str(f"{name} (log: {work / 'logs'})")
            if not output.exists():
                start = time.perf_counter()
                action()
                run["stage_seconds"][name] = round(time.perf_counter() - start, 1)
                run.setdefault("stage_commits", {})[name] = run["commit"]
                write_text_atomic(run_file, json.dumps(run, indent=1))
            bar.update(estimate(name, scale))
    run["total_seconds"] = round(sum(run["stage_seconds"].values()), 1)
    run["mechanism_pairs"] = json.loads((work / "mechanism.json").read_text())["pairs"]
    stats = report(work, out, run)
    print(markdown(stats, run))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
