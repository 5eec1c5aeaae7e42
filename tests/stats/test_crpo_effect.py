"""The pieces of benchmarks/crpo_effect.py that decide its numbers: paired differences,
the mechanism check's correlation difference, answer log-probabilities, implicit reward
margins and the held-out pairs' CrPO weights. (.ci/run runs the whole script with --smoke.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from crpo_bench.stats.effects import beyond_interval, paired_correlation_difference, paired_difference

ROOT = Path(__file__).resolve().parents[2]


def load_experiment():
    spec = importlib.util.spec_from_file_location("crpo_effect", ROOT / "benchmarks" / "crpo_effect.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_constant_shift_has_a_zero_width_interval_at_the_shift():
    a = np.array([0.1, 0.5, 0.9, 0.3, 0.7])
    effect = paired_difference(a + 0.25, a, iters=500)
    assert effect["diff"] == pytest.approx(0.25)
    assert effect["low"] == pytest.approx(0.25) and effect["high"] == pytest.approx(0.25)
    assert beyond_interval(effect) and effect["items"] == 5


def test_paired_difference_is_the_mean_item_difference_and_drops_unscored_items():
    a = np.array([1.0, 2.0, np.nan, 4.0, 0.0])
    b = np.array([0.0, 3.0, 5.0, 1.0, np.nan])
    effect = paired_difference(a, b, iters=2000, seed=3)
    kept = [1.0 - 0.0, 2.0 - 3.0, 4.0 - 1.0]
    assert effect["items"] == 3 and effect["diff"] == pytest.approx(np.mean(kept))
    # every resampled mean lies between the smallest and largest item difference
    assert min(kept) <= effect["low"] <= effect["diff"] <= effect["high"] <= max(kept)
    # a difference that items explain either way is not beyond its interval
    assert not beyond_interval(paired_difference([1.0, -1.0, 1.0, -1.0], [0.0] * 4, iters=2000))


def test_the_interval_is_the_percentiles_of_resampled_item_means():
    """Brute force: draw the same item indices one resample at a time."""
    d = np.array([0.3, -0.1, 0.8, 0.05, 0.4, -0.2, 0.6])
    effect = paired_difference(d, np.zeros_like(d), iters=300, seed=7)
    draws = np.random.default_rng(7).integers(0, len(d), (300, len(d)))
    means = sorted(sum(d[k] for k in row) / len(d) for row in draws)
    assert effect["low"] == pytest.approx(np.percentile(means, 2.5))
    assert effect["high"] == pytest.approx(np.percentile(means, 97.5))


def test_paired_values_must_cover_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_correlation_difference_of_opposite_responses_is_two():
    x = np.arange(10.0)
    check = paired_correlation_difference(x, x ** 2, -x, iters=200)
    assert (check["a"], check["b"], check["diff"]) == pytest.approx((1.0, -1.0, 2.0))
    same = paired_correlation_difference(x, np.sin(x), np.sin(x), iters=200)
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_folder, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_lm_folder), tiny_tokenizer


def test_answer_logps_equal_a_token_by_token_sum(tiny_lm):
    """Batched and right-padded vs one unpadded forward per answer token."""
    import torch

    from crpo_bench.training.margins import answer_logps, chat_token_ids

    model, tokenizer = tiny_lm
    prompts = [[{"role": "user", "content": "A brick can be"}], [{"role": "user", "content": "Rain on the window"}],
               [{"role": "user", "content": "Write a poem about the sea and memory, please."}]]
    answers = ["a doorstop", "rain on the street; the gutters hum a borrowed hymn", "the sea"]
    batched = answer_logps(model, tokenizer, prompts, answers, batch_size=3)
    for prompt, answer, value in zip(prompts, answers, batched):
        ids, start = chat_token_ids(tokenizer, prompt, answer)
        total = 0.0
        for t in range(start, len(ids)):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            total += float(torch.log_softmax(logits, dim=-1)[ids[t]])
        assert value == pytest.approx(total, abs=1e-4)
    # the answer tokens are those after the prompt's generation prompt
    ids, start = chat_token_ids(tokenizer, prompts[0], answers[0])
    assert tokenizer.decode(ids[start:]).startswith("a doorstop")


def test_implicit_margin_is_beta_times_the_difference_of_log_ratios():
    from crpo_bench.training.margins import implicit_margins

    margin = implicit_margins([-10.0, -4.0], [-12.0, -3.0], [-11.0, -5.0], [-11.0, -2.0], beta=0.1)
    assert margin == pytest.approx([0.1 * ((-10 + 11) - (-12 + 11)), 0.1 * ((-4 + 5) - (-3 + 2))])


def test_held_out_pair_weights_are_the_trainers_weights():
    import datasets

    from crpo_bench.training.trainer import CrPOConfig, add_weights

    pairs = datasets.Dataset.from_list([
        {"novelty_chosen": 0.9, "novelty_rejected": 0.2, "diversity_chosen": 0.4, "diversity_rejected": None,
         "surprise_chosen": 0.1, "surprise_rejected": 0.5},
        {"novelty_chosen": 0.3, "novelty_rejected": 0.6, "diversity_chosen": 1.0, "diversity_rejected": 0.1,
         "surprise_chosen": 0.7, "surprise_rejected": 0.0},
    ])
    lambdas = {"novelty": 1.0, "diversity": 0.5, "surprise": 2.0}
    experiment = load_experiment()
    config = CrPOConfig(output_dir="unused", use_cpu=True, **{f"lambda_{k}": v for k, v in lambdas.items()})
    assert experiment.pair_weights(pairs, lambdas) == pytest.approx(add_weights(pairs, config)["crpo_weight"])
    # by hand: 0.7 + 0.5 * 0.4 (no rejected diversity: counts 0) + 0; 0 + 0.5 * 0.9 + 2 * 0.7
    assert experiment.pair_weights(pairs, lambdas) == pytest.approx([0.9, 1.85])


def test_missing_data_and_a_run_at_another_scale_are_refused_by_name(tmp_path):
    experiment = load_experiment()
    with pytest.raises(SystemExit, match="nowhere.jsonl: no such file"):
        experiment.main(["--smoke", "--work", str(tmp_path), "--train", str(tmp_path / "nowhere.jsonl")])
    data = tmp_path / "rated.jsonl"
    data.write_text("")
    (tmp_path / "run.json").write_text(json.dumps({"scale": {"steps": 1}, "stage_seconds": {}}))
    with pytest.raises(SystemExit, match="at another scale"):
        experiment.main(["--smoke", "--work", str(tmp_path), "--train", str(data), "--val", str(data)])


def test_normalised_weights_average_one_and_keep_their_ratios():
    import datasets

    from crpo_bench.training.trainer import WEIGHT, CrPOConfig, add_weights, mean_one_scale

    pairs = datasets.Dataset.from_list([{"novelty_chosen": c, "novelty_rejected": r}
                                        for c, r in ((0.9, 0.1), (0.5, 0.4), (0.2, 0.6), (1.0, 0.0))])
    config = CrPOConfig(output_dir="unused", use_cpu=True, lambda_novelty=1.0, crpo_normalize_weights=True)
    raw = add_weights(pairs, config)[WEIGHT]  # 0.8, 0.1, 0, 1.0
    scale = mean_one_scale(add_weights(pairs, config))
    assert scale == pytest.approx(4 / 1.9)
    scaled = add_weights(pairs, config, scale=scale)[WEIGHT]
    assert np.mean(scaled) == pytest.approx(1.0) and scaled == pytest.approx([w * 4 / 1.9 for w in raw])
    zero = datasets.Dataset.from_list([{"novelty_chosen": 0.1, "novelty_rejected": 0.5}])
    with pytest.raises(ValueError, match="every training pair has weight 0"):
        mean_one_scale(add_weights(zero, config))


def test_the_trainer_uses_mean_one_weights_when_asked(tiny_lm_folder, tmp_path):
    """A CrPOTrainer built with crpo_normalize_weights holds weights of mean 1 over its training pairs."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crpo_bench.training.trainer import WEIGHT, CrPOConfig, CrPOTrainer

    rows = [{"prompt": [{"role": "user", "content": f"use {k}"}], "chosen": [{"role": "assistant", "content": "a boat"}],
             "rejected": [{"role": "assistant", "content": "a hat"}], "novelty_chosen": c, "novelty_rejected": 0.1}
            for k, c in enumerate((0.9, 0.5, 0.3, 0.2))]
    config = CrPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", lambda_novelty=1.0,
                        crpo_normalize_weights=True, max_length=32, per_device_train_batch_size=2)
    trainer = CrPOTrainer(AutoModelForCausalLM.from_pretrained(tiny_lm_folder), args=config,
                          train_dataset=datasets.Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(tiny_lm_folder))
    weights = trainer.train_dataset[WEIGHT]
    assert np.mean(weights) == pytest.approx(1.0)
    assert weights == pytest.approx([w / np.mean([0.8, 0.4, 0.2, 0.1]) for w in (0.8, 0.4, 0.2, 0.1)])


