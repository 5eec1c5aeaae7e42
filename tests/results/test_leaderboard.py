"""`crpo-bench leaderboard` and `crpo-bench check` on fixture results; the page in a real
headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from crpo_bench.results import leaderboard
from results_fixtures import FIXTURE, cli, write_results  # noqa: F401 -- shared with other test files


def test_ranks_and_markers_against_the_best_baseline(tmp_path):
    entries = leaderboard.read_results(write_results(tmp_path / "results"))
    ranks = leaderboard.ranks(entries)
    assert [ranks[m, "muce_aut", "novelty"] for m in ("crpo", "gpt-4o", "claude")] == [1, 2, 3]
    marks = leaderboard.versus_best_baseline(entries)
    # novelty: 0.130 vs best baseline 0.100: 0.030 > 2 * hypot(0.005, 0.004) = 0.0128 -> better
    assert marks["crpo", "muce_aut", "novelty"] == "▲"
    # diversity: 0.74 vs 0.75: within noise -> no mark
    assert ("crpo", "muce_aut", "diversity") not in marks
    # originality: 27 vs 31: 4 > 2 * hypot(0.5, 1.0) = 2.24 -> worse
    assert marks["crpo", "muce_aut", "originality"] == "▼"
    assert not any(model in ("gpt-4o", "claude") for model, _, _ in marks)  # baselines are not marked


def test_leaderboard_command_writes_table_and_page(tmp_path):
    write_results(tmp_path / "results")
    proc = cli("leaderboard", "--results", tmp_path / "results", "--out", tmp_path / "board", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    task = md[md.index("## muce_aut"):]
    # values to the precision of their standard error (two significant digits of it)
    assert "| crpo    | model    | 0.1300 ± 0.0050 (1) ▲ | 0.740 ± 0.020 (2) | 27.00 ± 0.50 (3) ▼ |" in task
    assert "| claude  | baseline | 0.0900 ± 0.0040 (3)" in task
    # overall: crpo beats 2 of 2 on novelty, 1 of 2 on diversity, 0 of 2 on originality -> 0.50
    overall = md[md.index("## Overall"):md.index("## muce_aut")]
    assert "| crpo    | model    | muce_aut | 0.50            | 3         |" in overall and leaderboard.OVERALL_RULE in overall
    page = (tmp_path / "board" / "index.html").read_text()
    assert page.count("<tr>") == 8 and page.count("<svg") == 3  # (header + 3 models) x 2 tables; 2 scatters + profile


def test_bad_results_name_the_file(tmp_path):
    (tmp_path / "results" / "m").mkdir(parents=True)
    (tmp_path / "results" / "m" / "muce_aut.json").write_text("{not json")
    proc = cli("leaderboard", "--results", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 2 and "m/muce_aut.json: not an lm-eval results file" in proc.stderr


def test_check_exit_codes(tmp_path):
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path).returncode == 2  # no baseline
    update = cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path)
    assert update.returncode == 0 and "wrote 9 metrics" in update.stdout
    same = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert same.returncode == 0 and "no regression: 9 metric(s)" in same.stdout

    worse = json.loads(json.dumps(FIXTURE))
    worse["crpo"][1]["novelty"] = [0.120, 0.005]  # -7.7%: beyond the default 2%
    worse["crpo"][1]["diversity"] = [0.73, 0.02]  # -1.4%: within it
    write_results(results, worse)
    proc = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert proc.returncode == 1
    assert "REGRESSION: 1 of 9 metric(s)" in proc.stderr and "crpo/muce_aut/novelty" in proc.stderr
    assert "crpo/muce_aut/diversity" not in proc.stderr

    data = json.loads(baseline.read_text())
    data["tolerance"]["novelty"] = {"rel": 0.10}  # a looser tolerance for this metric only
    baseline.write_text(json.dumps(data))
    assert cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path).returncode == 0

    shutil.rmtree(results / "claude")  # a model that stopped reporting: missing metrics regress
    proc = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert proc.returncode == 1 and "claude/muce_aut/novelty" in proc.stderr and "missing" in proc.stderr

    baseline.write_text('{"metrics": {"a/b": {"value": 1}}}')
    proc = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert proc.returncode == 2 and "is not MODEL/TASK/METRIC" in proc.stderr
    assert cli("check", "--baseline", baseline, "--results", tmp_path / "none", cwd=tmp_path).returncode == 2


def test_two_sided_check_fails_on_an_inflated_metric(tmp_path):
    """A bug that inflates novelty by 50% passes the one-sided check and fails the two-sided one."""
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    inflated = json.loads(json.dumps(FIXTURE))
    inflated["crpo"][1]["novelty"] = [0.130 * 1.5, 0.005]
    inflated["gpt-4o"][1]["diversity"] = [0.70 * 1.01, 0.02]  # within the 2% tolerance either way
    write_results(results, inflated)
    one_sided = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert one_sided.returncode == 0 and "1 metric(s) improved beyond tolerance" in one_sided.stdout
    two_sided = cli("check", "--baseline", baseline, "--results", results, "--two-sided", cwd=tmp_path)
    assert two_sided.returncode == 1
    assert "REGRESSION: 1 of 9 metric(s) moved further than" in two_sided.stderr
    assert "crpo/muce_aut/novelty" in two_sided.stderr and "moved" in two_sided.stderr
    assert "gpt-4o/muce_aut/diversity" not in two_sided.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`), which .ci/run installs; "
                                             "it could not be installed on this machine")
def test_page_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    write_results(tmp_path / "results")
    assert cli("leaderboard", "--results", tmp_path / "results", "--out", tmp_path, cwd=tmp_path).returncode == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    url = (tmp_path / "index.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<tr>") == 8 and dom.count("<svg") == 3 and "gpt-4o" in dom  # overall and task tables
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1300,1400", url], capture_output=True,
                   timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1300, 1400)
    # the plots draw in matplotlib's default blue and orange: both must be on screen
    colors = {c for _, c in image.getcolors(maxcolors=1 << 20)}
    assert any(abs(r - 31) < 12 and abs(g - 119) < 12 and abs(b - 180) < 12 for r, g, b in colors)
    assert any(abs(r - 255) < 12 and abs(g - 127) < 12 and abs(b - 14) < 12 for r, g, b in colors)


# --- issue 13 item 3: `check` on malformed baselines and non-finite values -----------------


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as any strict JSON reader does."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def main(*args) -> int:
    from crpo_bench import cli as crpo_cli

    return crpo_cli.main([str(a) for a in args])


GOOD_METRIC = {"value": 0.13, "higher_is_better": True}
GOOD_CARD = {"embedder": "minilm", "samples_per_prompt": 4, "versions": {"torch": "2.0"}}
# (baseline text, with @M: one good metric, @C: a good card) -> the start of `check`'s message
MALFORMED_BASELINES = {
    '{"tolerance": {"novelty": {"abs": "x"}}, "metrics": @M}': 'baseline.json: tolerance.novelty.abs: '
                                                              'expected a number, got "x"',
    '{"tolerance": [0.1], "metrics": @M}': "baseline.json: tolerance: expected an object",
    '{"tolerance": {"novelty": [0.1]}, "metrics": @M}': "baseline.json: tolerance.novelty: expected an object",
    '{"tolerance": {"default": {"rel": -0.1}}, "metrics": @M}': "baseline.json: tolerance.default.rel: "
                                                               "expected a number >= 0, got -0.1",
    '{"tolerance": {"default": {"abs": NaN}}, "metrics": @M}': "baseline.json: tolerance.default.abs: "
                                                              "expected a finite number, got NaN",
    '{"tolerance": {"default": {"absolute": 0.1}}, "metrics": @M}': "baseline.json: tolerance.default.absolute: "
                                                                   "unknown field",
    '{"tolerances": {}, "metrics": @M}': "baseline.json: tolerances: unknown field",
    '{"metrics": [["crpo/muce_aut/novelty", 0.13]]}': "baseline.json: metrics: expected an object",
    '{"tolerance": {}}': "baseline.json: metrics: missing",
    '{"metrics": {}}': "baseline.json: metrics: is empty",
    '{"metrics": {"crpo/muce_aut/novelty": {"value": NaN}}}': "baseline.json: metrics.crpo/muce_aut/novelty.value: "
                                                              "expected a finite number, got NaN",
    '{"metrics": {"crpo/muce_aut/novelty": {"value": -Infinity}}}': "baseline.json: metrics.crpo/muce_aut/novelty."
                                                                    "value: expected a finite number, got -Infinity",
    '{"metrics": {"crpo/muce_aut/novelty": {"value": "0.13"}}}': 'baseline.json: metrics.crpo/muce_aut/novelty.value: '
                                                                 'expected a number, got "0.13"',
    '{"metrics": {"crpo/muce_aut/novelty": {"higher_is_better": true}}}': "baseline.json: metrics.crpo/muce_aut/"
                                                                          "novelty.value: missing",
    '{"metrics": {"crpo/muce_aut/novelty": {"value": 1, "higher_is_better": "yes"}}}':
        'baseline.json: metrics.crpo/muce_aut/novelty.higher_is_better: expected true, false or null, got "yes"',
    '{"metrics": {"crpo/muce_aut/novelty": 0.13}}': "baseline.json: metrics.crpo/muce_aut/novelty: expected an object",
    '{"metrics": {"crpo//novelty": {"value": 1}}}': "baseline.json: metrics.crpo//novelty: "
                                                    "key is not MODEL/TASK/METRIC",
    '{"metrics": @M, "cards": [@C]}': "baseline.json: cards: expected an object",
    '{"metrics": @M, "cards": {"crpo": @C}}': "baseline.json: cards.crpo: key is not MODEL/TASK",
    '{"metrics": @M, "cards": {"crpo/muce_aut": "minilm"}}': 'baseline.json: cards.crpo/muce_aut: expected an object '
                                                            '(a metric card), got "minilm"',
    '{"metrics": @M, "cards": {"crpo/muce_aut": {}}}': "baseline.json: cards.crpo/muce_aut: is empty",
    '{"metrics": @M, "cards": {"crpo/muce_aut": {"embedder": ["a"]}}}': "baseline.json: cards.crpo/muce_aut.embedder: "
                                                                       "expected a string, number, true/false or null",
    '{"metrics": @M, "cards": {"crpo/muce_aut": {"embedder": "e", "x": {"y": NaN}}}}':
        "baseline.json: cards.crpo/muce_aut.x.y: expected a finite number, got NaN",
    '[1, 2]': "baseline.json: expected a JSON object with tolerance, metrics and cards, got a list",
    '{"metrics": ': "baseline.json: malformed JSON (Expecting value at line 1 column 13)",
}


@pytest.mark.parametrize("template", MALFORMED_BASELINES)
def test_malformed_baseline_is_exit_2_naming_file_and_field(tmp_path, monkeypatch, capsys, template):
    """Before: a traceback and exit 1 (read by CI as a regression) or, for NaN, a pass."""
    results = write_results(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    text = template.replace("@M", json.dumps({"crpo/muce_aut/novelty": GOOD_METRIC}))
    text = text.replace("@C", json.dumps(GOOD_CARD))
    Path("baseline.json").write_text(text)
    assert main("check", "--baseline", "baseline.json", "--results", results) == 2
    err = capsys.readouterr().err
    assert err.startswith("crpo-bench check: error: " + MALFORMED_BASELINES[template]), err
    assert "\n" not in err.rstrip("\n")  # one line
    assert Path("baseline.json").read_text() == text  # a baseline is only ever rewritten by --update


def test_malformed_tolerance_from_the_issue_via_the_command_line(tmp_path):
    """The issue as written, through the installed command: exit 2 and one line, no traceback."""
    results = write_results(tmp_path / "results")
    assert cli("check", "--baseline", "baseline.json", "--results", results, "--update", cwd=tmp_path).returncode == 0
    data = json.loads((tmp_path / "baseline.json").read_text())
    for tolerance in ({"novelty": {"abs": "x"}}, [{"abs": 0.1}]):
        data["tolerance"] = tolerance
        (tmp_path / "baseline.json").write_text(json.dumps(data))
        proc = cli("check", "--baseline", "baseline.json", "--results", results, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("crpo-bench check: error: baseline.json: tolerance: expected an object")
    data["tolerance"], data["metrics"] = {}, [1]
    (tmp_path / "baseline.json").write_text(json.dumps(data))
    proc = cli("check", "--baseline", "baseline.json", "--results", results, cwd=tmp_path)
    assert proc.returncode == 2 and "baseline.json: metrics: expected an object" in proc.stderr


def test_nan_in_the_baseline_no_longer_passes(tmp_path):
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    data = json.loads(baseline.read_text())
    data["metrics"]["crpo/muce_aut/novelty"]["value"] = float("nan")
    baseline.write_text(json.dumps(data))  # Python's json writes the bare NaN a hand edit would
    proc = cli("check", "--baseline", baseline, "--results", results, cwd=tmp_path)
    assert proc.returncode == 2
    assert "baseline.json: metrics.crpo/muce_aut/novelty.value: expected a finite number, got NaN" in proc.stderr


def test_non_finite_result_values_regress_and_are_left_out_of_a_new_baseline(tmp_path):
    """A metric that came out NaN or infinite fails the check (exit 1, status "not finite"),
    one-sided and two-sided; `--update` leaves it out of the strict-JSON baseline and names it."""
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    broken = json.loads(json.dumps(FIXTURE))
    broken["crpo"][1]["novelty"] = [float("nan"), 0.005]
    broken["claude"][1]["diversity"] = [float("inf"), 0.02]
    write_results(results, broken)
    for extra in ((), ("--two-sided",)):
        proc = cli("check", "--baseline", baseline, "--results", results, *extra, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "REGRESSION: 2 of 9 metric(s)" in proc.stderr
        rows = {line.split("|")[1].strip(): line for line in proc.stderr.splitlines() if line.startswith("| ")}
        assert "| NaN " in rows["crpo/muce_aut/novelty"] and "not finite" in rows["crpo/muce_aut/novelty"]
        assert "| Infinity " in rows["claude/muce_aut/diversity"] and "not finite" in rows["claude/muce_aut/diversity"]

    update = cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path)
    assert update.returncode == 0 and "wrote 7 metrics" in update.stdout
    assert "2 value(s) are not finite numbers and were left out of" in update.stderr
    assert "claude/muce_aut.json: results.muce_aut.diversity,samples: Infinity" in update.stderr
    assert "crpo/muce_aut.json: results.muce_aut.novelty,samples: NaN" in update.stderr
    written = strict_json(baseline.read_text())
    assert "crpo/muce_aut/novelty" not in written["metrics"] and len(written["metrics"]) == 7

    nothing = {model: (kind, {m: [float("nan"), 0.1] for m in metrics}) for model, (kind, metrics) in FIXTURE.items()}
    write_results(results, nothing)  # no value could be recorded: no empty baseline is written
    empty = cli("check", "--baseline", tmp_path / "new.json", "--results", results, "--update", cwd=tmp_path)
    assert empty.returncode == 2 and "no finite metric values to record" in empty.stderr
    assert not (tmp_path / "new.json").exists()


def test_update_keeps_valid_tolerances_refuses_malformed_ones_and_writes_strict_json(tmp_path):
    results = write_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"tolerance": {"default": {"rel": 0.05}}, "metrics": {"x/y/z": {"value": 1e999}}}))
    assert cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path).returncode == 0
    written = strict_json(baseline.read_text())  # the old, unreadable metrics are replaced
    assert written["tolerance"] == {"default": {"rel": 0.05}} and len(written["metrics"]) == 9

    malformed = '{"tolerance": {"default": {"rel": "2%"}}, "metrics": {}}'
    baseline.write_text(malformed)  # its tolerances cannot be kept: no silent fall back to the defaults
    proc = cli("check", "--baseline", baseline, "--results", results, "--update", cwd=tmp_path)
    assert proc.returncode == 2 and 'tolerance.default.rel: expected a number, got "2%"' in proc.stderr
    assert baseline.read_text() == malformed


def test_results_card_that_is_not_an_object_is_exit_2(tmp_path):
    results = write_results(tmp_path / "results")
    path = results / "crpo" / "muce_aut.json"
    data = json.loads(path.read_text())
    data["crpo_bench"]["card"] = "minilm"
    path.write_text(json.dumps(data))
    proc = cli("check", "--baseline", tmp_path / "b.json", "--results", results, cwd=tmp_path)
    assert proc.returncode == 2
    assert 'crpo/muce_aut.json: crpo_bench.scoring.card: expected an object (a metric card), got "minilm"' in proc.stderr


# --- issue 13 item 6: `leaderboard` on awkward names and values ------------------------------

ODD = {  # model names from the issue: mathtext, Markdown table syntax, HTML, a newline
    "m$\\bad$": (True, {"novelty": (0.100, 0.004), "diversity": (0.70, 0.02), "originality": (30.0, 1.0)}),
    "a|b": (False, {"novelty": (0.090, 0.004), "diversity": (0.75, 0.02), "originality": (31.0, 1.0)}),
    "<b>x</b> & y": (False, {"novelty": (0.130, 0.005), "diversity": (0.74, 0.02), "originality": (27.0, 0.5)}),
    "two\nlines": (False, {"novelty": (0.110, 0.005), "diversity": (0.72, 0.02), "originality": (28.0, 0.5)}),
}


def write_odd_results(folder: Path) -> Path:
    """ODD's models, each in a plain folder, with its name in crpo_bench.model."""
    for k, (model, spec) in enumerate(ODD.items()):
        write_results(folder, {f"m{k}": spec})
        path = folder / f"m{k}" / "muce_aut.json"
        data = json.loads(path.read_text())
        data["crpo_bench"]["model"] = model
        path.write_text(json.dumps(data))
    return folder


