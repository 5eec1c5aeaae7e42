"""Generated malformed inputs thrown at every command that reads files or requests.

The only acceptable outcomes: a result, or a clean exit-2 message (serve: an HTTP 4xx);
never a traceback, never a file outside the output folder, never a changed input file.
CI runs a few examples per command; CRPO_FUZZ_EXAMPLES=500 runs the long search.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crpo_bench.cli import main as crpo_bench
from crpo_bench.training.cli import main as crpo_train

EXAMPLES = int(os.environ.get("CRPO_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CRPO_FUZZ_EXAMPLES"),
                suppress_health_check=list(HealthCheck))

# JSON-ish values, including what strict JSON forbids (NaN, Infinity) and wrong types
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["", " ", "brick", "Training", "HeldoutItem", "Poems",
                                                           "Alternate Uses of Objects Task", "NaN", "Infinity"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=3), max_leaves=6)


def row(keys: list[str]):
    """A JSON object with some of the expected keys (any values) and some stray ones."""
    return st.fixed_dictionaries({}, optional={k: values for k in keys}).flatmap(
        lambda d: st.dictionaries(st.text(max_size=6), values, max_size=2).map(lambda extra: {**extra, **d}))


def hostile(keys: list[str]):
    """The classes the hardening issue found (issue 23): a lone surrogate in a field, nesting
    thousands deep, integers of thousands of digits, a line torn inside a UTF-8 character."""
    key = st.sampled_from(keys + ["x"])
    return st.one_of(
        key.map(lambda k: f'{{"{k}": "a \\ud800 b"}}'.encode()),
        st.sampled_from([b'{"x": "\\udfff"}', b'{"\\ud83d": 1}']),
        st.tuples(key, st.integers(70, 5000)).map(lambda kd: f'{{"{kd[0]}": {"[" * kd[1]}{"]" * kd[1]}}}'.encode()),
        st.tuples(key, st.integers(20, 6000)).map(lambda kd: f'{{"{kd[0]}": 1{"0" * kd[1]}}}'.encode()),
        key.map(lambda k: f'{{"{k}": "料理"}}'.encode()[:-4]),  # torn after the first byte of 理
    )


def line(keys: list[str]):
    """One input line: a JSON object, another JSON value, broken JSON, bad UTF-8, blank, or hostile."""
    return st.one_of(
        row(keys).map(lambda d: json.dumps(d).encode()),
        values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=20),
        st.sampled_from([b"", b"{not json", b"\xff\xfe\x00", b"[1, 2", b"null"]),
        hostile(keys),
    )


texts = st.one_of(st.text(max_size=60), st.sampled_from(["", " ", "!!", "brick", "a b", "grind it into red pigment",
                                                         "\u2028x y", "x\ny z", "Ünïcödé wörds hére"]))


words = texts.filter(lambda t: t.strip())


def plausible_row(keys: list[str], required: int):
    """A row that passes the first checks more often: string fields, a numeric score."""
    fields = {k: (st.one_of(st.integers(0, 60), st.floats(0, 60), st.sampled_from(["", None, "30"]))
                  if k == "facsco_grm_scaled" else
                  st.one_of(st.lists(words, min_size=10, max_size=10), st.lists(texts, max_size=4))
                  if k == "generations" else
                  st.sampled_from(["Training", "Validation", "HeldoutItem"]) if k == "Set" else
                  st.sampled_from(["Poems", "Alternate Uses of Objects Task", "Metaphors"]) if k == "TasksNamesFull"
                  else texts) for k in keys}
    return st.fixed_dictionaries({k: v for k, v in fields.items() if k in keys[:required]},
                                 optional={k: v for k, v in fields.items() if k not in keys[:required]})


def files(keys: list[str], required: int = 1):
    """A file of 0-6 lines: either plausible rows only (the first `required` keys present,
    so the work itself runs) or a mix with malformed lines."""
    plausible = plausible_row(keys, required).map(lambda d: json.dumps(d).encode())
    clean = st.lists(plausible, min_size=0, max_size=6)
    mixed = st.lists(st.one_of(plausible, plausible, line(keys)), min_size=0, max_size=6)
    return st.one_of(clean, mixed).map(lambda rows: b"\n".join(rows) + b"\n")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


OUTCOMES: dict[str, dict[int, int]] = {}  # command -> exit code -> count: the run's summary
SENTINEL = "sentinel-written-by-the-user.txt"


def run_guarded(tmp: Path, given_input: Path, out_dir: Path, call, name: str = "", sentinel_in: Path | None = None) -> int:
    """Call a command; check it exits 0/1/2 with no traceback, changed no input, wrote only
    into out_dir and left the user's sentinel file in its output folder as it was."""
    folder = sentinel_in or out_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SENTINEL).write_text("mine")
    before = snapshot(tmp)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = call()
    after = snapshot(tmp)
    assert code in (0, 1, 2), code
    assert "Traceback" not in err.getvalue(), err.getvalue()[-2000:]
    assert (folder / SENTINEL).read_text() == "mine", "the user's file in the output folder was touched"
    assert after.get(given_input.name) == before.get(given_input.name), "the input file changed"
    outside = {k for k in after if k not in before and not (tmp / k).resolve().is_relative_to(out_dir.resolve())}
    assert not outside, f"files written outside the output folder: {outside}"
    counts = OUTCOMES.setdefault(name or given_input.name, {})
    counts[code] = counts.get(code, 0) + 1
    return code


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def fresh(work: Path, name: str) -> Path:
    folder = work / f"{name}-{len(list(work.iterdir()))}"
    folder.mkdir()
    return folder


