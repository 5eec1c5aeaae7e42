"""Originality v3: the memory of rated answers, the packaged artifact, v2 by name, and
retraining that reproduces the packaged model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from crpo_bench import Scorer, ScoringConfig, models, muce
from crpo_bench.metrics import rated_memory
from crpo_bench.metrics.originality import OriginalityModel, features
from crpo_bench.metrics.rated_memory import RatedMemory, item_key
from crpo_bench.scoring.originality_training import train

from test_originality import rated_rows

V2, V3, V5 = (models.ARTIFACTS / f"originality-minilm-{v}" for v in ("v2", "v3", "v5"))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_memory_features_equal_a_brute_force_recomputation():
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(14, 24)))
    scores = rng.uniform(10, 50, 14)
    tasks = ["aut"] * 9 + ["instances"] * 5
    items = ["Brick"] * 6 + ["shoe"] * 3 + ["round"] * 5
    memory, position = RatedMemory.build(vectors, scores, tasks, items, dimensions=8)
    queries = unit(rng.normal(size=(3, 24)))
    got, known = memory.features(np.vstack([queries, vectors[:2]]), ["aut", "aut", "instances", "aut", "aut"],
                                 [" brick ", "pebble", "ROUND", "Brick", "Brick"],
                                 exclude=np.array([-1, -1, -1, position[0], position[1]]))
    assert known.tolist() == [True, False, True, True, True]  # no rated answer to a pebble

    # by hand: project on the stored basis, quantise, renormalise, compare with each rated answer
    def codes(v):
        p = v @ memory.basis.astype(np.float64)
        return unit(np.round(unit(p) * 127))

    def brute(query, members):
        cos = np.array([codes(query) @ codes(vectors[j]) for j in members])
        s = scores[members]
        order = sorted(range(len(members)), key=lambda k: -cos[k])
        w = np.exp(cos / rated_memory.TEMPERATURE)
        return [np.mean(s[order[:5]]), np.mean(s[order[:20]]), (w * s).sum() / w.sum(), cos.max(), cos.mean(),
                np.mean(cos > rated_memory.NEAR), s.mean(), np.log(len(members))]

    brick, rounds = list(range(6)), list(range(9, 14))
    expected = [brute(queries[0], brick), brute(queries[2], rounds),
                brute(vectors[0], [j for j in brick if j != 0]), brute(vectors[1], [j for j in brick if j != 1])]
    assert got[[0, 2, 3, 4]] == pytest.approx(np.array(expected), abs=1e-5)
    assert not got[1].any()


def test_item_keys_ignore_case_and_spacing_but_not_the_task():
    assert item_key("aut", "  Paper   Clip ") == item_key("aut", "paper clip") != item_key("instances", "paper clip")


def test_a_memory_model_round_trips_and_scores_unrated_items_with_the_plain_head(tmp_path, embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    model = train(rated_rows(), None, scorer, ridge=1.0, data_name="fixture", method="memory")
    model.save(tmp_path / "m")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["memory"]["answers"] == 12 and card["memory"]["items"] == 2 and card["format_version"] == 2
    answers = ["a doorstop for the garden gate", "a boat for a mouse", "a doorstop for the garden gate"]
    items, tasks = ["brick", "shoe", "pebble"], ["aut"] * 3
    rows = Scorer(ScoringConfig(cache_path=isolated_cache, originality_model=str(tmp_path / "m")),
                  embedder=embedder).score(answers, items=items, tasks=tasks, metrics=["originality"]).rows
    a, p = embedder.encode(answers), embedder.encode(items)
    n_words = [len(x.split()) for x in answers]
    X = features(a, p, tasks, model.task_names, n_words)
    M, known = model.memory.features(a, tasks, items)
    assert known.tolist() == [True, True, False]
    expected = [*model.with_memory.predict(np.hstack([X, M])[:2]), model.predict(X[2:])[0]]
    # The scorer embeds in batches of its own, and a batch's padding moves an embedding by ~1e-7 on
    # CPUs without AVX-512 kernels (README, "Reproducing the packaged models"); the memory head turns
    # that into a few 1e-6 on the 10-50 scale. Using the wrong head moves a row by far more (below).
    assert [r["originality"] for r in rows] == pytest.approx(expected, abs=1e-4)
    plain = model.predict(X[:2])
    assert np.abs(plain - np.asarray(expected[:2])).min() > 100 * 1e-4


def test_the_packaged_v3_loads_offline_and_scores_deterministically(embedder):
    card = json.loads((V3 / "card.json").read_text())
    assert card["memory"]["answers"] == 30246 and card["validation"]["spearman"] >= 0.80
    assert sum(f.stat().st_size for f in V3.iterdir()) <= 10 * 2**20  # the 10 MB budget
    answers = ["grind it into red pigment for a cave painting", "build a wall", "a tiny bed for a hamster"]
    score = lambda: [r["originality"] for r in Scorer(ScoringConfig(cache_path=None), embedder=embedder).score(
        answers, items=["brick"] * 3, tasks=["aut"] * 3, metrics=["originality"]).rows]
    first = score()
    assert first == score() and first[0] > first[1]
    assert models.originality_model_path("v3") == V3 and models.originality_model_path(None) == V5


def test_v2_stays_available_by_name(embedder, isolated_cache):
    answers, items = ["a boat for a mouse", "wear it on your foot"], ["shoe", "shoe"]
    v2 = OriginalityModel.load(V2)
    a, p = embedder.encode(answers), embedder.encode(items)
    direct = v2.predict(features(a, p, ["aut", "aut"], v2.task_names, [5, 5]))
    for name in ("v2", "originality-minilm-v2", str(V2)):
        rows = Scorer(ScoringConfig(cache_path=isolated_cache, originality_model=name), embedder=embedder).score(
            answers, items=items, tasks=["aut", "aut"], metrics=["originality"]).rows
        assert [r["originality"] for r in rows] == pytest.approx(direct.tolist(), abs=1e-4)  # float32 batches


def test_bad_or_missing_artifacts_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="v9 is not an originality model"):
        OriginalityModel.load(models.originality_model_path("v9"))
    broken = tmp_path / "v3-copy"
    shutil.copytree(V3, broken)
    (broken / "memory.npz").unlink()
    with pytest.raises(FileNotFoundError, match="memory.npz is missing"):
        OriginalityModel.load(broken)
    shutil.copy(V3 / "memory.npz", broken / "memory.npz")
    (broken / "weights.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"weights.npz: not a readable originality model file"):
        OriginalityModel.load(broken)
    shutil.copy(V3 / "weights.npz", broken / "weights.npz")
    (broken / "memory.npz").write_bytes((V3 / "memory.npz").read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match=r"memory.npz: not a readable originality model file"):
        OriginalityModel.load(broken)
    (broken / "card.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"card.json: not a readable card"):
        OriginalityModel.load(broken)


# Retraining on another CPU: embeddings agree to ~1e-7, not exactly, and the memory's int8
# codes and nearest neighbours follow. Measured |retrained - packaged| over every fifth
# validation answer (10-50 scale): 0.0004 max, 0.0001 mean on this project's build machine
# (also with 1e-7 relative noise on every embedding component, benchmarks/training_spread.py);
# 0.022 max on another 2-core CPU (issue 30). A neighbouring memory ridge (300 for 1000)
# moves them by 0.67 max, 0.15 mean; 100 by 0.97 max, 0.21 mean.
MAX_GAP, MEAN_GAP = 0.1, 0.01
RIDGE_TOLERANCE = 0.001  # cross-validated Spearman: a ridge this close to the chosen one's is the same choice


@pytest.fixture(scope="module")
def validation_scores(shared_data):
    rows = muce.read_rated(shared_data / "ocsai1" / "alltests_val.jsonl")[::5]
    return lambda folder: np.array([r["originality"] for r in Scorer(ScoringConfig(originality_model=str(folder))).score(
        [r["Response"] for r in rows], items=[r["Prompt"] for r in rows],
        tasks=[muce.task_slug(r["TasksNamesFull"]) for r in rows], metrics=["originality"]).rows])


def reproduction_failures(card: dict, packaged: dict, gap: np.ndarray) -> list[str]:
    """What makes a retrained model (its card, its predictions' gap to the packaged model's)
    a different model from the packaged one (empty: the same model)."""
    failures = []
    # v3 chose its ridges by a random split; v5 each transfer head's by leave-one-task-type-out
    transfer = packaged.get("ridge_transfer_cv") or {}
    heads = [("ridge", card["ridge"], packaged["ridge"], packaged.get("ridge_cv_spearman") or transfer.get("base_mean_spearman")),
             ("memory ridge", card["memory"]["ridge"], packaged["memory"]["ridge"], packaged["memory"].get("ridge_cv_spearman"))]
    if packaged.get("peers"):
        heads.append(("peers ridge", card["peers"]["ridge"], packaged["peers"]["ridge"], transfer["mean_spearman"]))
    for head, fresh, theirs, scores in heads:
        chosen = scores.get(str(float(fresh)))
        if chosen is None or chosen < scores[str(float(theirs))] - RIDGE_TOLERANCE:
            failures.append(f"{head} {fresh}: cross-validated Spearman {chosen} where the packaged "
                            f"{theirs} has {scores[str(float(theirs))]}")
    if gap.max() > MAX_GAP or gap.mean() > MEAN_GAP:
        failures.append(f"predictions differ by {gap.max():.4f} at most, {gap.mean():.4f} on average")
    return failures


def test_retraining_reproduces_the_packaged_v5(tmp_path, shared_data, validation_scores):
    """The README's retraining command, run for real on the full training file (about 1 min
    on one CPU thread with cached embeddings), gives the packaged model (the default, v5) within the cross-machine
    tolerances."""
    out = tmp_path / "v5"
    command = [sys.executable, "-m", "crpo_bench.cli", "originality", "train",
               "--data", str(shared_data / "ocsai1" / "alltests_train.jsonl"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    gap = np.abs(validation_scores(out) - validation_scores(V5))
    retrained, packaged = (json.loads((f / "card.json").read_text()) for f in (out, V5))
    assert reproduction_failures(retrained, packaged, gap) == []


def test_retraining_with_another_ridge_is_told_apart(tmp_path, shared_data, validation_scores):
    """The reproduction check sees a material change: one hyperparameter moved (both ridge
    strengths 300, off the grid) fails it, through the predictions alone too. The embeddings
    come from the cache the retraining test filled (about 15 s)."""
    rows = muce.read_rated(shared_data / "ocsai1" / "alltests_train.jsonl")
    model = train(rows, None, Scorer(ScoringConfig()), ridge=300.0)
    model.save(tmp_path / "moved")
    gap = np.abs(validation_scores(tmp_path / "moved") - validation_scores(V5))
    packaged = json.loads((V5 / "card.json").read_text())
    failures = reproduction_failures(model.card, packaged, gap)
    assert any(f.startswith("predictions differ") for f in failures), failures
    assert any(f.startswith("memory ridge 300.0") for f in failures), failures