def test_leaderboard_escapes_names_in_both_outputs(tmp_path):
    """Before: mathtext raised after LEADERBOARD.md was written and before index.html; `|`,
    HTML and newlines from names broke or injected into the Markdown table."""
    results = write_odd_results(tmp_path / "results")
    proc = cli("leaderboard", "--results", results, "--out", tmp_path / "board", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    table = [line for line in md[md.index("## muce_aut"):].splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(ODD)  # header, rule, one row per model: no row split by a newline
    unescaped_pipes = [len(re.findall(r"(?<!\\)\|", line)) for line in table]
    assert set(unescaped_pipes) == {6}  # model, kind, 3 metrics: 5 cells, 6 separators, on every line
    for escaped in ("m$\\\\bad$", "a\\|b", "&lt;b&gt;x&lt;/b&gt; &amp; y", "two<br>lines"):
        assert f"| {escaped} " in md, escaped
    assert "<b>" not in md

    page = (tmp_path / "board" / "index.html").read_text()
    assert page.count("<tr>") == 2 * (1 + len(ODD)) and page.count("<svg") == 3  # overall and task tables
    assert "<b>x" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; y" in page and "m$\\bad$" in page


def test_leaderboard_writes_neither_file_when_rendering_fails(tmp_path, monkeypatch, capsys):
    """Both outputs are rendered before either is written, then put in place together."""
    results = write_results(tmp_path / "results")
    board = tmp_path / "board"
    board.mkdir()
    (board / "LEADERBOARD.md").write_text("old table\n")
    (board / "index.html").write_text("old page\n")

    def broken_page(*args, **kwargs):
        raise ValueError("the page could not be drawn")

    monkeypatch.setattr(leaderboard, "page", broken_page)
    assert main("leaderboard", "--results", results, "--out", board) == 2
    assert "the page could not be drawn" in capsys.readouterr().err
    assert (board / "LEADERBOARD.md").read_text() == "old table\n"
    assert (board / "index.html").read_text() == "old page\n"
    assert sorted(p.name for p in board.iterdir()) == ["LEADERBOARD.md", "index.html"]  # no staging files left
    monkeypatch.undo()
    assert main("leaderboard", "--results", results, "--out", board) == 0
    assert "| crpo " in (board / "LEADERBOARD.md").read_text() and "<svg" in (board / "index.html").read_text()


@pytest.mark.parametrize("model, shown", [(5, "5"), (None, "null"), ("", '""'), (["a"], "a list")])
def test_model_name_that_is_not_a_string_is_exit_2(tmp_path, model, shown):
    results = write_results(tmp_path / "results")
    path = results / "crpo" / "muce_aut.json"
    data = json.loads(path.read_text())
    data["crpo_bench"]["model"] = model
    path.write_text(json.dumps(data))
    proc = cli("leaderboard", "--results", results, "--out", tmp_path / "board", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"crpo/muce_aut.json: crpo_bench.model: expected a non-empty string, got {shown}" in proc.stderr
    assert not (tmp_path / "board").exists()


def test_non_finite_values_are_shown_not_blank(tmp_path):
    fixture = json.loads(json.dumps(FIXTURE))
    fixture["crpo"][1]["novelty"] = [float("nan"), 0.005]
    fixture["claude"][1]["originality"] = [float("-inf"), 1.0]
    results = write_results(tmp_path / "results", fixture)
    proc = cli("leaderboard", "--results", results, "--out", tmp_path / "board", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "NaN (not ranked)" in rows["crpo"] and "-Infinity (not ranked)" in rows["claude"]
    assert "0.1000 ± 0.0040 (1)" in rows["gpt-4o"]  # ranked among the finite values only
    assert "27.00 ± 0.50 (2) ▼" in rows["crpo"]  # originality: 30 and 27 ranked; claude's -Infinity is not
    assert "Note: 2 value(s) are not finite numbers" in md
    page = (tmp_path / "board" / "index.html").read_text()
    assert "NaN (not ranked)" in page and "-Infinity (not ranked)" in page and "2 value(s) are not finite" in page
    assert "data-value='nan'" not in page and page.count("<svg") == 3


@pytest.mark.parametrize("value, stderr, shown", [
    (0.05494, 0.005392, "0.0549 ± 0.0054"), (27.0, 0.5, "27.00 ± 0.50"), (1234.5, 12.3, "1234 ± 12"),
    (0.7, 0.02, "0.700 ± 0.020"), (3.14159, None, "3.142"), (2.0, 0.0, "2 ± 0"), (0.5, float("nan"), "0.5"),
])
def test_cells_are_rounded_to_the_precision_of_their_standard_error(value, stderr, shown):
    assert leaderboard.rounded(value, stderr) == shown


def test_mean_win_rate_against_a_brute_force_count():
    rng = np.random.default_rng(0)
    entries = [leaderboard.Entry(m, t, metric, float(rng.integers(0, 4)), None, metric != "perplexity", False)
               for m in "abcd" for t in ("t1", "t2") for metric in ("novelty", "diversity", "perplexity")
               if not (m == "d" and t == "t2")]
    entries.append(leaderboard.Entry("e", "t3", "novelty", 1.0, None, True, False))  # alone in its column
    rates = leaderboard.win_rates(entries)
    assert "e" not in rates
    columns = {c for c in leaderboard.registry.leaderboard_columns()}
    for model in "abcd":
        wins = []
        for t in ("t1", "t2"):
            for metric in ("novelty", "diversity", "perplexity"):
                if metric not in columns:
                    continue
                mine = [e for e in entries if (e.model, e.task, e.metric) == (model, t, metric)]
                others = [e for e in entries if e.task == t and e.metric == metric and e.model != model]
                if not mine:
                    continue
                sign = 1 if mine[0].higher_is_better else -1
                wins.append(sum(1.0 if sign * mine[0].value > sign * o.value else 0.5 if mine[0].value == o.value
                                else 0.0 for o in others) / len(others))
        assert rates[model][:2] == pytest.approx((sum(wins) / len(wins), len(wins)))
        assert rates[model][2] == (("t1",) if model == "d" else ("t1", "t2"))
