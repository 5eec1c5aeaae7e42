"""Surprise with a shared prompt: answers that share one prompt reuse one pass over it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_surprise_prefix.py [--answers 240] [--repeats 3]

`--answers` short answers to one 90-word prompt, scored by the packaged SmolLM2 in both scopes,
with the shared prefix (the default), with every sequence whole, and without the prompt; prints
the median times, the ratios (issue 27's bound: shared <= 1.5x the prompt-less run) and the
largest difference between shared and whole (nats).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from crpo_bench.metrics import surprise
from crpo_bench.models import load_causal_lm

PROMPT = ("You are taking part in a creativity study. Come up with an original and creative use for the following "
          "object. Think of uses that few people would come up with, describe your idea in a sentence, and do not "
          "list more than one idea. Write in plain English, without any introduction or explanation of why it is "
          "creative. The object is a brick, the ordinary red clay kind used to build houses and garden walls.")
IDEAS = ["a doorstop", "grind it into red pigment for a cave painting", "a tiny bed for a hamster", "build a wall",
         "heat it and wrap it in a towel to warm your bed", "a paperweight on a windy day", "a step to reach a shelf",
         "an anchor for a small boat", "carve it into a chess piece", "a bookend for heavy atlases"]


def timed(function, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    values = function(*args)
    return time.perf_counter() - start, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load_causal_lm("smollm2")
    answers = [f"{IDEAS[k % len(IDEAS)]} ({k})" for k in range(args.answers)]
    prompts = [PROMPT] * len(answers)
    whole = surprise.mean_token_nll

    def unshared(*a, **k):
        return whole(*a, **{**k, "groups": None})

    for scope, function in surprise.NLL_FUNCTIONS.items():
        runs = {"shared": [], "whole": [], "no prompt": []}
        for _ in range(args.repeats):
            seconds, shared = timed(function, model, tokenizer, prompts, answers)
            runs["shared"].append(seconds)
            runs["no prompt"].append(timed(function, model, tokenizer, [None] * len(answers), answers)[0])
            surprise.mean_token_nll = unshared
            try:
                seconds, plain = timed(function, model, tokenizer, prompts, answers)
            finally:
                surprise.mean_token_nll = whole
            runs["whole"].append(seconds)
        a, b, c = (statistics.median(runs[k]) for k in ("shared", "whole", "no prompt"))
        print(f"{scope}: {len(answers)} answers, shared prefix {a:.2f} s, whole sequences {b:.2f} s, the same "
              f"answers without a prompt {c:.2f} s (medians of {args.repeats}): {b / a:.2f}x faster than whole, "
              f"{a / c:.2f}x the prompt-less run; largest difference {np.nanmax(np.abs(shared - plain)):.2e} nats")


if __name__ == "__main__":
    main()
