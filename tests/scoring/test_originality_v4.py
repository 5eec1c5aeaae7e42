"""Originality v4 and v5: rarity among the corpus's answers (v5: also as z-scores within it), the transfer heads, the three
cross-validations against a brute-force recomputation, where a score is valid (card,
rows, leaderboard), training on MuCE's layout, and the packaged model's figures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from crpo_bench import Scorer, ScoringConfig, models, muce
from crpo_bench.scoring.card import metric_card, originality_domain
from crpo_bench.cli import main
from crpo_bench.results.leaderboard import UNVALIDATED, Entry, markdown, page
from crpo_bench.metrics import rarity
from crpo_bench.metrics.originality import OriginalityModel, answer_features
from crpo_bench.muce import data as muce_data
from crpo_bench.scoring.originality_training import TransferData, train, transfer_validation

V3, V4, V5 = (models.ARTIFACTS / f"originality-minilm-{v}" for v in ("v3", "v4", "v5"))

OBJECTS = {"aut": ["brick", "shoe", "spoon"], "instances": ["things that are round", "things that make noise"]}
IDEAS = ["build a wall", "hold a door open", "a tiny bed for a hamster", "grind it into pigment", "a boat for a mouse",
         "measure a room", "a drum for a parade", "a hat for a cat", "a plant pot", "a paperweight", "a bookend",
         "a pillow for a dog", "an anchor for a kite", "a step to reach the shelf", "a sculpture", "a doorstop",
         "a musical instrument", "a bird bath", "a candle holder", "a weapon in a play", "a toy car garage",
         "a mould for soap", "a coaster", "a stamp for clay", "a chess piece"]


def fixture_rows(n_per_item: int = 25) -> list[dict]:
    """Rated answers: 5 items of 2 task types, `n_per_item` answers each, ratings that grow with length."""
    names = {"aut": "Alternate Uses of Objects Task", "instances": "Instances of Common Concepts"}
    rows = []
    for task, items in OBJECTS.items():
        for k, item in enumerate(items):
            for j in range(n_per_item):
                answer = f"{IDEAS[(j + 3 * k) % len(IDEAS)]} {'and more ' * (j % 4)}".strip()
                rows.append({"TasksNamesFull": names[task], "Prompt": item, "Response": answer, "Language": "eng",
                             "facsco_grm_scaled": 15.0 + 2.0 * (j % 4) + 3.0 * ((j * 7 + k) % 5), "Set": "train"})
    return rows


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_peer_features_equal_a_brute_force_count():
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(60, 6)))
    corpora = ["a"] * 30 + ["b"] * 25 + ["c"] * 5
    found, valid = rarity.peer_features(vectors, corpora, min_peers=20)
    assert valid.tolist() == [True] * 55 + [False] * 5 and not found[55:].any()
    for i in (0, 17, 31, 54):
        group = [j for j in range(60) if corpora[j] == corpora[i] and j != i]
        cos = sorted((float(vectors[i] @ vectors[j]) for j in group), reverse=True)
        expected = [1 - sum(cos) / len(cos), sum(c > 0.7 for c in cos) / len(cos), sum(c > 0.5 for c in cos) / len(cos),
                    *(sum(cos[:k]) / k for k in (5, 10, 20))]
        assert found[i] == pytest.approx(expected, abs=1e-12)


def test_within_corpus_z_scores_equal_a_brute_force_computation():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(40, 3))
    features[:, 2] = np.where(np.arange(40) < 20, 7.0, features[:, 2])  # constant within corpus "a": z 0
    corpora = ["a"] * 20 + ["b"] * 15 + ["c"] * 5
    valid = np.array([True] * 35 + [False] * 5)
    found = rarity.within_corpus_z(features, corpora, valid)
    for i in range(40):
        for col in range(3):
            if not valid[i]:
                assert found[i, col] == 0.0
                continue
            group = [features[j, col] for j in range(40) if corpora[j] == corpora[i] and valid[j]]
            mean = sum(group) / len(group)
            sd = (sum((g - mean) ** 2 for g in group) / len(group)) ** 0.5
            assert found[i, col] == pytest.approx(0.0 if sd < 1e-12 else (features[i, col] - mean) / sd, abs=1e-9)


@pytest.fixture(scope="module")
def fixture_model(embedder):
    scorer = Scorer(ScoringConfig(cache_path=None), embedder=embedder)
    rows = fixture_rows()
    return train(rows, None, scorer, data_name="fixture"), rows, scorer


def test_the_transfer_model_round_trips_and_chooses_its_head_per_answer(tmp_path, fixture_model, embedder):
    model, rows, _ = fixture_model
    assert model.card["peers"]["min_peers"] == rarity.MIN_PEERS and model.with_peers is not None
    model.save(tmp_path / "m")
    loaded = OriginalityModel.load(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "card.json").read_text())["format_version"] == 4
    assert loaded.base_features == "answer" and loaded.with_peers is not None and loaded.relative_peers
    # 22 answers to a new object (one corpus: peers), 3 to another (too few: base), 2 to a rated item (memory)
    answers = [f"{idea} again" for idea in IDEAS[:22]] + ["a hat", "a coaster", "a sculpture", "a doorstop", "a hat"]
    items = ["pebble"] * 22 + ["cork"] * 3 + ["brick"] * 2
    tasks = ["aut"] * 25 + ["aut", "poems"]
    corpora = items
    a, p = embedder.encode(answers), embedder.encode(items)
    n_words = [len(x.split()) for x in answers]
    values, heads = loaded.score_with_heads(a, p, tasks, items, n_words, corpora)
    assert heads == ["peers"] * 22 + ["base"] * 3 + ["memory", "base"]
    assert values == pytest.approx(model.score(a, p, tasks, items, n_words, corpora), abs=1e-9)
    base = loaded.predict(answer_features(a, p, n_words))
    assert values[22:25] == pytest.approx(base[22:25], abs=1e-9)
    assert [loaded.domain(t, h) for t, h in zip(tasks[-3:], heads[-3:])] == [
        "rated task type", "rated item", "unvalidated task type"]


def test_scored_rows_say_where_their_originality_stands(tmp_path, fixture_model, embedder):
    model, _, _ = fixture_model
    model.save(tmp_path / "m")
    scorer = Scorer(ScoringConfig(cache_path=None, originality_model=str(tmp_path / "m")), embedder=embedder)
    rows = scorer.score(["a boat for a mouse", "a hat for a cat", "a sonnet about rain"], items=["brick", "pebble", "rain"],
                        tasks=["aut", "aut", "poems"], corpus_ids=[1, 2, 3], metrics=["originality"]).rows
    assert [r["originality_domain"] for r in rows] == ["rated item", "rated task type", "unvalidated task type"]


def brute_force_types(data: TransferData, ridge: float) -> dict[str, float]:
    """Leave-one-task-type-out with the base head only (no corpus is large enough for peers):
    standardise, solve the ridge system, predict the held-out type, Spearman."""
    out = {}
    for task in sorted(set(data.tasks)):
        train_rows, test_rows = data.tasks != task, data.tasks == task
        X, y = data.base[train_rows], data.y[train_rows]
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1
        A = (X - mean) / scale
        w = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ (y - y.mean()))
        predicted = np.clip((data.base[test_rows] - mean) / scale @ w + y.mean(), 10, 50)
        out[task] = stats.spearmanr(predicted, data.y[test_rows]).statistic
    return out


def test_leave_one_task_type_out_equals_a_brute_force_recomputation(embedder):
    rows = fixture_rows(n_per_item=12)  # 11 peers: below MIN_PEERS, so the base head scores everything
    scorer = Scorer(ScoringConfig(cache_path=None), embedder=embedder)
    answers = scorer.embed([r["Response"] for r in rows], "answers", 64)
    items = scorer.embed([r["Prompt"] for r in rows], "items", 64)
    data = TransferData.build(rows, answers, items, np.array([r["facsco_grm_scaled"] for r in rows]))
    assert not data.valid.any()
    found = transfer_validation(data, (10.0, 10.0))["spearman_by_task"]
    assert found["scorer"]["types"] == pytest.approx(brute_force_types(data, 10.0), abs=1e-4)
    assert found["scorer"]["types"] == found["scorer_without_peers"]["types"]
    # the simple signals need no fitting: their Spearman within each task type
    length = np.array([len(r["Response"].split()) for r in rows], dtype=float)
    for task in ("aut", "instances"):
        keep = data.tasks == task
        assert found["signals"]["length"][task] == pytest.approx(stats.spearmanr(length[keep], data.y[keep]).statistic,
                                                                 abs=1e-4)
    assert set(found["scorer"]) == {"random", "items", "types"}


def test_the_card_and_leaderboard_flag_unvalidated_task_types(tmp_path, fixture_model):
    model, _, _ = fixture_model
    model.save(tmp_path / "m")
    card = metric_card(ScoringConfig(originality_model=str(tmp_path / "m")), surprise=False)
    validity = card["originality_validity"]
    assert validity["task_types"] == ["aut", "instances"] and validity["items"] == 5
    assert set(validity["transfer_spearman"]["held-out task type"]) == {"aut", "instances"}
    assert originality_domain(validity, "aut") == "rated task type"
    assert originality_domain(validity, "poems") == "unvalidated task type"
    entries = [Entry(m, task, "originality", value, 0.5, True, False,
                     {**card, "originality_domain": originality_domain(validity, task.removeprefix("muce_"))})
               for m, value in (("a", 30.0), ("b", 31.0)) for task in ("muce_aut", "muce_poems")]
    text = markdown(entries)
    table_rows = lambda task: [line for line in text[text.index(f"## {task}"):].splitlines()[1:]
                               if line.startswith("| ") and line.split("|")[1].strip() in ("a", "b")][:2]
    assert all(f"{UNVALIDATED} (" in row for row in table_rows("muce_poems"))
    assert not any(UNVALIDATED in row for row in table_rows("muce_aut"))
    assert "unvalidated task type" in text and "unvalidated task type" in page(entries)
    assert UNVALIDATED not in markdown([e for e in entries if e.task == "muce_aut"])


def test_an_lm_eval_task_card_names_its_domain(monkeypatch):
    """Tasks built by lm-eval's own task manager on the embedded examples: a rated task type
    and one the packaged scorer never saw rated."""
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = get_task_dict(["muce_aut", "muce_poems"], TaskManager(metadata={"muce_data": "examples"}))
    domains = {name: task.config.metadata["card"]["originality_domain"] for name, task in tasks.items()}
    assert domains == {"muce_aut": "rated task type", "muce_poems": "unvalidated task type"}


def test_training_on_muces_layout_covers_its_task_types(tmp_path, monkeypatch, capsys):
    """`originality train --data hub` with the hub replaced by MuCE-layout rows (raw layout:
    `Set` per row): trains on the Training rows of every task type there."""
    names = {"Poems": ["autumn", "the sea"], "Metaphors": ["a stormy mind", "time is"],
             "Alternate Uses of Objects Task": ["brick", "shoe"]}
    raw = [{"TaskType": "text", "Language": "English", "TasksNamesFull": task, "Dataset": "d", "Prompt": item,
            "Set": "Training", "Response": f"{IDEAS[j]} {item}", "facsco_grm_scaled": 12.0 + (j * 11 + k) % 37}
           for task, items in names.items() for k, item in enumerate(items) for j in range(8)]
    raw += [{**raw[0], "Set": "HeldoutItem", "Prompt": "never trained on"}]
    monkeypatch.setattr(muce_data, "load_hub", lambda config=None: muce_data._with_split(raw, "fixture", None))
    assert main(["originality", "train", "--data", "hub", "--out", str(tmp_path / "m")]) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["validated"]["task_types"] == ["aut", "metaphors", "poems"]
    assert len(card["validated"]["items"]) == 6 and card["training_answers"] == 48
    assert set(card["transfer"]["spearman_by_task"]["scorer"]["types"]) == {"aut", "metaphors", "poems"}


# --- the packaged model on the shared ratings ---------------------------------------------


def test_the_packaged_v5_transfers_at_least_as_well_as_every_simple_signal_and_to_unseen_items():
    card = json.loads((V5 / "card.json").read_text())
    figures = card["transfer"]["spearman_by_task"]
    held_out_type = figures["scorer"]["types"]
    assert set(held_out_type) == {"aut", "consequences", "instances", "sentence_completion"}
    for task, rho in held_out_type.items():
        assert rho >= max(figures["signals"][s][task] for s in ("length", "semantic_distance", "diversity")), task
    assert np.mean(list(held_out_type.values())) >= 0.45
    # whole unseen items: within 0.03 of the random split of the same task type
    random, items = figures["scorer"]["random"], figures["scorer"]["items"]
    assert {task: random[task] - items[task] <= 0.03 for task in random} == {task: True for task in random}
    assert sum(f.stat().st_size for f in V5.iterdir()) <= 20 * 2**20  # the 20 MB budget


def test_the_packaged_v4_still_loads_and_scores_without_z_scores(embedder):
    """A format-3 model (v4) reads no z-scores: its peers head has v4's 8 inputs."""
    v4 = OriginalityModel.load(V4)
    assert not v4.relative_peers and v4.with_peers.weights.shape == (8,)
    answers = [f"{idea} again" for idea in IDEAS[:22]]
    values, heads = v4.score_with_heads(embedder.encode(answers), embedder.encode(["pebble"] * 22), ["aut"] * 22,
                                        ["pebble"] * 22, [len(a.split()) for a in answers], ["pebble"] * 22)
    assert heads == ["peers"] * 22 and np.all((values >= 10) & (values <= 50))


