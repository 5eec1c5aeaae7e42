"""The README's first lm-eval command, read from the README itself and run offline as written
(plus --limit 2: a standard error over prompts needs two, and a short token budget), so the README cannot drift from what works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench import muce

ROOT = Path(__file__).resolve().parents[2]
REPORTED = ("novelty", "diversity", "surprise")


def readme_command() -> str:
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("    ") and " lm_eval " in f" {line.strip()}"]
    assert lines, "README.md has no indented lm_eval command"
    first = lines[0]
    assert first.startswith("HF_HUB_OFFLINE=1 lm_eval ") and "--tasks muce_poems" in first, first
    return first


def run_readme_command(tmp_path: Path, tasks: str | None = None) -> subprocess.CompletedProcess:
    command = readme_command()
    if tasks:
        command = command.replace("--tasks muce_poems", f"--tasks {tasks}")
    # the venv's lm_eval and crpo-bench first on PATH, as after `source .venv/bin/activate`
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    env.pop("CRPO_MUCE_DATA", None)
    return subprocess.run(["bash", "-c", f"{command} --limit 2 --gen_kwargs max_gen_toks=24"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)


def results_of(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "results").glob("*/results_*.json")
    return json.loads(path.read_text())


def test_readme_lm_eval_command_runs_offline_on_the_embedded_examples(tmp_path):
    done = run_readme_command(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    output = done.stdout + done.stderr
    assert "evaluating the embedded example prompts instead" in output
    assert "Traceback" not in output
    task = results_of(tmp_path)["results"]["muce_poems"]
    for metric in REPORTED:
        value, stderr = task[f"{metric},samples"], task[f"{metric}_stderr,samples"]
        assert isinstance(value, float) and value == value, metric
        assert isinstance(stderr, float) and stderr >= 0, (metric, stderr)
    (samples,) = (tmp_path / "results").glob("*/samples_muce_poems_*.jsonl")
    doc = json.loads(samples.read_text().splitlines()[0])["doc"]
    assert doc["prompt"] == "Come up with an original and creative poem about the following concept: choice."
    assert doc["dataset"] == "muce_examples"


def test_readme_lm_eval_command_runs_every_paper_task_offline(tmp_path):
    tasks = ",".join(f"muce_{slug}" for slug in muce.PAPER_TASKS)
    done = run_readme_command(tmp_path, tasks)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = results_of(tmp_path)["results"]
    for slug in muce.PAPER_TASKS:
        for metric in REPORTED:
            assert isinstance(results[f"muce_{slug}"][f"{metric}_stderr,samples"], float), (slug, metric)
    # one warning line per task
    assert (done.stdout + done.stderr).count("cannot load CNCL-Penn-State/MuCE") == len(muce.PAPER_TASKS)


@pytest.mark.parametrize("source", ["hub"])
def test_the_hub_by_name_gets_no_stand_in(source, monkeypatch):
    from crpo_bench.lmeval import data

    def unreachable(config=None):
        raise RuntimeError("cannot load CNCL-Penn-State/MuCE (config default) from the hub (ConnectionError).")

    monkeypatch.setattr(muce.data, "load_hub", unreachable)
    monkeypatch.setattr(data, "_hub_failure", [])
    with pytest.raises(data.DataUnavailable, match="muce_poems: cannot load"):
        data.muce_dataset("muce_poems", muce_task="poems", muce_data=source)
    # unnamed: one line, then the examples (the first time and, without asking again, every time after)
    for _ in range(2):
        docs = data.muce_dataset("muce_poems", muce_task="poems")["test"]
        assert docs[0]["prompt"].endswith("concept: choice.") and len(docs) == 3
    assert data._hub_failure == ["cannot load CNCL-Penn-State/MuCE (config default) from the hub (ConnectionError)"]


@pytest.mark.parametrize("tasks, metadata, message", [
    ("noveltybench_curated", None, "lm_eval: error: noveltybench_curated: cannot load yimingzhang/novelty-bench"),
    ("muce_poems", '{"muce_data": "hub"}', "lm_eval: error: muce_poems: cannot load CNCL-Penn-State/MuCE"),
    ("muce_poems", '{"muce_data": "no/such/file.jsonl"}', "lm_eval: error: muce_poems: MuCE data file no/such/file.jsonl"),
])
def test_offline_without_data_the_failure_is_one_line(tmp_path, tasks, metadata, message):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CRPO_NOVELTYBENCH_DATA", None)
    model = subprocess.run([str(Path(sys.executable).parent / "crpo-bench"), "models", "path", "smollm2"],
                           capture_output=True, text=True, check=True).stdout.strip()
    command = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model}",
               "--tasks", tasks, "--limit", "1", *(["--metadata", metadata] if metadata else [])]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
