"""Learned originality, semantic distance, and the validity report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from crpo_bench import Scorer, ScoringConfig, muce
from crpo_bench.cli import main
from crpo_bench.metrics.originality import OriginalityModel
from crpo_bench.scoring.originality_training import featurize, train
from crpo_bench.stats.validity import correlation, validity, within_item

ANSWERS = {
    "brick": [("build a wall", 12), ("use as a doorstop", 15), ("grind into red pigment for cave art", 38),
              ("a tiny bed for a hamster", 33), ("hold papers down", 14), ("heat it to warm a bed", 30)],
    "shoe": [("wear it on your foot", 10), ("plant a cactus in it", 31), ("use it as a phone stand", 27),
             ("kick a ball", 13), ("a boat for a mouse", 40), ("measure a room in shoe lengths", 35)],
}


def rated_rows(task="Alternate Uses"):
    return [{"TasksNamesFull": task, "Prompt": item, "Response": a, "facsco_grm_scaled": float(s),
             "Language": "eng", "Set": "train"} for item, answers in ANSWERS.items() for a, s in answers]


def test_read_rated_accepts_ocsai_and_muce_files(tmp_path):
    ocsai = tmp_path / "o.jsonl"
    ocsai.write_text('{"prompt": "DT Uses Prompt:brick\\nResponse:build a wall\\nScore:\\n", "completion": "12"}\n')
    assert muce.read_rated(ocsai)[0]["Response"] == "build a wall"
    table = tmp_path / "m.csv"
    table.write_text("TasksNamesFull,Prompt,Response,facsco_grm_scaled,Set\nAlternate Uses,shoe,a boat,40,val\n"
                     "Alternate Uses,shoe,unrated,,val\n")
    rows = muce.read_rated(table)
    assert [(r["Response"], r["facsco_grm_scaled"]) for r in rows] == [("a boat", 40.0)]  # unrated row dropped


def test_train_save_load_round_trip_gives_identical_predictions(tmp_path, embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    model = train(rated_rows(), rated_rows(), scorer, ridge=1.0, data_name="fixture", method="ridge")
    model.save(tmp_path / "model")
    loaded = OriginalityModel.load(tmp_path / "model")
    answers = [a for answers in ANSWERS.values() for a, _ in answers]
    items = [item for item, answers in ANSWERS.items() for _ in answers]
    config = dict(cache_path=isolated_cache)
    first = Scorer(ScoringConfig(**config, originality_model=str(tmp_path / "model")), embedder=embedder).score(
        answers, items=items, tasks=["aut"] * len(answers), metrics=["originality"]).rows
    direct = model.predict(featurize(rated_rows(), scorer, model.task_names))
    assert [r["originality"] for r in first] == pytest.approx(direct.tolist(), abs=1e-12)
    assert np.array_equal(loaded.weights, model.weights) and loaded.intercept == model.intercept
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["training_answers"] == 12 and card["validation"]["answers"] == 12 and card["tasks"] == ["aut"]
    # fitted on these very answers, the model ranks them much like the raters did
    assert card["validation"]["spearman"] > 0.5


def test_loading_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not an originality model"):
        OriginalityModel.load(tmp_path)


def test_packaged_model_and_degenerate_answers(embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    answers = ["grind it into red pigment for a cave painting", "build a wall", "", "!!", "doorstop"]
    rows = scorer.score(answers, items=["brick"] * 5, tasks=["aut"] * 5, metrics=["originality"]).rows
    values = [r["originality"] for r in rows]
    assert values[2:4] == [10.0, 10.0]  # no words: the lowest score on the scale
    assert values[0] > values[1] >= 10.0  # the packaged model prefers the unusual use
    assert values[0] > values[4] > 10.0  # a one-word answer is an answer: the model rates it
    assert scorer.score(["a b"], metrics=["originality"], items=["x"]).rows[0]["originality"] >= 10.0


def test_semantic_distance_is_one_minus_cosine(embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    rows = scorer.score(["a red brick wall", "quantum physics"], items=["brick", "brick"],
                        metrics=["semantic_distance"]).rows
    e = embedder.model.encode(["brick", "a red brick wall", "quantum physics"])
    for row, v in zip(rows, e[1:]):
        cos = float(v @ e[0]) / math.sqrt(float(v @ v) * float(e[0] @ e[0]))
        assert row["semantic_distance"] == pytest.approx(1 - cos, abs=1e-5)
    # without an item, the prompt is the reference
    by_prompt = scorer.score(["a red brick wall"], prompts=["brick"], metrics=["semantic_distance"]).rows[0]
    assert by_prompt["semantic_distance"] == pytest.approx(rows[0]["semantic_distance"], abs=1e-9)


def test_validity_against_hand_worked_numbers():
    # ranks of y are 1 3 2 4: d^2 = 0 1 1 0 -> Spearman 1 - 6*2/(4*15) = 0.8; Pearson also 0.8 here
    assert correlation([1, 2, 3, 4], [1, 3, 2, 4], "spearman") == pytest.approx(0.8)
    assert correlation([1, 2, 3, 4], [1, 3, 2, 4], "pearson") == pytest.approx(0.8)
    # item A: perfect agreement (+1); item B: reversed (-1); item C: too few answers, ignored
    x = [1, 2, 3, 1, 2, 3, 5, 6]
    y = [1, 2, 3, 3, 2, 1, 9, 1]
    items = ["A"] * 3 + ["B"] * 3 + ["C"] * 2
    assert within_item(x, y, items, "spearman") == pytest.approx(0.0)
    # item A: 0.8 (as above), item B: reversed (-1) -> mean -0.1
    assert within_item([1, 2, 3, 4, 1, 2, 3], [1, 3, 2, 4, 3, 2, 1], ["A"] * 4 + ["B"] * 3, "spearman") == pytest.approx(-0.1)
    result = validity(x, y, items, iters=200, seed=1)
    est, low, high = result["spearman"]
    assert est == pytest.approx(correlation(x, y, "spearman")) and low <= est <= high
    assert result["spearman_within"][0] == pytest.approx(0.0)


def test_train_and_validate_commands(tmp_path, capsys):
    data = tmp_path / "rated.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rated_rows()))
    assert main(["originality", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--ridge", "1"]) == 0
    assert (tmp_path / "m" / "weights.npz").is_file() and (tmp_path / "m" / "card.json").is_file()
    capsys.readouterr()
    assert main(["validate", "--data", str(data), "--scorers", "novelty", "semantic_distance", "originality", "length",
                 "--iters", "50", "--plot", str(tmp_path / "v.png"), "--originality-model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    for name in ("novelty", "semantic_distance", "originality", "length"):
        assert any(line.startswith(name) for line in out.splitlines()), name
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_correlations_equal_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    x[:5] = x[5]  # ties: average ranks
    assert correlation(x, y, "spearman") == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert correlation(x, y, "pearson") == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def test_validate_conditions_surprise_on_the_task_instruction():
    from crpo_bench.commands.validate import task_instructions

    rows = [{"TasksNamesFull": "Alternate Uses of Objects Task", "Dataset": "ocsai", "Prompt": "brick"},
            {"TasksNamesFull": "Sentence Completion", "Dataset": "ocsai", "Prompt": "The door opened and"}]
    assert task_instructions(rows) == [
        "Come up with an original and creative use for the following object: brick",
        "Finish the sentence with an original and creative ending: The door opened and."]
