"""Issue 23 (hardening v2): each defect found by hostile-but-realistic probes, reproduced.
Every test here failed on 551949f. (Output folders: tests/commands/test_output_folders.py; serve:
tests/run/test_serve_hardening.py; API credentials and errors: tests/run/test_api_hardening.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crpo_bench.scoring import card as cards
from crpo_bench.scoring import scorer as scoring
from crpo_bench.scoring import Scorer, ScoringConfig

from results_fixtures import FIXTURE, cli, write_results

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


# 8, 12, 15, 19: bounded input, refused with FILE:LINE before any model loads.
@pytest.mark.parametrize("line, message", [
    ('{"response": "hello \\ud800 world"}', r"rows\.jsonl:2: field 'response': a lone surrogate \(\\ud800\)"),
    ('{"response": "x", "meta": ' + "[" * 3000 + "]" * 3000 + "}", r"rows\.jsonl:2: JSON nested more than 64 levels"),
    ('{"response": "x", "n": ' + "9" * 5000 + "}", r"rows\.jsonl:2: integer too large"),
    ('{"response": "x", "n": 1' + "0" * 25 + "}", r"rows\.jsonl:2: field 'n': integer too large"),
])
def test_out_of_bounds_rows_stop_before_any_model_loads(tmp_path, line, message):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"response": "a fine answer"}\n' + line + "\n")
    proc = crpo_bench("score", rows, "-o", tmp_path / "out.jsonl", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_deeply_nested_validate_data_is_named(tmp_path):
    data = tmp_path / "rated.jsonl"
    data.write_text('{"TasksNamesFull": "Poems", "Prompt": "x", "Set": "Test", "x": ' + "[" * 3000 + "]" * 3000
                    + "}\n")
    proc = crpo_bench("validate", "--data", data, "--scorers", "length", "--plot", tmp_path / "v.png", cwd=tmp_path)
    assert proc.returncode == 2 and "rated.jsonl:1: JSON nested more than 64 levels deep" in proc.stderr, proc.stderr


def test_an_endless_line_is_refused_not_read_into_memory(tmp_path):
    proc = crpo_bench("score", "/dev/zero", "-o", tmp_path / "out.jsonl", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "/dev/zero:1: line longer than 16 MiB" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", ["-30", "0"])
def test_a_non_positive_length_cap_is_refused(tmp_path, value):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"response": "a fine answer"}\n')
    proc = crpo_bench("score", rows, "-o", tmp_path / "out.jsonl", "--max-response-chars", value, cwd=tmp_path)
    assert proc.returncode == 2 and f"max_response_chars {value}: a positive number" in proc.stderr, proc.stderr


# 9. Resume reads a scores/partitions file torn inside a UTF-8 character.
def test_noveltybench_resumes_after_a_line_torn_inside_a_utf8_character(tmp_path):
    from crpo_bench.cli import main
    from noveltybench_fixtures import write_generations

    gens = [{"id": f"p-{k}", "prompt": "Name a dish.", "generations": [f"{w} 料理 {k}" for w in "abcdefghij"]}
            for k in range(2)]
    write_generations(tmp_path / "run", gens)
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    for name in ("partitions.jsonl", "scores.jsonl"):
        path = tmp_path / "run" / "v1.1" / name
        data = path.read_bytes()
        cut = data.rindex("料".encode()) + 1  # inside the last line's last 料
        path.write_bytes(data[:cut])
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    assert [json.loads(line)["id"] for line in (tmp_path / "run" / "v1.1" / "scores.jsonl").read_text().splitlines()] == \
        ["p-0", "p-1"]


# 10. A broken or unusable cache is one clear line naming it and the way out.
@pytest.mark.parametrize("damage", ["not a database", "a folder where the file should be", "read-only folder"])
def test_an_unusable_cache_is_named_with_the_way_out(tmp_path, damage):
    cache = tmp_path / "cache" / "embeddings.sqlite"
    cache.parent.mkdir()
    if damage == "not a database":
        cache.write_bytes(b"this is not sqlite" * 100)
    elif damage == "a folder where the file should be":
        cache.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        cache.parent.chmod(0o555)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"response": "a brick as a doorstop"}\n{"response": "a brick as a bookend"}\n')
    proc = crpo_bench("score", rows, "-o", tmp_path / "out.jsonl", "--metrics", "diversity", cwd=tmp_path,
                      env={"CRPO_BENCH_CACHE": str(cache.parent)})
    assert proc.returncode == 2, proc.stderr
    assert f"embedding cache {cache}" in proc.stderr and "--no-cache" in proc.stderr and "CRPO_BENCH_CACHE" in proc.stderr
    assert "Traceback" not in proc.stderr


# 13, 14: a full disk and Ctrl-C end with one line and the right exit code; nothing half-written.
def test_a_full_disk_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, embedder):
    import errno

    from crpo_bench.cli import main
    from crpo_bench.commands import score

    def full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(score, "write_jsonl_atomic", full)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"response": "a brick as a doorstop"}\n')
    assert main(["score", str(rows), "-o", str(tmp_path / "out.jsonl"), "--metrics", "dsi", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "crpo-bench score: error: no space left on the device" in err and str(tmp_path / "out.jsonl") in err
    assert not (tmp_path / "out.jsonl").exists()


def as_from_a_terminal():
    """In the child before exec: SIGINT unblocked and at its default, as a shell starts a command.
    (Late in a full pytest session the test process was seen passing SIGINT on ignored or blocked,
    and Python then never raises KeyboardInterrupt.)"""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """A real SIGINT while scoring: no traceback, no output file."""
    import signal
    import time

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"response": f"answer number {k} about bricks"}) + "\n" for k in range(20000)))
    proc = subprocess.Popen([str(BIN / "crpo-bench"), "score", str(rows), "-o", str(tmp_path / "out.jsonl"),
                             "--metrics", "diversity", "--no-cache"], cwd=tmp_path, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=as_from_a_terminal)
    # interrupt once the embedding is under way (its progress bar has moved), whatever the machine's speed
    seen, deadline = b"", time.monotonic() + 300
    while b"/20000 [" not in seen:  # the bar is drawn: the model is loaded and embedding has begun
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk and time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
        seen += chunk
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    err = (seen + proc.communicate(timeout=120)[1]).decode(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert "crpo-bench score: interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


# 16, 17: validate checks its plot path before the work, says the name it writes, and names an empty folder.
def test_validate_checks_the_plot_path_first_and_names_the_file_it_writes(tmp_path):
    data = tmp_path / "rated.jsonl"
    shutil.copy(ROOT / "examples" / "muce_mini.jsonl", data)
    proc = crpo_bench("validate", "--data", data, "--scorers", "length", "--plot", tmp_path / "nowhere" / "v.png",
                      cwd=tmp_path)
    assert proc.returncode == 2 and "no such directory (the folder of the plot" in proc.stderr, proc.stderr
    (tmp_path / "in").mkdir()
    proc = crpo_bench("validate", "--data", data, "--scorers", "length", "--plot", tmp_path / "in" / "adir",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"plot: {tmp_path / 'in' / 'adir.png'}" in proc.stdout and (tmp_path / "in" / "adir.png").is_file()


def test_validate_on_an_empty_folder_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = crpo_bench("validate", "--data", tmp_path / "empty", "--plot", tmp_path / "v.png", cwd=tmp_path)
    assert proc.returncode == 2 and "holds neither a saved DatasetDict nor per-split files" in proc.stderr
    assert "Traceback" not in proc.stderr
