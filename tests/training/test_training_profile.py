"""The paper's training path (`--profile paper`, `--rules paper`, `crpo-train sft-data`, the
published recipes) against independent recomputations on fixtures: each rule where the
paper's code and ours differ."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench.metrics.quality import reward_inputs
from crpo_bench.scoring import ScoreResult, ScoringConfig
from crpo_bench.training.pairs import PairSettings, build_pairs, sft_messages
from crpo_bench.training.recipe import RECIPES, parse, resolve_recipe
from crpo_bench.training.scores import score_pairs

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class FixedScorer:
    """Raw metric values looked up by answer: the normalisation is all that is tested."""

    def __init__(self, raw: dict[str, dict], degenerate: str = "exclude"):
        self.raw, self.config = raw, ScoringConfig(degenerate=degenerate)

    def score(self, responses, corpus_ids, prompts, metrics, items, tasks):
        return ScoreResult([dict(self.raw[r]) for r in responses])


def pair(prompt: str, chosen: str, rejected: str = "x") -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "score_chosen": 40.0, "score_rejected": 20.0}


def raw(novelty, diversity, perplexity, degenerate=None):
    return {"novelty": novelty, "diversity": diversity, "surprise": math.log(perplexity), "perplexity": perplexity,
            "degenerate": degenerate}


RAW = {"a": raw(0.1, 0.2, 3.0), "b": raw(0.2, 0.4, 4.0), "c": raw(0.3, 0.6, 5.0), "d": raw(0.4, 0.8, 20.0),
       "lone": raw(0.25, 0.0, 7.0), "word": raw(0.9, 0.7, 9.0, degenerate="one_word"), "x": raw(0, 0, 1.0)}
SPLITS = {"train": [pair("P", a) for a in "abcd"] + [pair("Q", "lone")] + [pair("R", w) for w in ("a", "word", "d")]}
DIMS = ["novelty", "diversity", "surprise"]


def by_answer(scored: dict, prompt: str) -> dict[str, dict]:
    return {p["chosen"][0]["content"]: {d: p[f"{d}_chosen"] for d in DIMS} for p in scored["train"]
            if p["prompt"][0]["content"] == prompt}


def test_surprise_is_min_max_of_perplexity_under_the_papers_rules_and_of_nll_under_ours():
    ours = by_answer(score_pairs(SPLITS, FixedScorer(RAW), DIMS), "P")
    paper = by_answer(score_pairs(SPLITS, FixedScorer(RAW, "reference_compat"), DIMS, rules="paper"), "P")
    ppl = {"a": 3.0, "b": 4.0, "c": 5.0, "d": 20.0}
    for answer, p in ppl.items():
        assert paper[answer]["surprise"] == pytest.approx((p - 3) / (20 - 3))  # .06, .12 for 4 and 5
        assert ours[answer]["surprise"] == pytest.approx((math.log(p) - math.log(3)) / (math.log(20) - math.log(3)))
    assert round(paper["b"]["surprise"], 2) == 0.06 and round(ours["b"]["surprise"], 2) == 0.15
    # novelty and diversity are min-max of the same raw values under both
    for answer in "abcd":
        assert paper[answer]["novelty"] == pytest.approx(ours[answer]["novelty"])
        assert paper[answer]["diversity"] == pytest.approx(ours[answer]["diversity"])


def test_a_prompt_with_a_single_answer():
    ours = by_answer(score_pairs(SPLITS, FixedScorer(RAW), DIMS), "Q")["lone"]
    paper = by_answer(score_pairs(SPLITS, FixedScorer(RAW, "reference_compat"), DIMS, rules="paper"), "Q")["lone"]
    assert ours == {"novelty": 0.5, "diversity": 0.5, "surprise": 0.5}
    assert paper == {"novelty": 0.5, "diversity": 0.0, "surprise": 0.5}  # the paper's code: no others, diversity 0


def test_degenerate_answers():
    ours = by_answer(score_pairs(SPLITS, FixedScorer(RAW), DIMS), "R")
    paper = by_answer(score_pairs(SPLITS, FixedScorer(RAW, "reference_compat"), DIMS, rules="paper"), "R")
    assert ours["word"] == {"novelty": 0.0, "diversity": 0.0, "surprise": 0.0}
    # ours: the min and max come from a and d alone
    assert ours["a"]["novelty"] == 0.0 and ours["d"]["novelty"] == 1.0
    # the paper's: the one-word answer is in the corpus like any other (its raw novelty 0.9 is the maximum)
    assert paper["word"]["novelty"] == 1.0 and paper["d"]["novelty"] == pytest.approx((0.4 - 0.1) / (0.9 - 0.1))
    assert paper["word"]["diversity"] == pytest.approx((0.7 - 0.2) / (0.8 - 0.2))
    assert paper["word"]["surprise"] == pytest.approx((9 - 3) / (20 - 3))


def test_the_papers_rules_need_a_scorer_that_keeps_degenerate_answers():
    with pytest.raises(ValueError, match="reference_compat"):
        score_pairs(SPLITS, FixedScorer(RAW, "exclude"), DIMS, rules="paper")


def muce_rows() -> list[dict]:
    rows = []
    for split, item, answers in (("Training", "brick", [("a wall", 35), ("a wall", 31), ("a bed", 29), ("art", 44)]),
                                 ("Validation", "shoe", [("a boat", 30), ("a hat", 12)])):
        for answer, score in answers:
            rows.append({"TaskType": "text", "Language": "English", "TasksNamesFull": "Alternate Uses of Objects Task",
                         "Dataset": "d", "Prompt": item, "Set": split, "Response": answer, "facsco_grm_scaled": score})
    return rows


def test_sft_data_keeps_every_answer_rated_30_or_more_with_repeats_as_messages():
    from crpo_bench import muce

    splits = sft_messages(muce.data._with_split(muce_rows(), "fixture", None), 30.0)
    assert {s: [r["messages"][1]["content"] for r in rows] for s, rows in splits.items()} == {
        "train": ["a wall", "a wall", "art"], "val": ["a boat"]}
    first = splits["train"][0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"] and "brick" in first[0]["content"]


def test_sft_data_command_and_the_paper_sft_recipe(tmp_path, tiny_lm_folder):
    data = tmp_path / "muce.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in muce_rows()))
    env_run = lambda *args: subprocess.run([str(BIN / "crpo-train"), *map(str, args)], capture_output=True, text=True,
                                           cwd=tmp_path, timeout=900)
    done = env_run("sft-data", "--data", data, "--out", tmp_path / "sft")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train: 3 answers rated >= 30" in done.stdout
    done = env_run("sft_paper", "--model_name_or_path", tiny_lm_folder, "--dataset_path", tmp_path / "sft",
                   "--max_steps", "1", "--lora_r", "4", "--lora_alpha", "8", "--eval_strategy", "no",
                   "--output_dir", tmp_path / "ckpt", "--fp16", "false", "--gradient_checkpointing", "false",
                   "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--max_length", "64")
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = json.loads((tmp_path / "ckpt" / "adapter_config.json").read_text())
    assert set(adapter["modules_to_save"]) == {"lm_head", "embed_tokens"}


def test_pairs_profile_paper_is_the_papers_matching(tmp_path):
    data = tmp_path / "muce.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in muce_rows()))
    outputs = {}
    for name, flags in (("profile", ["--profile", "paper"]), ("matching", ["--matching", "paper"]),
                        ("ours", [])):
        done = subprocess.run([str(BIN / "crpo-train"), "pairs", "--data", str(data), "--out", str(tmp_path / name),
                               *flags], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[name] = done.stdout.splitlines()[0]
    # by hand: the paper's (a wall 35, a bed 29), (a wall 35, art 44), (a wall 31, art 44), (a bed 29, art 44);
    # ours merges "a wall" (mean 33): (art, a bed) and (art, a wall), since 33 - 29 < 5
    assert outputs["profile"] == outputs["matching"] == "train: 4 pairs over 1 prompts (aut 4)"
    assert outputs["ours"] == "train: 2 pairs over 1 prompts (aut 2)"
    from crpo_bench import muce

    rows = muce.data._with_split(muce_rows(), "fixture", None)
    assert len(build_pairs(rows, PairSettings(matching="paper"))["train"]) == 4


def test_the_papers_quality_input_has_two_bos(tiny_tokenizer):
    """A tokenizer that adds BOS (as Gemma's does) under a template that starts with it (as
    Gemma's does): the paper's input starts with two, ours with one."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tokenizer = copy.deepcopy(tiny_tokenizer)
    bos, token = tokenizer.bos_token_id, tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=f"{token} $A", special_tokens=[(token, bos)])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "p"}, {"role": "assistant", "content": "r"}],
                                         tokenize=False)
    assert chat.startswith(token) and not chat.startswith(token * 2)  # the template writes BOS once
    ours, paper = (reward_inputs(tokenizer, "p", "r", flag) for flag in (False, True))
    assert ours == tokenizer(chat, add_special_tokens=False)["input_ids"]
    assert paper == [bos] + ours
    assert paper[:2] == [bos, bos] and ours[:2] != [bos, bos]
    assert ScoringConfig(reward_input="paper").reward_input == "paper"
    with pytest.raises(ValueError, match="reward input"):
        ScoringConfig(reward_input="twice")


