"""The metric card: written with every result (score, lm-eval, run, crpo-train score), and
used by `leaderboard` and `check` to refuse comparing numbers made under other settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from crpo_bench.scoring import card as cards
from crpo_bench.cli import main
from crpo_bench.models import DEFAULT_EMBEDDER

from muce_fixtures import raw_rows, write_jsonl
from results_fixtures import FIXTURE, cli, write_results

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_score_writes_its_card_beside_the_output(tmp_path):
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(ROOT / "examples" / "responses.jsonl"), "-o", str(out), "--metrics", "novelty",
                 "diversity", "--scope", "prompt", "--quiet"]) == 0
    card = json.loads((tmp_path / "scored.card.json").read_text())
    assert card["embedder"] == DEFAULT_EMBEDDER and card["embedder_fingerprint"].startswith("sha256:")
    assert (card["corpus"], card["tokenizer"], card["degenerate"], card["lm"]) == ("prompt", "regex", "exclude", None)
    assert card["metrics"] == ["novelty", "diversity"] and card["versions"]["lm_eval"]


def test_folder_fingerprint_follows_content(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = cards.folder_fingerprint(str(tmp_path))
    cards.folder_fingerprint.cache_clear()
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    assert cards.folder_fingerprint(str(tmp_path)) != first


def _with_cards(folder: Path, embedders: dict[str, str]) -> None:
    """Give each fixture model's result a card with the named embedder."""
    for model, embedder in embedders.items():
        path = folder / model / "muce_aut.json"
        data = json.loads(path.read_text())
        data["crpo_bench"]["card"] = {"embedder": embedder, "tokenizer": "regex", "degenerate": "exclude",
                                      "corpus": "task"}
        path.write_text(json.dumps(data))


