"""The built wheel, installed into a fresh virtual environment, carries the tasks and the lm-eval hook;
a checkout (the editable install) finds training/ as crpo_bench.training through the package mapping."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("needs the source checkout to build the wheel from")
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT])
    (built,) = dist.glob("crpo_bench-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"])
    python = tmp / "venv" / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel])
    # Dependencies (torch, lm-eval, ...) come from this environment instead of a second
    # multi-GB install: a path line only, so this environment's own crpo_bench and
    # .pth hook stay invisible (the fresh environment's site-packages come first).
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return tmp / "venv"


def test_wheel_contents_come_from_the_fresh_environment(fresh_venv):
    python = fresh_venv / "bin" / "python"
    where = run([python, "-c", "import crpo_bench, crpo_bench.lmeval_hook as h; print(crpo_bench.__file__); "
                               "print(h.tasks_dir())"]).stdout.split()
    assert all(str(fresh_venv) in w for w in where)
    assert (Path(where[1]) / "muce" / "muce_poems.yaml").is_file()


def test_plain_lm_eval_listing_finds_muce_poems(fresh_venv):
    out = run([fresh_venv / "bin" / "python", "-m", "lm_eval", "ls", "tasks"], cwd=fresh_venv)
    assert "muce_poems" in out.stdout and "muce_paper" in out.stdout


# Where each top-level folder of the checkout sits inside the wheel (pyproject.toml's package-dir).
IN_WHEEL = {"crpo_bench": "crpo_bench", "training": "crpo_bench/training", "tasks": "crpo_bench/tasks"}


def test_wheel_holds_exactly_the_tracked_files_where_the_mapping_puts_them(wheel):
    tracked = subprocess.run(["git", "ls-files", *IN_WHEEL], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0 or not tracked.stdout:
        pytest.skip("needs a git checkout to list the tracked files")
    expected = set()
    for path in tracked.stdout.split():
        top, rest = path.split("/", 1)
        expected.add(f"{IN_WHEEL[top]}/{rest}")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    assert sorted(expected - names) == []  # nothing missing
    assert sorted(names - expected) == ["crpo_bench_lmeval.pth"]  # nothing else (no stale build output)
    hook = zipfile.ZipFile(wheel).read("crpo_bench_lmeval.pth").decode()
    assert hook.strip() == "import crpo_bench.lmeval_hook"


def test_checkout_finds_training_through_the_package_mapping(tmp_path):
    """No import-time path tricks: crpo_bench's __path__ is its own folder, and crpo_bench.training is
    the checkout's training/ (run from elsewhere, so the checkout is not on sys.path by accident)."""
    out = run([sys.executable, "-c", "import crpo_bench, crpo_bench.training as t; "
                                     "print(crpo_bench.__file__); print(list(crpo_bench.__path__)); print(t.__file__)"],
              cwd=tmp_path).stdout.splitlines()
    if Path(out[0]).resolve() != ROOT / "crpo_bench" / "__init__.py":
        pytest.skip("crpo_bench is installed from a wheel here, not editable from this checkout")
    assert [Path(p).resolve() for p in eval(out[1])] == [ROOT / "crpo_bench"]
    assert Path(out[2]).resolve() == ROOT / "training" / "__init__.py"