# The paper's published DPO / CrPO configurations (experiments/configs/dpo/dpo_lora*.yaml):
# recipe -> (trainer, lambdas, strategy, seed), written down from the paper's files
PAPER_CONFIGS = {
    "dpo": ("dpo", {}, None, 92),
    "crpo_nov": ("crpo", {"novelty": 1.0}, "add", 42), "crpo_div": ("crpo", {"diversity": 1.0}, "add", 42),
    "crpo_sur": ("crpo", {"surprise": 1.0}, "add", 42), "crpo_qua": ("crpo", {"quality": 1.0}, "add", 92),
    "crpo_cre": ("crpo", {"novelty": 1.0, "diversity": 1.0, "surprise": 1.0}, "add", 42),
    "crpo_cre_qua": ("crpo", {"novelty": 1.0, "diversity": 1.0, "surprise": 1.0, "quality": 1.0}, "add", 42),
    "crpo_nov_qua": ("crpo", {"novelty": 1.0, "quality": 1.0}, "add", 42),
    "crpo_div_qua": ("crpo", {"diversity": 1.0, "quality": 1.0}, "add", 42),
    "crpo_sur_qua": ("crpo", {"surprise": 1.0, "quality": 1.0}, "add", 42),
    "crpo_mult_cre": ("crpo", {"novelty": 1.0, "diversity": 1.0, "surprise": 1.0}, "mult", 42),
    "crpo_mult_nov_qua": ("crpo", {"novelty": 1.0, "quality": 1.0}, "mult", 42),
    **{f"crpo_{short}_lambda{lam}": ("crpo", {dim: lam}, "add", 92)
       for short, dim in (("nov", "novelty"), ("div", "diversity"), ("sur", "surprise"), ("qua", "quality"))
       for lam in (0.5, 1.5, 2.0)},
}


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_every_published_configuration_has_a_recipe(name):
    trainer, lambdas, strategy, seed = PAPER_CONFIGS[name]
    _, config, model = parse(resolve_recipe(name), [])
    assert config.seed == seed and config.learning_rate == 5e-6 and config.beta == 0.1
    assert (model.lora_r, model.lora_alpha) == (128, 256)
    if trainer == "crpo":
        assert {k: v for k, v in config.lambdas.items() if v} == lambdas and config.crpo_strategy == strategy
    else:
        assert not hasattr(config, "lambdas")


def test_generated_recipes_are_up_to_date():
    spec = __import__("importlib.util").util.spec_from_file_location("gen", RECIPES / "_generate_recipes.py")
    gen = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, args in gen.RECIPES.items():
        assert (RECIPES / f"{name}.yaml").read_text() == gen.recipe(name, *args), name