def test_results_under_other_embedders_are_not_ranked_together_nor_checked(tmp_path):
    results = write_results(tmp_path / "results")
    _with_cards(results, {"gpt-4o": "minilm", "claude": "minilm", "crpo": "minilm"})
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    assert json.loads(baseline.read_text())["cards"]["crpo/muce_aut"]["embedder"] == "minilm"

    _with_cards(results, {"crpo": "/models/tiny-embedder"})
    proc = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert proc.returncode == 2
    assert "crpo/muce_aut: embedder differs (baseline 'minilm', results '/models/tiny-embedder')" in proc.stderr
    assert "gpt-4o/muce_aut" not in proc.stderr

    board = cli("leaderboard", "--results", results, "--out", tmp_path / "board", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "## muce_aut [embedder=minilm]" in text and "## muce_aut [embedder=/models/tiny-embedder]" in text
    assert "not ranked together (they differ in embedder)" in text
    mine = text.split("## muce_aut [embedder=/models/tiny-embedder]")[1].split("## ")[0]
    assert "| crpo " in mine and "gpt-4o" not in mine and "(1)" in mine  # ranked alone


def test_inflated_demo_novelty_fails_the_two_sided_gate_only(tmp_path):
    """The committed demo baseline as results, one novelty inflated by 50%."""
    baseline = json.loads((ROOT / "leaderboard" / "baseline.json").read_text())
    fixture = {}
    for key, spec in baseline["metrics"].items():
        model, task, metric = key.split("/")
        if task == "muce_aut":
            fixture.setdefault(model, (False, {}))[1][metric] = (spec["value"], 0.01)
    key = next(k for k in baseline["metrics"] if k.endswith("/muce_aut/novelty"))
    model = key.split("/")[0]
    fixture[model][1]["novelty"] = (baseline["metrics"][key]["value"] * 1.5, 0.01)
    results = write_results(tmp_path / "results", fixture)
    for m, c in baseline.get("cards", {}).items():
        path = results / m.split("/")[0] / "muce_aut.json"
        data = json.loads(path.read_text())
        data["crpo_bench"]["card"] = c
        path.write_text(json.dumps(data))
    base = ROOT / "leaderboard" / "baseline.json"
    one_sided = cli("check", "--baseline", base, "--results", results, cwd=tmp_path)
    assert one_sided.returncode == 0, one_sided.stderr
    two_sided = cli("check", "--baseline", base, "--results", results, "--two-sided", cwd=tmp_path)
    assert two_sided.returncode == 1 and f"{model}/muce_aut/novelty" in two_sided.stderr


def test_lm_eval_results_and_run_results_carry_the_card_with_environment_settings(tmp_path, tiny_lm_folder):
    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRPO_DEGENERATE": "reference_compat", "CRPO_MUCE_TEMPLATE": "scr"}
    proc = subprocess.run([str(BIN / "crpo-bench"), "run", "--model", f"tiny={tiny_lm_folder}", "--tasks", "muce_aut",
                           "--limit", "1", "--gen-kwargs", json.dumps({"max_gen_toks": 8}), "--metadata",
                           json.dumps({"muce_data": str(data), "lm": "none"}), "--out", str(tmp_path / "r")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "r" / "tiny" / "muce_aut.json").read_text())
    for card in (result["crpo_bench"]["card"], result["configs"]["muce_aut"]["metadata"]["card"]):
        assert (card["degenerate"], card["template"], card["samples_per_prompt"], card["corpus"]) == (
            "reference_compat", "scr", 4, "task")
        assert card["embedder"] == DEFAULT_EMBEDDER and card["lm"] is None


def test_crpo_train_score_puts_the_card_into_the_dataset(tmp_path):
    from crpo_bench.training.cli import main as crpo_train

    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    assert crpo_train(["pairs", "--data", str(data), "--out", str(tmp_path / "pairs")]) == 0
    assert crpo_train(["score", str(tmp_path / "pairs"), "--out", str(tmp_path / "scored"), "--dimensions",
                       "novelty", "diversity"]) == 0
    card = json.loads((tmp_path / "scored" / "card.json").read_text())
    assert card["embedder"] == DEFAULT_EMBEDDER and card["dimensions"] == ["novelty", "diversity"]
    scored = datasets.load_from_disk(str(tmp_path / "scored"))
    assert json.loads(scored["train"].info.description)["crpo_bench_card"] == card


def test_two_real_runs_under_different_embedders_are_kept_apart(tmp_path, tiny_lm_folder):
    """Two `crpo-bench run`s, the second scoring with another embedder (the packaged MiniLM
    given as a folder stands in): the leaderboard splits them, check refuses to compare."""
    from crpo_bench.models import MINILM_PACKAGE, _package_file

    other = tmp_path / "other-embedder"
    other.symlink_to(_package_file(MINILM_PACKAGE, "model"), target_is_directory=True)
    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    results = tmp_path / "r"
    for name, extra in (("a", {}), ("b", {"embedder": str(other)})):
        proc = subprocess.run([str(BIN / "crpo-bench"), "run", "--model", f"{name}={tiny_lm_folder}", "--tasks",
                               "muce_aut", "--limit", "1", "--gen-kwargs", json.dumps({"max_gen_toks": 8}),
                               "--metadata", json.dumps({"muce_data": str(data), "lm": "none", **extra}),
                               "--out", str(results)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        if name == "a":
            baseline = tmp_path / "baseline.json"
            assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
            data_b = json.loads(baseline.read_text())
            data_b["cards"]["b/muce_aut"] = data_b["cards"]["a/muce_aut"]  # b is expected under a's settings
            data_b["metrics"].update({k.replace("a/", "b/", 1): v for k, v in data_b["metrics"].items()})
            baseline.write_text(json.dumps(data_b))
    board = cli("leaderboard", "--results", results, "--out", tmp_path / "board", cwd=tmp_path)
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert board.returncode == 0 and "not ranked together (they differ in embedder)" in text
    assert f"## muce_aut [embedder={DEFAULT_EMBEDDER}]" in text
    proc = cli("check", "--baseline", tmp_path / "baseline.json", "--results", results, cwd=tmp_path)
    assert proc.returncode == 2 and "b/muce_aut: embedder differs" in proc.stderr
