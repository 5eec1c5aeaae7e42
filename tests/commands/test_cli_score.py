"""`crpo-bench score`: the installed console script end to end, and every bad-input message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench.cli import main
from crpo_bench.scoring.embedding_cache import EmbeddingCache

ROWS = [
    {"id": 1, "task": "aut", "prompt": "Uses for a brick?", "response": "Hollow it out as a planter for succulents."},
    {"id": 2, "task": "aut", "prompt": "Uses for a brick?", "response": "Grind it into pigment for a mural."},
    {"id": 3, "task": "aut", "prompt": "Uses for a brick?", "response": ""},
    {"id": "p-1", "task": "poems", "prompt": "A poem about rain.", "response": "The roof keeps time in silver ticks."},
    {"id": "p-2", "task": "poems", "prompt": "A poem about rain.", "response": "Clouds unpack their glass luggage."},
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def crpo_bench_executable() -> str:
    """The console script installed beside this Python (the wheel's entry point)."""
    exe = Path(sys.executable).parent / "crpo-bench"
    return str(exe) if exe.exists() else shutil.which("crpo-bench")


def test_console_script_scores_a_file(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "CRPO_BENCH_CACHE": os.environ.get("CRPO_BENCH_CACHE", str(tmp_path / "cache"))}
    exe = crpo_bench_executable()
    assert exe, "the crpo-bench console script is not installed"
    proc = subprocess.run(
        [exe, "score", str(src), "-o", str(out), "--metrics", "novelty", "diversity", "ngram_diversity", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == len(ROWS)
    for row, original in zip(scored, ROWS):
        assert {k: row[k] for k in original} == original  # input fields kept as they were
        assert set(row) == set(original) | {"degenerate", "novelty", "diversity"} | {
            f"ngram_diversity_{n}" for n in range(1, 6)}
    assert scored[2]["degenerate"] == "empty" and scored[2]["novelty"] == 0.0
    # per task corpora: two real answers each, so their diversities are equal pairwise
    assert scored[0]["diversity"] == pytest.approx(scored[1]["diversity"], abs=1e-9)
    assert scored[3]["diversity"] == pytest.approx(scored[4]["diversity"], abs=1e-9)
    table = proc.stdout.splitlines()
    assert table[0].split()[:5] == ["task", "n", "degenerate", "novelty", "diversity"]
    aut = next(line for line in table if line.startswith("aut")).split()
    assert aut[1:3] == ["3", "1"]
    assert float(aut[4]) == pytest.approx(scored[0]["diversity"], abs=1e-4)


def test_prompt_scope_makes_one_corpus_per_prompt(tmp_path, isolated_cache, monkeypatch):
    rows = [dict(r, task="aut") for r in ROWS if r["response"]]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "-o", str(out), "--metrics", "diversity", "--scope", "prompt", "--quiet"]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    # two answers per prompt: each pair has equal diversity, and the prompts differ
    assert scored[0]["diversity"] == pytest.approx(scored[1]["diversity"], abs=1e-9)
    assert scored[2]["diversity"] == pytest.approx(scored[3]["diversity"], abs=1e-9)
    assert scored[0]["diversity"] != pytest.approx(scored[2]["diversity"], abs=1e-6)


@pytest.mark.parametrize("lines, message", [
    (['{"response": "a b"}', '{"response": "c d"'], "in.jsonl:2: malformed JSON"),
    (['{"response": "a b"}', "", '{"prompt": "x"}'], "in.jsonl:3: missing field 'response'"),
    (['{"response": 42}'], "in.jsonl:1: field 'response' must be a string, got int"),
    (['{"response": null}'], "in.jsonl:1: field 'response' must be a string, got NoneType"),
    (['{"response": "a b", "prompt": ["x"]}'], "in.jsonl:1: field 'prompt' must be a string, got list"),
    (['{"response": "a b", "task": 3.5}'], "in.jsonl:1: field 'task' must be a string, got float"),
    (['{"response": "a b", "id": {"k": 1}}'], "in.jsonl:1: field 'id' must be a string or an integer, got dict"),
    (['["response", "a b"]'], "in.jsonl:1: expected a JSON object, got list"),
    (["", "  "], "in.jsonl: no rows to score"),
    # issue 13, item 8: passthrough numbers strict JSON cannot write back are refused with their field
    (['{"response": "a b", "score": NaN}'], "in.jsonl:1: field 'score': not a finite number (NaN)"),
    (['{"response": "a b", "meta": {"w": [1, -Infinity]}}'],
     "in.jsonl:1: field 'meta.w[1]': not a finite number (-Infinity)"),
    (['{"response": "a b", "x": 1e999}'], "in.jsonl:1: field 'x': not a finite number (Infinity)"),
    # item 8: duplicate ids name both lines
    (['{"id": 3, "response": "a b"}', '{"id": 4, "response": "a b"}', '{"id": 3, "response": "c d"}'],
     "in.jsonl:3: field 'id': duplicate id 3, first on line 1"),
    (['{"id": "a", "response": "a b"}', '{"id": "a", "response": "c d"}'],
     "in.jsonl:2: field 'id': duplicate id 'a', first on line 1"),
    (['{"id": true, "response": "a b"}'], "in.jsonl:1: field 'id' must be a string or an integer, got bool"),
])
def test_bad_input_names_line_and_field_and_keeps_old_output(tmp_path, capsys, lines, message):
    src = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    assert main(["score", str(src), "-o", str(out), "--metrics", "novelty", "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert out.read_text() == "previous results\n"  # nothing already computed is lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp file left


def test_missing_input_file(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def test_ids_of_different_json_types_are_not_duplicates(tmp_path):
    from crpo_bench.commands.score import read_rows

    src = write_lines(tmp_path / "in.jsonl", ['{"id": 1, "response": "a b"}', '{"id": "1", "response": "c d"}'])
    assert [r["id"] for r in read_rows(str(src))] == [1, "1"]


def test_directory_as_input_says_it_is_a_directory(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["score", str(tmp_path / "data"), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'data'}: is a directory" in err and "no such file" not in err


def test_invalid_utf8_names_file_and_line(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"response": "a b"}\n{"response": "caf\xe9 au lait"}\n')
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--metrics", "novelty"]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:2: not UTF-8 (byte 0xe9 at column 18)" in err and "Traceback" not in err


@pytest.fixture
def no_scoring(monkeypatch):
    """Fails the test if `score` gets as far as building a Scorer (loading models, scoring rows)."""
    from crpo_bench.commands import score

    def scorer(*args, **kwargs):
        raise AssertionError("scoring started before the output was checked")

    monkeypatch.setattr(score, "Scorer", scorer)


@pytest.mark.parametrize("output, make, message", [
    ("out", lambda d: (d / "out").mkdir(), "out: is a directory; the output must be a file path"),
    ("o.jsonl", lambda d: (d / "o.card.json").mkdir(), "o.card.json: is a directory; the metric card"),
    ("missing/o.jsonl", lambda d: None, "missing: no such directory (the folder of the output"),
    ("afile/o.jsonl", lambda d: (d / "afile").write_text("x"), "afile: not a directory (the folder of the output"),
])
def test_unusable_output_is_refused_before_scoring(tmp_path, capsys, no_scoring, output, make, message):
    """Issue 13, item 8: these failed with a traceback after all the scoring work."""
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    make(tmp_path)
    assert main(["score", str(src), "-o", str(tmp_path / output), "--metrics", "ngram_diversity"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()  # nothing is created for a refused run


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into any folder")
def test_unwritable_output_folder_is_refused_before_scoring(tmp_path, capsys, no_scoring):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert main(["score", str(src), "-o", str(locked / "o.jsonl"), "--metrics", "ngram_diversity"]) == 2
    finally:
        locked.chmod(0o755)
    assert f"{locked / 'o.jsonl'}: cannot write the output there (Permission denied)" in capsys.readouterr().err


def test_a_folder_that_refuses_new_files_is_reported_before_scoring(tmp_path, capsys, no_scoring, monkeypatch):
    """The same check where the tests run as root: the probe's refusal is what the run reports."""
    from crpo_bench import jsonl

    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    monkeypatch.setattr(jsonl, "_cannot_create_in", lambda folder: "Read-only file system")
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--metrics", "ngram_diversity"]) == 2
    assert "o.jsonl: cannot write the output there (Read-only file system)" in capsys.readouterr().err


def test_the_write_probe_leaves_nothing_behind(tmp_path):
    from crpo_bench.jsonl import check_writable

    check_writable(tmp_path / "o.jsonl")
    assert list(tmp_path.iterdir()) == []


def strict_json(line: str):
    """json.loads that refuses NaN and Infinity, as every strict JSON reader does."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_computed_values_are_written_as_null(tmp_path):
    from crpo_bench.jsonl import write_jsonl_atomic

    out = tmp_path / "o.jsonl"
    write_jsonl_atomic(out, [{"surprise": float("nan"), "x": [float("inf"), 1.5], "t": (float("-inf"),)},
                             {"surprise": 2.0}])
    assert [strict_json(line) for line in out.read_text().splitlines()] == [
        {"surprise": None, "x": [None, 1.5], "t": [None]}, {"surprise": 2.0}]


def test_quality_without_reward_model_is_refused(tmp_path, capsys):
    src = write_lines(tmp_path / "in.jsonl", ['{"response": "a b"}'])
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--metrics", "quality"]) == 2
    assert "needs a reward model (--reward-model" in capsys.readouterr().err


class CountingEmbedder:
    """Wraps the real embedder and records how many texts it was asked to encode."""

    def __init__(self, inner):
        self.inner, self.key, self.encoded = inner, inner.key, 0

    @property
    def dimension(self):
        return self.inner.dimension

    def encode(self, texts, **kwargs):
        self.encoded += len(texts)
        return self.inner.encode(texts)


def test_embedding_cache_makes_a_rerun_embed_nothing(embedder, isolated_cache):
    from crpo_bench import Scorer, ScoringConfig

    responses = [r["response"] for r in ROWS]
    first = CountingEmbedder(embedder)
    a = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=first).score(responses, metrics=["novelty", "diversity"])
    assert first.encoded > 0
    second = CountingEmbedder(embedder)
    b = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=second).score(responses, metrics=["novelty", "diversity"])
    assert second.encoded == 0
    assert a.rows == b.rows
    # one more answer: only its new words and the new text are embedded
    third = CountingEmbedder(embedder)
    Scorer(ScoringConfig(cache_path=isolated_cache), embedder=third).score(
        responses + ["Grind it into glitter"], metrics=["novelty", "diversity"])
    assert third.encoded == 2  # "glitter" and the new text; "grind", "it", "into" are known
    cache = EmbeddingCache(isolated_cache)
    assert set(cache.get(embedder.key, ["glitter", "nonexistent-word"])) == {"glitter"}


def test_no_cache_option_reads_and_writes_nothing(embedder, tmp_path):
    from crpo_bench import Scorer, ScoringConfig

    path = tmp_path / "never.sqlite"
    Scorer(ScoringConfig(cache_path=path, embedding_cache=False), embedder=embedder).score(["a b", "c d"],
                                                                                          metrics=["novelty"])
    assert not path.exists()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from crpo_bench.jsonl import write_jsonl_atomic

    out = tmp_path / "scored.jsonl"
    out.write_text('{"old": 1}\n')

    def rows_then_crash():
        yield {"new": 1}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_jsonl_atomic(out, rows_then_crash())
    assert out.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["scored.jsonl"]
    write_jsonl_atomic(out, [{"new": 1}, {"new": 2}])
    assert out.read_text() == '{"new": 1}\n{"new": 2}\n'


def test_item_metrics_use_the_item_field_and_are_left_out_without_item_or_prompt(tmp_path, capsys):
    rows = [{"task": "aut", "item": "brick", "response": "grind it into red pigment"},
            {"task": "aut", "item": "brick", "response": "build a wall with it"}]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--metrics", "originality",
                 "semantic_distance", "--quiet"]) == 0
    scored = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert all(10 <= r["originality"] <= 50 and 0 < r["semantic_distance"] < 2 for r in scored)
    bare = write_lines(tmp_path / "bare.jsonl", ['{"response": "a b c"}', '{"response": "d e f"}'])
    assert main(["score", str(bare), "-o", str(tmp_path / "b.jsonl"), "--quiet"]) == 0
    assert "originality, semantic_distance left out" in capsys.readouterr().err
    assert "originality" not in json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, mode):
    """Issue 13, item 9: every output was 0600 (mkstemp's mode) whatever the umask."""
    from crpo_bench.jsonl import write_folder_atomic, write_jsonl_atomic, write_text_atomic

    umask(mask)
    write_text_atomic(tmp_path / "LEADERBOARD.md", "# table\n")
    write_jsonl_atomic(tmp_path / "scored.jsonl", [{"a": 1}])
    write_folder_atomic(tmp_path / "model", lambda d: (d / "w.bin").write_bytes(b"0"))
    with open(tmp_path / "plain.txt", "w"):
        pass
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode  # what open() gives
    assert (tmp_path / "LEADERBOARD.md").stat().st_mode & 0o777 == mode
    assert (tmp_path / "scored.jsonl").stat().st_mode & 0o777 == mode
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~mask  # what mkdir() gives


def test_current_umask_reads_the_process_umask_and_leaves_it(umask):
    from crpo_bench.jsonl import current_umask

    for mask in (0o077, 0o022):
        umask(mask)
        assert current_umask() == mask and current_umask() == mask


def test_a_file_left_private_by_an_earlier_version_follows_the_umask_when_rewritten(tmp_path, umask):
    from crpo_bench.jsonl import write_text_atomic

    umask(0o022)
    out = tmp_path / "results.json"
    out.write_text("old")
    out.chmod(0o600)
    write_text_atomic(out, "new")
    assert out.read_text() == "new" and out.stat().st_mode & 0o777 == 0o644


def test_score_outputs_follow_the_umask_and_are_strict_json(tmp_path, umask):
    umask(0o022)
    rows = [dict(r, weight=0.5) for r in ROWS]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(src), "-o", str(out), "--metrics", "ngram_diversity", "--quiet"]) == 0
    assert out.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "scored.card.json").stat().st_mode & 0o777 == 0o644
    scored = [strict_json(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in scored] == [r["id"] for r in ROWS]
    assert scored[2]["ngram_diversity_1"] is None  # the empty answer: no value, written as null
