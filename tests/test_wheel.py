"""The built wheel, installed into a fresh virtual environment, carries the tasks and the lm-eval hook."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("needs the source checkout to build the wheel from")
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", ROOT])
    (wheel,) = (tmp / "dist").glob("crpo_bench-*.whl")
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
