"""`crpo-bench import`: published NoveltyBench evaluations (v1.0 and v1.1) as leaderboard rows,
reported and measured figures side by side, bad files named by FILE:LINE and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crpo_bench import noveltybench as nb
from crpo_bench.noveltybench.published import read_published

BIN = Path(sys.executable).parent
GEMINI = "noveltybench/published/2025-03-27_gemini-1.5-pro/nb-curated"
PROMPTS = 6  # a slice of the published run keeps the test fast


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "crpo-bench"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def published_rows(shared_data) -> list[dict]:
    lines = (shared_data / GEMINI / "scores.jsonl").read_text().splitlines()[:PROMPTS]
    return [json.loads(line) for line in lines]


def write_v10(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"mean_distinct": 0.5}))
    return folder


def write_v11(folder: Path, rows: list[dict]) -> Path:
    """NoveltyBench's v1.1 layout: generations beside v1.1/ files that drop them."""
    (folder / "v1.1").mkdir(parents=True)
    (folder / "generations.jsonl").write_text("".join(
        json.dumps({"id": r["id"], "prompt": r["prompt"], "model": r["model"], "generations": r["generations"]}) + "\n"
        for r in rows))
    without = [{k: v for k, v in r.items() if k != "generations"} for r in rows]
    (folder / "v1.1" / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(without)))
    (folder / "v1.1" / "summary.json").write_text(json.dumps({"version": "1.1", "mean_distinct": 1.5}))
    return folder


def test_reported_classes_are_counted_from_each_partition(shared_data):
    published = read_published(shared_data / GEMINI)
    raw = [json.loads(line) for line in (shared_data / GEMINI / "scores.jsonl").read_text().splitlines()]
    assert published.version == "1.0" and published.model == "gemini-1.5-pro" and len(published.prompts) == 100
    assert published.classes == [len(set(r["partition"])) for r in raw]
    assert np.mean(published.classes) == pytest.approx(1.83)  # the published `distinct` (0.83) is classes - 1


def test_a_v11_folder_gives_the_same_row_as_v10(tmp_path, published_rows):
    rows = {}
    for version, write in (("1.0", write_v10), ("1.1", write_v11)):
        folder = write(tmp_path / f"v{version}", published_rows)
        proc = cli("import", folder, "--model", "gemini-1.5-pro", "--baseline", "--out", tmp_path / f"r{version}",
                   "--lm", "none", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads((tmp_path / f"r{version}" / "gemini-1.5-pro" / "noveltybench_curated.json").read_text())
        assert data["crpo_bench"]["kind"] == "published" and data["crpo_bench"]["baseline"] is True
        assert data["crpo_bench"]["provenance"]["metric_version"] == version
        assert data["crpo_bench"]["card"]["provenance"]["files"]  # the hash of every file read
        # these six prompts give no verdict on two short texts against the rule
        assert data["crpo_bench"]["provenance"]["reference_short_rule"] is True
        rows[version] = data["results"]["noveltybench_curated"]
    assert rows["1.0"].keys() == rows["1.1"].keys()  # the v1.1 rows came in another order: sums differ in last bits
    assert {k: v for k, v in rows["1.0"].items() if k != "alias"} == \
        pytest.approx({k: v for k, v in rows["1.1"].items() if k != "alias"}, rel=1e-12)
    row = rows["1.0"]
    classes = [len(set(r["partition"])) for r in published_rows]
    assert row["distinct_reported,samples"] == pytest.approx(np.mean(classes))
    assert row["distinct_reported_stderr,samples"] == pytest.approx(np.std(classes, ddof=1) / np.sqrt(PROMPTS))
    assert row["utility_reported,samples"] == pytest.approx(np.mean([r["utility"] for r in published_rows]))
    for measured in ("distinct", "novelty", "diversity", "ngram_diversity_2"):
        assert isinstance(row[f"{measured},samples"], float), measured
    assert 1 <= row["distinct,samples"] <= 10 and "surprise,samples" not in row  # --lm none

    # the leaderboard shows reported and measured in their own columns
    proc = cli("leaderboard", "--results", tmp_path / "r1.0", "--out", tmp_path / "board", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model") and "distinct" in line)
    assert "distinct_reported" in header and "| distinct " in header and "utility_reported" in header


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("partition"), r"scores\.jsonl:3: field 'partition' is missing"),
    (lambda r: r.update(partition=r["partition"][:-1]), r"scores\.jsonl:3: field 'partition' must be one class"),
    (lambda r: r["generations"].__setitem__(4, 7), r"scores\.jsonl:3: field 'generations' must be a non-empty list "
                                                   r"of strings"),
    (lambda r: r.update(utility="high"), r"scores\.jsonl:3: field 'utility' must be a finite number"),
])
def test_bad_published_files_stop_with_exit_2_naming_line_and_field(tmp_path, published_rows, edit, message):
    rows = json.loads(json.dumps(published_rows))
    edit(rows[2])
    folder = write_v10(tmp_path / "bad", rows)
    proc = cli("import", folder, "--model", "m", "--out", tmp_path / "r", "--lm", "none", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    import re

    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r" / "m").exists()


def test_a_v11_partition_without_its_generations_is_named(tmp_path, published_rows):
    folder = write_v11(tmp_path / "v11", published_rows)
    lines = (folder / "generations.jsonl").read_text().splitlines()
    (folder / "generations.jsonl").write_text("\n".join(lines[1:]) + "\n")
    proc = cli("import", folder, "--model", "m", "--out", tmp_path / "r", "--lm", "none", cwd=tmp_path)
    assert proc.returncode == 2 and "is not in generations.jsonl" in proc.stderr and "v1.1/scores.jsonl:" in proc.stderr


def test_partitions_made_before_the_short_text_rule_are_measured_without_it(tmp_path, shared_data):
    """Gemini's prompts whose reference verdicts on two short texts contradict the rule: the
    import reads that from the file, records it, and measures `distinct` with the surrogate
    partitioning as that reference did (the trees decide short texts); the card keeps one
    judge name, so the row stays comparable with the others."""
    from crpo_bench.models import minilm_tokenizer
    from crpo_bench.noveltybench import surrogate as es
    from crpo_bench.scoring import Scorer, ScoringConfig

    rows = [json.loads(line) for line in (shared_data / GEMINI / "scores.jsonl").read_text().splitlines()]
    contradicting = [r for r in rows if nb.made_with_short_rule([(r["generations"], r["partition"])]) is False][:3]
    assert len(contradicting) == 3
    folder = write_v10(tmp_path / "old", contradicting)
    proc = cli("import", folder, "--model", "old", "--out", tmp_path / "r", "--lm", "none", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "r" / "old" / "noveltybench_curated.json").read_text())
    provenance = data["crpo_bench"]["provenance"]
    assert provenance["reference_short_rule"] is False
    counts = provenance["reference_short_text_verdicts"]
    assert 0 < counts["agreeing_with_rule"] < counts["compared"]
    assert data["crpo_bench"]["card"]["equivalence"] == "surrogate/" + es.packaged_path().name
    scorer = Scorer(ScoringConfig(embedding_cache=False))
    texts = [g for r in contradicting for g in r["generations"]]
    embed = lambda t: scorer.embed(t, "e", 16)  # noqa: E731
    unruled = es.surrogate_equivalence(texts, embed, minilm_tokenizer(), short_rule=False)
    expected = np.mean([len(set(nb.partition(r["generations"], unruled))) for r in contradicting])
    assert data["results"]["noveltybench_curated"]["distinct,samples"] == pytest.approx(expected)