def test_power_plan_is_the_normal_approximation_of_the_pilots_item_spread():
    experiment = load_experiment()
    rng = np.random.default_rng(0)
    base = rng.normal(size=20)
    models = {"dpo": {m: base.tolist() for m in ("novelty", "diversity", "surprise")}}
    for k, variant in enumerate(("crpo_a", "crpo_b", "crpo_c")):
        models[variant] = {m: (base + rng.normal(scale=0.01 * (k + 1), size=20)).tolist()
                           for m in ("novelty", "diversity", "surprise")}
    plan = experiment.power_plan({"per_item": {"models": models}}, planned_items=42)
    for metric, effect in experiment.PAPER_EFFECTS.items():
        sds = sorted(np.std(np.array(models[v][metric]) - base, ddof=1) for v in ("crpo_a", "crpo_b", "crpo_c"))
        assert plan[metric]["pilot_sd"] == pytest.approx(sds[1])  # the median of three
        assert plan[metric]["items_needed"] == int(np.ceil((1.96 * sds[1] / (effect / 2)) ** 2))
        assert plan[metric]["expected_half_width"] == pytest.approx(1.96 * sds[1] / np.sqrt(42))
    committed = json.loads((ROOT / "benchmarks" / "crpo_effect" / "power.json").read_text())
    assert all(p["items_needed"] <= p["items_planned"] for p in committed.values())
