"""The real `lm_eval` CLI on our MuCE tasks: discovery, metrics, standard errors, settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench import muce

ROOT = Path(__file__).resolve().parents[2]
EVERY_METRIC = ["novelty", "diversity", "dsi", "theme_uniqueness", "num_themes", "prompt_novelty",
                "prompt_diversity", *(f"ngram_diversity_{n}" for n in range(1, 6)), "semantic_distance",
                "originality", "surprise", "perplexity"]


@pytest.fixture(scope="module")
def muce_file(shared_data, tmp_path_factory) -> Path:
    """MuCE-schema data built from the human-rated ocsai answers: its items become held-out prompts."""
    rows = muce.read_ocsai(shared_data / "ocsai1" / "alltests_val.jsonl", "heldout_item")
    path = tmp_path_factory.mktemp("muce") / "muce_heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lm_eval(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lm_eval"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_results(out_dir: Path) -> dict:
    (results,) = out_dir.glob("*/results_*.json")
    return json.loads(results.read_text())


def read_samples(out_dir: Path, task: str) -> list[dict]:
    (samples,) = out_dir.glob(f"*/samples_{task}_*.jsonl")
    return [json.loads(line) for line in samples.read_text().splitlines()]


def test_plain_lm_eval_finds_and_scores_muce_aut(tmp_path, muce_file, tiny_lm_folder, tiny_reward_folder):
    """No --include_path: the installed .pth hook registers our tasks."""
    metadata = {"muce_data": str(muce_file), "reward_model": str(tiny_reward_folder)}
    lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_lm_folder}", "--tasks", "muce_aut",
             "--limit", "2", "--gen_kwargs", "max_gen_toks=24", "--metadata", json.dumps(metadata),
             "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    results, samples = read_results(tmp_path / "out"), read_samples(tmp_path / "out", "muce_aut")
    task = results["results"]["muce_aut"]
    for metric in EVERY_METRIC + ["quality"]:
        value, stderr = task[f"{metric},samples"], task[f"{metric}_stderr,samples"]
        assert isinstance(value, float) and value == value, metric  # a number, not NaN
        assert isinstance(stderr, float) and stderr >= 0, (metric, stderr)  # never "N/A"
    assert 0 < task["novelty,samples"] < 1 and 0 < task["diversity,samples"] <= 2
    assert task["num_themes,samples"] >= 1 and task["perplexity,samples"] > 1
    assert 10 <= task["originality,samples"] <= 50
    # scorer settings given through --metadata are recorded in the results JSON
    recorded = results["configs"]["muce_aut"]["metadata"]
    assert recorded["reward_model"] == str(tiny_reward_folder) and recorded["muce_data"] == str(muce_file)
    assert results["higher_is_better"]["muce_aut"]["novelty"] is True
    # two prompts, four different samples each, scored together
    assert len(samples) == 2
    for sample in samples:
        assert len(sample["filtered_resps"][0]) == 4
        assert sample["doc"]["prompt"].startswith("Come up with an original and creative use for the following object:")


def test_api_model_through_a_local_openai_compatible_server(tmp_path, muce_file, chat_server_url,
                                                          tiny_lm_folder, tiny_reward_folder):
    """--model local-chat-completions over real HTTP to `crpo-bench serve` on 127.0.0.1."""
    metadata = {"muce_data": str(muce_file), "lm": str(tiny_lm_folder), "reward_model": str(tiny_reward_folder)}
    model_args = (f"model=tiny,base_url={chat_server_url},num_concurrent=1,max_retries=2,"
                  "tokenized_requests=False,tokenizer_backend=None")
    lm_eval(["--model", "local-chat-completions", "--model_args", model_args, "--apply_chat_template",
             "--tasks", "muce_aut", "--limit", "2", "--gen_kwargs", "max_gen_toks=16",
             "--metadata", json.dumps(metadata), "--output_path", str(tmp_path / "out"), "--log_samples"],
            cwd=tmp_path)
    task = read_results(tmp_path / "out")["results"]["muce_aut"]
    for metric in EVERY_METRIC + ["quality"]:
        assert isinstance(task[f"{metric},samples"], float), metric
        assert isinstance(task[f"{metric}_stderr,samples"], float), metric
    for sample in read_samples(tmp_path / "out", "muce_aut"):
        answers = sample["filtered_resps"][0]
        assert len(answers) == 4 and len(set(answers)) > 1  # seed null: the samples differ


def test_include_path_still_works_and_quality_needs_a_reward_model(tmp_path, muce_file, tiny_lm_folder):
    proc = lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_lm_folder}", "--tasks", "muce_aut",
                    "--include_path", str(ROOT / "tasks"), "--limit", "2", "--gen_kwargs", "max_gen_toks=16",
                    "--metadata", json.dumps({"lm": "none"}), "--output_path", str(tmp_path / "out")],
                   cwd=tmp_path, env_extra={"CRPO_MUCE_DATA": str(muce_file)})
    results = read_results(tmp_path / "out")
    task = results["results"]["muce_aut"]
    assert "novelty,samples" in task
    assert not any(key.startswith(("quality", "surprise", "perplexity")) for key in task)
    assert "no reward model configured, so `quality` is not reported" in proc.stdout + proc.stderr


@pytest.mark.parametrize("opt_out, found", [("", True), ("1", False)])
def test_automatic_registration_can_be_switched_off(opt_out, found):
    code = ("from lm_eval.tasks import TaskManager\n"
            "names = TaskManager(include_defaults=False).all_tasks\n"
            "print('muce_poems' in names, 'muce' in names, 'muce_paper' in names and 'muce_analogies_16' in names)")
    env = {**os.environ, "CRPO_BENCH_NO_LMEVAL_TASKS": opt_out}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == [str(found)] * 3, out.stderr[-2000:]


def test_noveltybench_curated_in_lm_eval_then_the_noveltybench_command(tmp_path, shared_data, tiny_lm_folder,
                                                                       tiny_reward_folder):
    metadata = {"noveltybench_data": str(shared_data / "noveltybench"), "equivalence": "unigram",
                "reward_model": str(tiny_reward_folder)}
    lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_lm_folder}", "--tasks", "noveltybench_curated",
             "--limit", "2", "--gen_kwargs", "max_gen_toks=12", "--metadata", json.dumps(metadata),
             "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    task = read_results(tmp_path / "out")["results"]["noveltybench_curated"]
    for metric in ("distinct", "utility", "prompt_novelty", "prompt_diversity"):
        assert isinstance(task[f"{metric},samples"], float) and isinstance(task[f"{metric}_stderr,samples"], float)
    assert 1 <= task["distinct,samples"] <= 10 and 1 <= task["utility,samples"] <= 10
    samples = read_samples(tmp_path / "out", "noveltybench_curated")
    assert [s["doc"]["id"] for s in samples] == ["curated-0", "curated-1"]
    assert all(len(s["filtered_resps"][0]) == 10 for s in samples)
    # each sample logs its prompt's classes and utility, and its generations' novelty and diversity
    for metric in ("distinct", "utility"):
        assert all(len(s[metric]) == 1 for s in samples)
        assert task[f"{metric},samples"] == pytest.approx(sum(s[metric][0] for s in samples) / 2, abs=1e-6)
    assert all(len(s["prompt_novelty"]) == len(s["prompt_diversity"]) == 10 for s in samples)

    # the same generations through `crpo-bench noveltybench`: the same number of classes
    (samples_file,) = (tmp_path / "out").glob("*/samples_noveltybench_curated_*.jsonl")
    exe = Path(sys.executable).parent / "crpo-bench"
    proc = subprocess.run([str(exe), "noveltybench", "--eval-dir", str(tmp_path / "nb"), "--samples",
                           str(samples_file), "--equivalence", "unigram", "--reward-model", str(tiny_reward_folder)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "nb" / "v1.1" / "summary.json").read_text())
    assert summary["mean_distinct"] == pytest.approx(task["distinct,samples"])
    assert summary["mean_utility"] == pytest.approx(task["utility,samples"])


def test_group_rows_average_their_tasks_and_carry_a_version(tmp_path, tiny_lm_folder):
    """muce_paper's row in lm-eval's Groups table: novelty and diversity, the unweighted mean
    over its 7 tasks, and version 1.0 (not N/A)."""
    lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_lm_folder}", "--tasks", "muce_paper",
             "--limit", "1", "--gen_kwargs", "max_gen_toks=12",
             "--metadata", json.dumps({"muce_data": "examples", "lm": "none"}),
             "--output_path", str(tmp_path / "out")], cwd=tmp_path)
    results = read_results(tmp_path / "out")
    assert float(results["versions"]["muce_paper"]) == 1.0  # lm-eval writes it as given ("1.0")
    tasks = results["group_subtasks"]["muce_paper"]
    assert len(tasks) == 7
    for metric in ("novelty", "diversity"):
        values = [results["results"][t][f"{metric},samples"] for t in tasks]
        assert all(v == v for v in values), values  # the tiny LM's noise has words: every task is scored
        assert results["groups"]["muce_paper"][f"{metric},samples"] == pytest.approx(sum(values) / len(values))
