"""Issue 23 (hardening v2): each defect found by hostile-but-realistic probes, reproduced.
Every test here failed on 551949f. (Output folders: tests/test_output_folders.py; serve:
tests/test_serve_hardening.py; API credentials and errors: tests/test_api_hardening.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crpo_bench import card as cards
from crpo_bench import scoring
from crpo_bench.scoring import Scorer, ScoringConfig

from test_leaderboard import FIXTURE, cli, write_results

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def crpo_bench(*args, cwd: Path, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "crpo-bench"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})},
                          **kwargs)


# 2. A local embedder changed in place is never served stale vectors from the cache.
def test_embedding_cache_follows_a_local_embedder_changed_in_place(embedder, tmp_path):
    folder = tmp_path / "minilm-copy"
    embedder.model.save(str(folder))
    texts = ["a brick is a doorstop", "a brick is a bookend", "quantum chromodynamics"]

    def diversity():
        cards.folder_fingerprint.cache_clear()  # a new process, as a rerun would be
        scoring._load_embedder.cache_clear()
        scorer = Scorer(ScoringConfig(embedder=str(folder), cache_path=tmp_path / "cache.sqlite"))
        return [r["diversity"] for r in scorer.score(texts, metrics=["diversity"]).rows]

    mean_pooled = diversity()
    pooling = folder / "1_Pooling" / "config.json"
    settings = json.loads(pooling.read_text())
    if "pooling_mode" in settings:  # sentence-transformers >= 5 writes one mode
        settings["pooling_mode"] = "cls"
    else:
        settings.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(settings))
    scoring._load_embedder.cache_clear()
    uncached = Scorer(ScoringConfig(embedder=str(folder), embedding_cache=False)).score(texts, metrics=["diversity"])
    assert diversity() == pytest.approx([r["diversity"] for r in uncached.rows], abs=1e-9)
    assert not np.allclose(diversity(), mean_pooled, atol=1e-4)


def test_fingerprint_sees_large_weights_changed_in_place(tmp_path, monkeypatch):
    from crpo_bench import fingerprints

    monkeypatch.setattr(fingerprints, "SMALL_FILE", 1000)  # a 300 KB "weights" file counts as large
    weights = tmp_path / "model.safetensors"
    data = bytearray(np.random.default_rng(0).bytes(300_000))
    weights.write_bytes(bytes(data))
    first = fingerprints.folder_fingerprint.__wrapped__(str(tmp_path))
    data[150_000:150_100] = bytes(100)  # same size, other values in the middle
    weights.write_bytes(bytes(data))
    assert fingerprints.folder_fingerprint.__wrapped__(str(tmp_path)) != first


# 3. Two results for one (model, task) are an error naming both files, in check and leaderboard.
def test_a_stale_copy_of_a_result_cannot_fool_the_gate(tmp_path):
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    shutil.copytree(results / "crpo", results / "crpo.bak")  # the old, good run, kept as a backup
    regressed = json.loads(json.dumps(FIXTURE))
    regressed["crpo"][1]["novelty"] = [0.05, 0.005]
    write_results(results, {"crpo": regressed["crpo"]})
    for command in (["check", "--two-sided", "--baseline", baseline, "--results", results],
                    ["leaderboard", "--results", results, "--out", tmp_path / "board"]):
        proc = cli(*command, cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "two results for model 'crpo' on task 'muce_aut'" in proc.stderr
        assert "crpo/muce_aut.json" in proc.stderr and "crpo.bak/muce_aut.json" in proc.stderr
        assert "Traceback" not in proc.stderr


# 7. theme_uniqueness needs no n x n matrix: above the memory budget the vector Ward gives the same tree.
def test_vector_ward_gives_the_matrix_wards_clusters(embedder):
    from crpo_bench.metrics import themes

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 384))
    clustered = centres[rng.integers(0, 12, 400)] + 0.35 * rng.normal(size=(400, 384))
    real = embedder.encode([f"use a brick as {w}" for w in ("a doorstop", "a bookend", "a paperweight", "a step",
                                                             "a weapon", "a hammer", "a pillow", "art")] * 3)
    for vectors in (clustered / np.linalg.norm(clustered, axis=1, keepdims=True), real.astype(np.float64)):
        matrix, vector = themes.ward_tree(vectors), themes.ward_tree(vectors, matrix_bytes=0)
        np.testing.assert_allclose(np.sort(matrix[:, 2]), np.sort(vector[:, 2]), atol=1e-9)
        labels = themes.theme_labels(vectors)
        from scipy.cluster.hierarchy import fcluster

        cut = fcluster(vector, t=np.nextafter(themes.WARD_DISTANCE_THRESHOLD, -np.inf), criterion="distance")
        # the same partition (labels renumbered in order of first appearance)
        assert [list(labels).index(x) for x in labels] == [list(cut).index(x) for x in cut]


def test_theme_labels_of_a_corpus_past_the_budget_use_linear_memory(monkeypatch):
    """50,000 answers needed 9.2 GiB; here the budget is lowered so the switch is exercised fast."""
    import tracemalloc

    from crpo_bench.metrics import themes

    monkeypatch.setattr(themes, "MATRIX_BYTES", 10_000)
    vectors = np.random.default_rng(1).normal(size=(3000, 8))
    tracemalloc.start()
    labels = themes.theme_labels(vectors)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(labels) == 3000 and peak < 3000 * 2999 // 2 * 8 / 4  # well under the condensed matrix (36 MB)
