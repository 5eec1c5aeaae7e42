"""Results folders for the leaderboard, check and metric-card tests, and the crpo-bench command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
