"""`crpo-train` end to end: ocsai answers -> pairs -> scores -> a LoRA CrPO run of a tiny
model -> its checkpoint evaluated by the real `lm_eval --model hf` on a MuCE task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from crpo_bench import muce

BIN = Path(sys.executable).parent
# The packaged paper recipes assume a GPU and an 8B model; these make them run on a tiny one.
ON_CPU = ["--bf16", "false", "--fp16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
          "--report_to", "none",
          "--save_strategy", "no", "--max_length", "96", "--per_device_train_batch_size", "2"]


def run(command: str, args: list, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / command), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def scored_pairs(shared_data, tiny_lm_folder, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("crpo-data")
    out = run("crpo-train", ["pairs", "--data", f"train={shared_data / 'ocsai1' / 'alltests_train.jsonl'}",
                             "--data", f"val={shared_data / 'ocsai1' / 'alltests_val.jsonl'}", "--tasks", "aut",
                             "--max-prompts", "1", "--out", work / "pairs"], cwd=work)
    assert "train:" in out.stdout and "val:" in out.stdout
    run("crpo-train", ["score", work / "pairs", "--out", work / "scored", "--dimensions", "novelty", "diversity",
                       "surprise", "--lm", tiny_lm_folder], cwd=work)
    return work / "scored"


def test_pairs_and_scores_on_disk(scored_pairs):
    data = datasets.load_from_disk(str(scored_pairs))
    assert set(data) == {"train", "val"}
    train = data["train"]
    assert len(train) > 100 and set(train["task"]) == {"aut"}
    assert all(c >= r + 5 and r >= 20 for c, r in zip(train["score_chosen"], train["score_rejected"]))
    for dim in ("novelty", "diversity", "surprise"):
        values = train[f"{dim}_chosen"]
        assert min(values) == 0.0 and max(values) == 1.0  # min-max within the one prompt


def test_crpo_recipe_checkpoint_evaluates_in_lm_eval(scored_pairs, tiny_lm_folder, shared_data, tmp_path):
    out = run("crpo-train", ["demo_cpu", "--model_name_or_path", tiny_lm_folder, "--dataset_path", scored_pairs,
                             "--max_steps", "2", "--max_train_pairs", "8", "--lora_r", "4", "--lora_alpha", "8",
                             "--per_device_train_batch_size", "2", "--output_dir", tmp_path / "ckpt"], cwd=tmp_path)
    assert "crpo/weight_mean" in out.stdout + out.stderr
    assert (tmp_path / "ckpt" / "adapter_model.safetensors").is_file()
    merged = tmp_path / "ckpt" / "merged"
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()

    rows = muce.read_ocsai(shared_data / "ocsai1" / "alltests_val.jsonl", "heldout_item")
    (tmp_path / "muce.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for model_args in (f"pretrained={merged}", f"pretrained={tiny_lm_folder},peft={tmp_path / 'ckpt'}"):
        target = tmp_path / ("eval-" + str(len(model_args)))
        run("lm_eval", ["--model", "hf", "--model_args", model_args, "--tasks", "muce_aut", "--limit", "1",
                        "--gen_kwargs", "max_gen_toks=16", "--metadata",
                        json.dumps({"muce_data": str(tmp_path / "muce.jsonl"), "lm": "none"}),
                        "--output_path", target], cwd=tmp_path)
        (results,) = target.glob("*/results_*.json")
        novelty = json.loads(results.read_text())["results"]["muce_aut"]["novelty,samples"]
        assert isinstance(novelty, float) and novelty == novelty


@pytest.mark.parametrize("recipe", ["sft", "dpo", "crpo_cre"])
def test_paper_recipes_run(recipe, scored_pairs, tiny_lm_folder, tmp_path):
    run("crpo-train", [recipe, "--model_name_or_path", tiny_lm_folder, "--dataset_path", scored_pairs,
                       "--max_steps", "1", "--lora_r", "4", "--lora_alpha", "8", "--eval_split", "val",
                       "--eval_strategy", "no", "--output_dir", tmp_path / recipe, *ON_CPU], cwd=tmp_path)
    assert (tmp_path / recipe / "adapter_config.json").is_file()
    assert (tmp_path / recipe / "merged" / "config.json").is_file()


def test_raw_published_layout_gives_train_and_val_that_dpo_accepts(tiny_lm_folder, tmp_path):
    """MuCE's raw layout (one file, CamelCase Set): pairs land in the splits the recipes use,
    prompts are the paper's, held-out rows stay out of training pairs."""
    from muce_fixtures import raw_rows, write_jsonl

    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    out = run("crpo-train", ["pairs", "--data", data, "--matching", "paper", "--out", tmp_path / "pairs"], cwd=tmp_path)
    pairs = datasets.load_from_disk(str(tmp_path / "pairs"))
    assert {"train", "val", "test", "heldout_item", "heldout_task"} <= set(pairs) and "train:" in out.stdout
    prompts = {p["prompt"][0]["content"] for p in pairs["train"]}
    assert prompts == {"Come up with an original and creative use for the following object: shoe",
                       "Come up with an original and creative poem about the following concept: spring."}
    assert len(pairs["train"]) == 2 * 5  # per prompt: 38>22, 38>31, 38>25, 31>22, 31>25
    run("crpo-train", ["dpo", "--model_name_or_path", tiny_lm_folder, "--dataset_path", tmp_path / "pairs",
                       "--max_steps", "1", "--lora_r", "4", "--lora_alpha", "8", "--eval_strategy", "steps",
                       "--eval_steps", "1", "--output_dir", tmp_path / "dpo", *ON_CPU], cwd=tmp_path)
    assert (tmp_path / "dpo" / "adapter_config.json").is_file()


@pytest.mark.parametrize("name, distributed", [("multi_gpu", "MULTI_GPU"), ("zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load(name, distributed, capsys):
    """accelerate parses the configs (it refuses unknown keys); crpo-train names their paths."""
    from accelerate.commands.config.config_args import load_config_from_file

    from crpo_bench.training.cli import main as crpo_train

    assert crpo_train(["accelerate-config", name]) == 0
    path = capsys.readouterr().out.strip()
    config = load_config_from_file(path)
    assert str(config.distributed_type).endswith(distributed) and config.num_processes == 8
    assert config.mixed_precision == "fp16"
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3
    assert crpo_train(["accelerate-config", "fsdp"]) == 2
    assert "choose one of multi_gpu, zero3" in capsys.readouterr().err
