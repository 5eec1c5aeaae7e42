"""The paper's protocol end to end through the real `lm_eval` CLI, on MuCE's raw published
layout: its 7 tasks all find documents, each prompt is sampled 4 times under each of the 4
decoding settings, and the 16 answers of a prompt are the corpus novelty and diversity see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import brute_force as bf
from crpo_bench import lmeval, muce
from muce_fixtures import raw_rows, write_jsonl

DECODING = [(0.7, 0.95, 0), (0.9, 0.99, 0), (0.7, 1.0, 50), (0.8, 0.97, 0)]


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, tiny_lm_folder):
    work = tmp_path_factory.mktemp("muce_paper")
    data = write_jsonl(work / "muce_raw.jsonl", raw_rows())
    exe = Path(sys.executable).parent / "lm_eval"
    metadata = {"muce_data": str(data), "lm": "none"}
    proc = subprocess.run([str(exe), "--model", "hf", "--model_args", f"pretrained={tiny_lm_folder}",
                           "--tasks", "muce_paper", "--gen_kwargs", "max_gen_toks=12", "--metadata",
                           json.dumps(metadata), "--output_path", str(work / "out"), "--log_samples"],
                          cwd=work, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (results,) = (work / "out").glob("*/results_*.json")
    return data, json.loads(results.read_text()), work / "out"


def samples(out: Path, task: str) -> list[dict]:
    (path,) = out.glob(f"*/samples_{task}_*.jsonl")
    # split("\n"), not splitlines(): the tiny model's answers hold \x1c and \u2028
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_every_paper_task_has_its_heldout_documents(paper_run):
    data, results, out = paper_run
    rows = muce.read_table(data)
    for slug in muce.PAPER_TASKS:
        task = f"muce_{slug}_16"
        expected = lmeval.heldout_documents(rows, slug)
        assert expected and results["n-samples"][task]["effective"] == len(expected), task
        docs = samples(out, task)
        assert [s["doc"]["prompt"] for s in docs] == [d["prompt"] for d in expected]
        assert all(s["doc"]["split"] in ("heldout_item", "heldout_task") for s in docs)
    assert "Averie" not in json.dumps(results["configs"])  # no excluded row became a document


def test_sixteen_answers_per_prompt_under_the_four_settings(paper_run):
    _, _, out = paper_run
    for sample in samples(out, "muce_aut_16"):
        settings = [a["arg_1"] for a in sample["arguments"].values()]
        assert [(s["temperature"], s["top_p"], s["top_k"]) for s in settings] == DECODING
        assert all(s["typical_p"] == 1.0 and s["seed"] is None for s in settings)
        answers = [a for per_setting in sample["filtered_resps"] for a in per_setting]
        assert len(answers) == 16 and len(set(answers)) > 4  # 4 settings x 4 independent samples


def test_the_pooled_sixteen_are_the_corpus_of_novelty_and_diversity(paper_run, embedder):
    """Recompute novelty and diversity by brute force with one corpus per prompt (its 16
    answers, degenerate ones left out) and compare with what lm-eval reported."""
    _, results, out = paper_run
    for slug in ("aut", "rlcps"):
        task = f"muce_{slug}_16"
        novelty, diversity = [], []
        for sample in samples(out, task):
            answers = [a for per_setting in sample["filtered_resps"] for a in per_setting]
            kept = [a for a in answers if len(bf.words(a)) >= 2]
            vectors = [embedder.encode([a])[0] for a in kept]
            diversity += [bf.mean_distance_to_others(vectors, k) for k in range(len(kept))]
            word_vec = {w: embedder.encode([w])[0] for a in kept for w in bf.words(a)}
            corpus = bf.dsi([word_vec[w] for w in bf.words(" ".join(kept))])
            novelty += [2 * abs(bf.dsi([word_vec[w] for w in bf.words(a)]) - corpus) for a in kept]
        reported = results["results"][task]
        assert reported["novelty,samples"] == pytest.approx(np.mean(novelty), abs=1e-5), task
        assert reported["diversity,samples"] == pytest.approx(np.mean(diversity), abs=1e-5), task
        assert reported["prompt_novelty,samples"] == pytest.approx(reported["novelty,samples"], abs=1e-9)


def test_gen_kwargs_from_the_command_line_win_over_every_setting(tmp_path):
    """lm-eval lays --gen_kwargs over the task's generation_kwargs after building it; the
    pooled task must keep those values in all four requests, and its settings elsewhere."""
    from crpo_bench.run import runner as bench

    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    manager = bench.task_manager({"muce_data": str(data), "lm": "none"})
    task = manager.load(["muce_aut_16"])["tasks"]["muce_aut_16"]
    task.set_config(key="generation_kwargs", value={"temperature": 1.0, "max_gen_toks": 7}, update=True)
    doc = task.test_docs()[0]
    requests = task.construct_requests(doc, doc["prompt"], metadata=("muce_aut_16", 0, 4))
    sent = [r.arguments[1] for r in requests]
    assert [(s["temperature"], s["top_p"], s["top_k"], s["max_gen_toks"]) for s in sent] == [
        (1.0, 0.95, 0, 7), (1.0, 0.99, 0, 7), (1.0, 1.0, 50, 7), (1.0, 0.97, 0, 7)]
    assert [r.idx for r in requests] == [0, 1, 2, 3] and len({id(r.resps) for r in requests}) == 4