def test_a_card_that_disagrees_with_the_peers_weights_is_a_clear_error(tmp_path):
    folder = tmp_path / "v5"
    shutil.copytree(V5, folder)
    card = json.loads((folder / "card.json").read_text())
    card["peers"]["relative"] = False  # v5's 14 weights, read as v4's 8 inputs
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"weights.npz: the peers head has 14 weights where the card's features need 8"):
        OriginalityModel.load(folder)


def test_known_items_score_as_v3_did(shared_data):
    """v5 keeps v3's memory head: answers to rated items get v3's scores, within the
    cross-machine tolerance of a retrained memory (test_originality_v3: 0.1 max, 0.01 mean;
    v3 was packaged on another machine than v5)."""
    rows = muce.read_rated(shared_data / "ocsai1" / "alltests_val.jsonl")[::7]
    score = lambda folder: [r["originality"] for r in Scorer(ScoringConfig(originality_model=str(folder))).score(
        [r["Response"] for r in rows], items=[r["Prompt"] for r in rows],
        tasks=[muce.task_slug(r["TasksNamesFull"]) for r in rows], metrics=["originality"]).rows]
    gap = np.abs(np.array(score(V5)) - np.array(score(V3)))
    assert gap.max() <= 0.1 and gap.mean() <= 0.01


def test_validate_prints_the_three_cross_validations(tmp_path, capsys):
    data = tmp_path / "rated.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in fixture_rows(n_per_item=12)))
    assert main(["validate", "--data", str(data), "--scorers", "length", "--iters", "20", "--transfer",
                 "--plot", str(tmp_path / "v.png")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("originality v5 fitted on these ratings"):]
    for label in ("random split", "held-out item", "held-out task type", "length", "semantic_distance", "diversity"):
        assert label in table, label
    assert "aut" in table.splitlines()[1] and "instances" in table.splitlines()[1]
