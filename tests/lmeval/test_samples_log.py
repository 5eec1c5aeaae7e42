"""Samples files people can read (issue 27.5): each logged sample carries its answers' values
of every metric (null where an answer is left out as degenerate), not the prompt's item and the
task's settings repeated once per metric; lm-eval's own writer makes the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crpo_bench import lmeval
from crpo_bench.run import runner as bench
from crpo_bench.scoring import Scorer, counts

from muce_fixtures import raw_rows, write_jsonl

PER_ANSWER = ("novelty", "diversity", "dsi", "theme_uniqueness", "prompt_novelty", "prompt_diversity",
              "semantic_distance", "originality", "surprise", "perplexity")
CORPUS_LEVEL = ("num_themes", *(f"ngram_diversity_{n}" for n in range(1, 6)))


def _evaluate(tmp_path, tiny_lm_folder, **metadata):
    import lm_eval

    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    manager = bench.task_manager({"muce_data": str(data), "lm": str(tiny_lm_folder), **metadata})
    return lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_lm_folder}", tasks=["muce_aut"],
                                   task_manager=manager, limit=3, gen_kwargs="max_gen_toks=16",
                                   log_samples=True, device="cpu")


def _written(tmp_path, evaluation) -> list[dict]:
    """The samples file as `lm_eval --log_samples` writes it (lm-eval's EvaluationTracker)."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))
    tracker.general_config_tracker.model_name_sanitized, tracker.date_id = "tiny", "now"  # set by its results writer
    tracker.save_results_samples("muce_aut", evaluation["samples"]["muce_aut"])
    (path,) = (tmp_path / "out").glob("*/samples_muce_aut_*.jsonl")
    return path, [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_each_sample_logs_its_answers_values_once(tmp_path, tiny_lm_folder):
    evaluation = _evaluate(tmp_path, tiny_lm_folder)
    task = evaluation["results"]["muce_aut"]
    path, samples = _written(tmp_path, evaluation)

    # an independent recomputation: the scorer over the task's answers, one corpus (the task's)
    answers = [a for s in samples for a in s["filtered_resps"][0]]
    prompts = [s["doc"]["prompt"] for s in samples for _ in s["filtered_resps"][0]]
    owner = [k for k, s in enumerate(samples) for _ in s["filtered_resps"][0]]
    items = [s["doc"]["item"] for s in samples for _ in s["filtered_resps"][0]]
    settings = lmeval.resolve_settings({"lm": str(tiny_lm_folder)})
    scorer = Scorer(settings.scoring)
    rows = scorer.score(answers, prompts=prompts, items=items, tasks=["aut"] * len(answers),
                        metrics=["dsi", "novelty", "diversity", "theme_uniqueness", "semantic_distance",
                                 "originality", "surprise"]).rows
    by_prompt = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"]).rows
    keep = [counts(r["degenerate"]) for r in rows]
    assert sum(keep) > 0, "the tiny model's noise has words"

    for k, sample in enumerate(samples):
        mine = [i for i, o in enumerate(owner) if o == k]
        for field in PER_ANSWER:
            source, name = (by_prompt, field.removeprefix("prompt_")) if field.startswith("prompt_") else (rows, field)
            expected = [round(source[i][name], 6) if keep[i] else None for i in mine]
            got = sample[field]
            assert len(got) == len(expected), field
            assert [g is None for g in got] == [e is None for e in expected], field
            assert np.allclose([g for g in got if g is not None], [e for e in expected if e is not None],
                               atol=2e-6), field
        for field in CORPUS_LEVEL:  # one corpus per task: a prompt has no value of its own
            assert sample[field] == [], field

    # the task's reported value is the mean of the logged values that count
    for field in ("novelty", "originality", "surprise"):
        logged = [v for s in samples for v in s[field] if v is not None]
        assert task[f"{field},samples"] == pytest.approx(np.mean(logged), abs=1e-6)

    # the settings are the card's, once, in the results; never in a sample
    text = path.read_text(encoding="utf-8")
    assert '"bootstrap_iters"' not in text and '"originality_model"' not in text
    assert evaluation["configs"]["muce_aut"]["metadata"]["card"]["profile"] == "offline"

    # what each metric field held before: the item (answers, prompt, settings) once per metric
    old = sum(len(json.dumps({**s, **{f: list(item) for f in s["metrics"]}}, ensure_ascii=False).encode()) + 1
              for s, item in zip(samples, _old_items(samples, settings)))
    new = len(text.encode("utf-8"))
    assert old >= 3 * new, (old, new)


def _old_items(samples, settings):
    settings_json = settings.to_json()
    return [lmeval.results_item(s["doc"], s["filtered_resps"], settings_json) for s in samples]


def test_one_corpus_per_prompt_logs_each_prompts_corpus_values(tmp_path, tiny_lm_folder):
    evaluation = _evaluate(tmp_path, tiny_lm_folder, corpus="prompt", lm="none")
    _, samples = _written(tmp_path, evaluation)
    scorer = Scorer(lmeval.resolve_settings({"lm": "none"}).scoring)
    for sample in samples:
        result = scorer.score(sample["filtered_resps"][0], metrics=["theme_uniqueness", "ngram_diversity"])
        corpus = result.corpora[None]
        assert sample["num_themes"] == [corpus.get("num_themes", 0)]
        for n in range(1, 6):
            value = corpus[f"ngram_diversity_{n}"]
            assert sample[f"ngram_diversity_{n}"] == ([] if value is None else [pytest.approx(value, abs=1e-6)])
        assert "surprise" not in sample  # lm none: not reported, not logged


def test_an_answer_left_out_as_degenerate_logs_null(tmp_path):
    from crpo_bench.lmeval.report import AGGREGATIONS, AnswerValues

    settings = lmeval.resolve_settings({"lm": "none"}).to_json()
    answers = [("a doorstop for a heavy door", "", "ok", "a tiny planter for succulents"),
               ("grind it into red pigment for paint", "a step to reach the shelf", "!!!", "a bookend")]
    docs = [{"task": "muce_aut", "prompt": f"Uses for a {o}?", "item": o, "muce_task": "aut"} for o in ("brick", "tile")]
    values = [AnswerValues(lmeval.results_item(doc, [list(a)], settings)) for doc, a in zip(docs, answers)]
    reported = AGGREGATIONS["diversity"](values)
    logged = [list(v) for v in values]
    assert [[x is None for x in row] for row in logged] == [[False, True, True, False], [False, False, True, False]]
    assert reported == pytest.approx(np.mean([x for row in logged for x in row if x is not None]), abs=1e-6)
    assert json.loads(json.dumps(values[0])) == logged[0]  # what a writer serialises: the values, not the item