def input_and_out(work: Path, name: str, filename: str, data: bytes) -> tuple[Path, Path, Path]:
    """A fresh case folder with the input file written and an empty output folder."""
    tmp = fresh(work, name)
    src = tmp / filename
    src.write_bytes(data)
    out = tmp / "out"
    out.mkdir()
    return tmp, src, out


@FUZZ
@given(data=files(["response", "prompt", "task", "item", "id"]))  # response first: plausible rows have it
def test_score_survives_any_input(work, data):
    tmp, src, out = input_and_out(work, "score", "in.jsonl", data)
    run_guarded(tmp, src, out, lambda: crpo_bench(["score", str(src), "-o", str(out / "s.jsonl"), "--metrics",
                                                   "ngram_diversity", "--quiet"]), "score")
    if (out / "s.jsonl").exists():  # whatever was written is strict JSON
        for text in (out / "s.jsonl").read_text().split("\n"):
            if text:
                json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


@FUZZ
@given(data=files(["TasksNamesFull", "Prompt", "Response", "facsco_grm_scaled", "Set", "Language", "Dataset"], 5))
def test_crpo_train_pairs_survives_any_input(work, data):
    tmp, src, out = input_and_out(work, "pairs", "muce.jsonl", data)
    run_guarded(tmp, src, out, lambda: crpo_train(["pairs", "--data", str(src), "--out", str(out / "pairs")]),
                "crpo-train pairs", sentinel_in=out / "pairs")


RESULTS = {"results": {"muce_aut": {"alias": "muce_aut", "novelty,samples": 0.1, "novelty_stderr,samples": 0.01}},
           "higher_is_better": {"muce_aut": {"novelty": True}}, "crpo_bench": {"model": "m", "baseline": False}}


@FUZZ
@given(baseline=values, as_bytes=st.one_of(st.none(), st.binary(max_size=30)))
def test_check_survives_any_baseline(work, baseline, as_bytes):
    tmp = fresh(work, "check")
    (tmp / "results" / "m").mkdir(parents=True)
    (tmp / "results" / "m" / "muce_aut.json").write_text(json.dumps(RESULTS))
    src = tmp / "baseline.json"
    src.write_bytes(as_bytes if as_bytes is not None else json.dumps(baseline).encode())
    out = tmp / "none"
    out.mkdir()
    run_guarded(tmp, src, out, lambda: crpo_bench(["check", "--baseline", str(src), "--results",
                                                   str(tmp / "results")]), "check")


