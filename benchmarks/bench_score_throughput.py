"""Scoring throughput against its floor: answers/s and peak memory per metric, and each metric's
time over the least work it could do.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_score_throughput.py [--answers 240] [--repeats 3]
        [--pairs-prompts 2]

Answers: the first `--answers` of the ocsai validation file in ../shared (real MuCE answers of 4
task types, each with the paper's prompt for its item), else the embedded examples. Each metric
is scored alone by a fresh Scorer (models loaded before the clock starts, no disk cache), in a
child process of its own so that its peak memory (max RSS) is its own. The floors:

- embedding metrics: one encode of each distinct text they need (dsi/novelty: the answers'
  distinct words; diversity/themes: the distinct answers; semantic distance/originality: the
  distinct answers and items);
- surprise: one forward pass over the answer tokens plus one over each distinct prompt;
- n-gram diversity has no model: its floor is 0 and only its rate is shown.

Then `crpo-train score` end to end on pairs made by `crpo-train pairs` (answers/s over the
answers it scores). Run it against another checkout (`PYTHONPATH=../old`) for a before/after:
it uses only the public Scorer API.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OCSAI = ROOT.parent / "shared" / "data" / "ocsai1"
METRICS = ("dsi", "novelty", "diversity", "theme_uniqueness", "ngram_diversity", "semantic_distance", "originality",
           "surprise")


def load_answers(n: int) -> list[dict]:
    from crpo_bench import muce

    if (OCSAI / "alltests_val.jsonl").is_file():
        rows = muce.read_rated(OCSAI / "alltests_val.jsonl", "val")[:n]
        return [{"response": r["Response"], "prompt": muce.row_full_prompt(r), "item": r["Prompt"],
                 "task": muce.task_slug(muce.task_name(r["TasksNamesFull"]), strict=False)} for r in rows]
    rows = [json.loads(line) for line in (ROOT / "examples" / "responses.jsonl").open()]
    return [{"response": r["response"], "prompt": r.get("prompt"), "item": r.get("item") or r.get("prompt"),
             "task": r.get("task") or ""} for r in rows][:n]


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def floor_seconds(metric: str, rows: list[dict], scorer, lm=None) -> float:
    """The least work `metric` needs on `rows`, timed."""
    from crpo_bench import text

    cfg = scorer.config
    answers = list(dict.fromkeys(r["response"] for r in rows))
    if metric in ("dsi", "novelty"):
        words = sorted({w for a in answers for w in text.unique_words(a, cfg.tokenizer)})
        return timed(lambda: scorer.embedder.encode(words, batch_size=cfg.word_batch_size))
    if metric in ("diversity", "theme_uniqueness"):
        return timed(lambda: scorer.embedder.encode(answers, batch_size=cfg.text_batch_size))
    if metric in ("semantic_distance", "originality"):
        texts = list(dict.fromkeys(answers + [r["item"] for r in rows]))
        return timed(lambda: scorer.embedder.encode(texts, batch_size=cfg.text_batch_size))
    if metric == "surprise":
        return timed(lambda: forward_once(rows, *lm))
    return 0.0


def forward_once(rows: list[dict], model, tokenizer) -> None:
    """One forward pass over every answer's tokens and one over each distinct prompt's chat."""
    import torch

    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    sequences = [tokenizer(r["response"], add_special_tokens=False)["input_ids"] for r in rows]
    sequences += [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"] for p in prompts]
    sequences.sort(key=len)
    with torch.inference_mode():
        for start in range(0, len(sequences), 16):
            batch = sequences[start : start + 16]
            width = max(len(s) for s in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, s in enumerate(batch):
                ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
            model(input_ids=ids, attention_mask=mask)


def measure(metric: str, n: int, repeats: int) -> dict:
    """In this (child) process: `metric`'s median seconds over `repeats` fresh Scorers, its floor, peak RSS."""
    from crpo_bench.models import load_causal_lm
    from crpo_bench.scoring import Scorer, ScoringConfig

    rows = load_answers(n)
    config = ScoringConfig(embedding_cache=False)
    warm = Scorer(config)
    warm.score([r["response"] for r in rows[:4]], prompts=[r["prompt"] for r in rows[:4]], metrics=[metric],
               items=[r["item"] for r in rows[:4]], tasks=[r["task"] for r in rows[:4]])  # models loaded

    def run() -> None:
        Scorer(config).score([r["response"] for r in rows], prompts=[r["prompt"] for r in rows], metrics=[metric],
                             items=[r["item"] for r in rows], tasks=[r["task"] for r in rows])

    seconds = statistics.median(timed(run) for _ in range(repeats))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the floor's own models load
    lm = load_causal_lm() if metric == "surprise" else None
    floor = statistics.median(floor_seconds(metric, rows, warm, lm) for _ in range(repeats))
    return {"metric": metric, "answers": len(rows), "seconds": seconds, "floor": floor, "peak_mib": peak}


def train_score_rate(prompts: int) -> dict:
    """`crpo-train pairs` then `crpo-train score` (default dimensions) as a user runs them."""
    binary = Path(sys.executable).parent / "crpo-train"
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([str(binary), "pairs", "--data", f"train={OCSAI / 'alltests_val.jsonl'}", "--max-prompts",
                        str(prompts), "--out", f"{work}/pairs"], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run([str(binary), "score", f"{work}/pairs", "--out", f"{work}/scored"], check=True,
                       capture_output=True)
        seconds = time.perf_counter() - start
        import datasets

        scored = datasets.load_from_disk(f"{work}/scored")
        pairs = sum(len(split) for split in scored.values())
        answers = sum(len({(row["prompt"][0]["content"], row["chosen"][0]["content"]) for row in split})
                      for split in scored.values())
    return {"seconds": seconds, "pairs": pairs, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs-prompts", type=int, default=3, help="prompts per task type for crpo-train score")
    parser.add_argument("--metric", help=argparse.SUPPRESS)  # the child process's one metric
    args = parser.parse_args()
    if args.metric:
        print(json.dumps(measure(args.metric, args.answers, args.repeats)))
        return
    import crpo_bench

    print(f"crpo_bench from {Path(crpo_bench.__file__).parent}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'metric':18} {'answers/s':>10} {'seconds':>8} {'floor s':>8} {'x floor':>8} {'peak MiB':>9}")
    for metric in METRICS:
        child = subprocess.run([sys.executable, __file__, "--metric", metric, "--answers", str(args.answers),
                                "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        ratio = f"{r['seconds'] / r['floor']:8.2f}" if r["floor"] > 0 else f"{'-':>8}"
        print(f"{metric:18} {r['answers'] / r['seconds']:10.1f} {r['seconds']:8.2f} {r['floor']:8.2f} {ratio} "
              f"{r['peak_mib']:9.0f}")
    if (OCSAI / "alltests_val.jsonl").is_file():
        t = train_score_rate(args.pairs_prompts)
        print(f"crpo-train score: {t['seconds']:.1f} s for {t['pairs']} pairs, {t['answers']} distinct chosen "
              f"answers ({t['answers'] / t['seconds']:.2f} answers/s; process start and model loading included)")


if __name__ == "__main__":
    main()
