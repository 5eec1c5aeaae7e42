"""CrPO against vanilla DPO: training step time on the same model and the same batches.

    OMP_NUM_THREADS=1 python benchmarks/bench_crpo_step.py [--model smollm2] [--steps 20]

Both trainers get identical batches of real ocsai pairs (or synthetic ones without the
shared data); steps alternate between the two so machine noise hits both alike. Prints
the median step time of each and CrPO's overhead three ways: ratio of medians, median of
the paired (same batch, back to back) step ratios, ratio of minima.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from crpo_bench.models import causal_lm_path
from crpo_bench.training import CrPOConfig, CrPOTrainer

OCSAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocsai1" / "alltests_train.jsonl"


def pairs(n: int) -> datasets.Dataset:
    if OCSAI.is_file():
        from crpo_bench import muce
        from crpo_bench.training.pairs import PairSettings, build_pairs

        rows = build_pairs(muce.read_rated(OCSAI, "train"), PairSettings(), {"aut"}, max_prompts=1)["train"][:n]
    else:
        rows = [{"prompt": [{"role": "user", "content": f"Come up with a creative use for item {i}."}],
                 "chosen": [{"role": "assistant", "content": f"use it as a tiny boat for ant number {i}"}],
                 "rejected": [{"role": "assistant", "content": "hold things"}]} for i in range(n)]
    for k, row in enumerate(rows):
        row["chosen_novelty"], row["chosen_diversity"] = (k % 7) / 7, (k % 5) / 5
    return datasets.Dataset.from_list(rows)


def trainer(kind: str, model_path: str, data, out: str, batch: int):
    common = dict(output_dir=out, per_device_train_batch_size=batch, max_length=128, use_cpu=True, bf16=False,
                  gradient_checkpointing=False, report_to="none", learning_rate=0.0, seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if kind == "dpo":
        return DPOTrainer(model, args=DPOConfig(**common), train_dataset=data, processing_class=tokenizer)
    config = CrPOConfig(**common, lambda_novelty=1.0, lambda_diversity=1.0)
    return CrPOTrainer(model, args=config, train_dataset=data, processing_class=tokenizer)


def step_time(t, batch) -> float:
    t.model.train()
    start = time.perf_counter()
    t.training_step(t.model, batch)
    t.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    model_path = causal_lm_path(args.model)
    data = pairs(args.batch * args.steps)
    with tempfile.TemporaryDirectory() as out:
        dpo, crpo = trainer("dpo", model_path, data, out, args.batch), trainer("crpo", model_path, data, out,
                                                                                args.batch)
        times = {"dpo": [], "crpo": []}
        for step in range(args.steps + 1):  # step 0 warms up both and is not counted
            rows = list(range(step * args.batch % len(data), step * args.batch % len(data) + args.batch))
            for name, t in (("dpo", dpo), ("crpo", crpo)) if step % 2 else (("crpo", crpo), ("dpo", dpo)):
                batch = t._prepare_inputs(t.data_collator([t.train_dataset[i] for i in rows]))
                t.current_gradient_accumulation_steps = 1  # set by train(), which we bypass
                seconds = step_time(t, batch)
                if step:
                    times[name].append(seconds)
    dpo_s, crpo_s = statistics.median(times["dpo"]), statistics.median(times["crpo"])
    # each step runs both trainers on the same batch back to back: the ratio of a pair
    # cancels the machine's slow drifts, which a shared 2-core machine has plenty of
    paired = statistics.median(c / d for c, d in zip(times["crpo"], times["dpo"]))
    print(f"model {args.model}, batch {args.batch} pairs, {args.steps} steps each, "
          f"torch threads {torch.get_num_threads()}")
    print(f"| trainer | median step s | min s |\n|---|---|---|\n| DPOTrainer | {dpo_s:.3f} | {min(times['dpo']):.3f} |"
          f"\n| CrPOTrainer | {crpo_s:.3f} | {min(times['crpo']):.3f} |")
    print(f"CrPO overhead: {100 * (crpo_s / dpo_s - 1):+.1f}% of medians; {100 * (paired - 1):+.1f}% median of "
          f"paired step ratios; {100 * (min(times['crpo']) / min(times['dpo']) - 1):+.1f}% of minima (target +3%)")


if __name__ == "__main__":
    main()