@FUZZ
@given(result=values, model=values, metric_value=values)
def test_leaderboard_survives_any_results(work, result, model, metric_value):
    tmp = fresh(work, "board")
    folder = tmp / "results" / "m"
    folder.mkdir(parents=True)
    good = json.loads(json.dumps(RESULTS))
    good["crpo_bench"]["model"] = model
    good["results"]["muce_aut"]["diversity,samples"] = metric_value
    src = folder / "muce_aut.json"
    src.write_text(json.dumps(good))
    (folder / "other.json").write_text(json.dumps(result))
    out = tmp / "board"
    out.mkdir()
    run_guarded(tmp / "results" / "m", src, out,
                lambda: crpo_bench(["leaderboard", "--results", str(tmp / "results"), "--out", str(out)]), "leaderboard")


@FUZZ
@given(data=files(["id", "prompt", "generations"], 3))
def test_noveltybench_survives_any_input(work, data):
    tmp = fresh(work, "nb")
    out = tmp / "eval"
    out.mkdir()
    src = out / "generations.jsonl"
    src.write_bytes(data)
    run_guarded(out, src, out, lambda: crpo_bench(["noveltybench", "--eval-dir", str(out), "--equivalence",
                                                   "unigram"]), "noveltybench")


@pytest.fixture(scope="module")
def server(chat_server_url):
    return chat_server_url


@FUZZ
@given(body=st.one_of(
    row(["model", "messages", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n"]).map(
        lambda d: json.dumps(d, allow_nan=True).encode()),
    st.fixed_dictionaries({"messages": st.just([{"role": "user", "content": "hi"}]),
                           "max_tokens": st.one_of(st.integers(-5, 4), st.text(max_size=3), st.none()),
                           "temperature": st.one_of(st.floats(allow_nan=True), st.text(max_size=3)),
                           "stop": values, "n": values}).map(lambda d: json.dumps(d, allow_nan=True).encode()),
    st.binary(max_size=40)))
def test_serve_answers_any_body_with_a_result_or_a_4xx(server, body):
    request = urllib.request.Request(server.rstrip("/") + "/chat/completions" if not server.endswith("completions")
                                     else server, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status = response.status
            json.loads(response.read())
    except urllib.error.HTTPError as err:
        status = err.code
        json.loads(err.read() or b"{}")
    assert status == 200 or 400 <= status < 500, status


def test_generated_floats_include_non_finite():
    """The strategies do produce what strict JSON forbids (a guard against a silent weakening)."""
    found = set()

    @settings(max_examples=200, derandomize=True)
    @given(st.floats(allow_nan=True))
    def collect(x):
        if not math.isfinite(x):
            found.add("nan" if math.isnan(x) else "inf")

    collect()
    assert found == {"nan", "inf"}


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries({"id": words, "prompt": words,
                                            "generations": st.lists(words, min_size=10, max_size=10)}),
                     min_size=1, max_size=3, unique_by=lambda r: r["id"]))
def test_noveltybench_scores_any_well_formed_file(work, rows):
    """Well-formed but odd generations (unicode, punctuation, line separators) give a result."""
    tmp = fresh(work, "nbok")
    out = tmp / "eval"
    out.mkdir()
    src = out / "generations.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_guarded(out, src, out, lambda: crpo_bench(["noveltybench", "--eval-dir", str(out), "--equivalence",
                                                          "unigram"]), "noveltybench (well-formed)") == 0
    summary = json.loads((out / "v1.1" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert 1 <= summary["mean_distinct"] <= 10


def test_zz_fuzz_summary(capsys):
    """The run's outcomes per command, shown in the test output (runs last: file order)."""
    assert OUTCOMES, "no fuzz case ran"
    lines = [f"{name}: " + ", ".join(f"exit {code} x{n}" for code, n in sorted(counts.items()))
             for name, counts in sorted(OUTCOMES.items())]
    with capsys.disabled():
        print(f"\nfuzz summary ({EXAMPLES} examples per command; no tracebacks, sentinels intact):\n  "
              + "\n  ".join(lines))
