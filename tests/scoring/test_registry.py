"""The metric registry is the one list: a metric registered here, and nowhere else, is
scored by `crpo-bench score`, reported by the lm-eval tasks and shown on the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crpo_bench.run import runner as bench
from crpo_bench.results import leaderboard
from crpo_bench.scoring import registry
from crpo_bench.cli import main

from muce_fixtures import raw_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def exclamations(responses, **_):
    return [r.count("!") + r.count("e") for r in responses]  # "e": the tiny model's noise has some


@pytest.fixture
def toy_metric():
    registry.register(registry.Metric("exclamations", ("exclamations",), leaderboard=("exclamations",),
                                      compute=exclamations, description="a toy: '!' and 'e' per answer"))
    yield
    registry.unregister("exclamations")


def test_registering_twice_or_a_taken_field_is_refused(toy_metric):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Metric("exclamations", ("other",), compute=exclamations))
    with pytest.raises(ValueError, match=r"field\(s\) \['novelty'\] already belong"):
        registry.register(registry.Metric("copy", ("novelty",), compute=exclamations))
    with pytest.raises(ValueError, match="scope 'global'"):
        registry.Metric("bad", ("bad",), scope="global", compute=exclamations)
    with pytest.raises(ValueError, match="give it a compute function"):
        registry.Metric("bad", ("bad",))


def test_a_registered_metric_reaches_score_lm_eval_and_the_leaderboard(toy_metric, tmp_path, tiny_lm_folder):
    import lm_eval
    from lm_eval.utils import handle_non_serializable

    # crpo-bench score
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(ROOT / "examples" / "responses.jsonl"), "-o", str(out), "--metrics", "exclamations",
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["exclamations"] for r in rows] == [r["response"].count("!") + r["response"].count("e") for r in rows]

    # an lm-eval task's results (the real evaluator, in this process)
    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    manager = bench.task_manager({"muce_data": str(data), "lm": "none"})
    evaluation = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_lm_folder}", tasks=["muce_aut"],
                                         task_manager=manager, limit=2, gen_kwargs="max_gen_toks=12",
                                         log_samples=True, device="cpu")
    answers = [a for s in evaluation["samples"]["muce_aut"] for a in s["filtered_resps"][0]]
    reported = evaluation["results"]["muce_aut"]["exclamations,samples"]
    kept = [e for e, a in zip(exclamations(answers), answers) if _real(a)]
    assert kept and reported == pytest.approx(np.mean(kept), abs=1e-12)
    assert evaluation["higher_is_better"]["muce_aut"]["exclamations"] is True

    # the leaderboard
    evaluation.pop("samples")
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    (tmp_path / "results" / "tiny" / "muce_aut.json").write_text(json.dumps(evaluation, default=handle_non_serializable))
    entries = leaderboard.read_results(tmp_path / "results")
    assert "exclamations" in leaderboard.table_metrics(entries, "muce_aut")
    assert "exclamations" in leaderboard.markdown(entries).splitlines()[6]  # the table's header row


def _real(answer: str) -> bool:
    from crpo_bench.text import degenerate_kind

    return degenerate_kind(answer) is None


def test_trainer_dimensions_and_validate_scorers_come_from_the_registry():
    from crpo_bench.commands.validate import SCORERS
    from crpo_bench.training.scores import DIMENSIONS
    from crpo_bench.training.trainer import CrPOConfig

    assert DIMENSIONS == registry.crpo_dimensions() == ("novelty", "diversity", "surprise", "originality", "quality")
    assert {f"lambda_{d}" for d in DIMENSIONS} <= set(CrPOConfig.__dataclass_fields__)
    assert set(SCORERS) - {"length"} <= set(registry.scorer_metrics())
    assert leaderboard.table_metrics([], "x") == []
