"""`crpo-bench leaderboard` and `crpo-bench check` on fixture results; the page in a real
headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench import leaderboard

BIN = Path(sys.executable).parent
# model -> (baseline?, {metric: (value, stderr)}); all higher-is-better
FIXTURE = {
    "gpt-4o": (True, {"novelty": (0.100, 0.004), "diversity": (0.70, 0.02), "originality": (30.0, 1.0)}),
    "claude": (True, {"novelty": (0.090, 0.004), "diversity": (0.75, 0.02), "originality": (31.0, 1.0)}),
    "crpo": (False, {"novelty": (0.130, 0.005), "diversity": (0.74, 0.02), "originality": (27.0, 0.5)}),
}


def write_results(folder: Path, fixture: dict = FIXTURE, task: str = "muce_aut") -> Path:
    for model, (baseline, metrics) in fixture.items():
        results = {"alias": task}
        for metric, (value, stderr) in metrics.items():
            results[f"{metric},samples"], results[f"{metric}_stderr,samples"] = value, stderr
        data = {"results": {task: results}, "higher_is_better": {task: {m: True for m in metrics}},
                "crpo_bench": {"model": model, "baseline": baseline, "kind": "api" if baseline else "hf"}}
        (folder / model).mkdir(parents=True, exist_ok=True)
        (folder / model / f"{task}.json").write_text(json.dumps(data))
    return folder


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "crpo-bench"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


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
    assert "| crpo    | model    | 0.13 ± 0.005 (1) ▲ | 0.74 ± 0.02 (2) | 27 ± 0.5 (3) ▼ |" in md
    assert "| claude  | baseline | 0.09 ± 0.004 (3)" in md
    page = (tmp_path / "board" / "index.html").read_text()
    assert page.count("<tr>") == 4 and page.count("<svg") == 3  # header + 3 models; 2 scatters + profile


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
    assert dom.count("<tr>") == 4 and dom.count("<svg") == 3 and "gpt-4o" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1300,1400", url], capture_output=True,
                   timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1300, 1400)
    # the plots draw in matplotlib's default blue and orange: both must be on screen
    colors = {c for _, c in image.getcolors(maxcolors=1 << 20)}
    assert any(abs(r - 31) < 12 and abs(g - 119) < 12 and abs(b - 180) < 12 for r, g, b in colors)
    assert any(abs(r - 255) < 12 and abs(g - 127) < 12 and abs(b - 14) < 12 for r, g, b in colors)
