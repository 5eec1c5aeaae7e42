"""The lm-eval glue: per-document items, corpus aggregations, jackknife/bootstrap errors, the stderr hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from crpo_bench import Scorer, ScoringConfig, lmeval

MUCE = lmeval.resolve_settings({"lm": "none"}).to_json()


def nb_settings(**metadata) -> str:
    return lmeval.resolve_settings({"lm": "none", **metadata}, kind="noveltybench").to_json()


# (task, prompt, answers, MuCE item, MuCE task, settings): what a task hands every metric
ITEMS = [
    ("muce_t", "Uses for a brick?", ("Hollow it out as a planter.", "Grind it into red pigment.", "A doorstop.", ""),
     "brick", "aut", MUCE),
    ("muce_t", "Uses for a shoe?", ("Plant herbs in it.", "Use it as a boat for toy soldiers.", "Wear it.", "Shoe."),
     "shoe", "aut", MUCE),
    ("muce_t", "Uses for a paperclip?", ("Bend it into a tiny bicycle.", "Reset a router with it.", "Clip paper.",
                                         "Pick a lock in a spy film."), "paperclip", "aut", MUCE),
]


@pytest.fixture
def settings():
    return lmeval.TaskSettings.from_json(MUCE)


def mean_over_real(rows, field):
    return float(np.mean([r[field] for r in rows if r["degenerate"] is None]))


def expected_values(items):
    answers = [a for _, _, rs, *_ in items for a in rs]
    prompts = [p for _, p, rs, *_ in items for _ in rs]
    owner = [k for k, (_, _, rs, *_) in enumerate(items) for _ in rs]
    scorer = Scorer(ScoringConfig())
    task = scorer.score(answers, prompts=prompts, metrics=["novelty", "diversity", "dsi", "theme_uniqueness",
                                                           "ngram_diversity"])
    per_prompt = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"])
    out = {m: mean_over_real(task.rows, m) for m in ("novelty", "diversity", "dsi", "theme_uniqueness")}
    out["num_themes"] = task.corpora[None]["num_themes"]
    out["ngram_diversity_2"] = task.corpora[None]["ngram_diversity_2"]
    out["prompt_novelty"] = mean_over_real(per_prompt.rows, "novelty")
    out["prompt_diversity"] = mean_over_real(per_prompt.rows, "diversity")
    return out


def test_one_item_per_prompt_carries_all_samples_and_the_settings(settings):
    doc = {"task": "muce_t", "prompt": "Uses for a brick?", "item": "brick", "muce_task": "aut"}
    item = lmeval.results_item(doc, [["a b", "c d", "e f", "g h"]], MUCE)
    assert item == ("muce_t", "Uses for a brick?", ("a b", "c d", "e f", "g h"), "brick", "aut", MUCE)
    # a pooled task hands several requests' samples: all of them, in order
    pooled = lmeval.results_item(doc, [["a b", "c d"], ["e f", "g h"], ["i j", "k l"], ["m n", "o p"]], MUCE)
    assert pooled[2] == ("a b", "c d", "e f", "g h", "i j", "k l", "m n", "o p")
    # lm "none", no reward model: no surprise, no quality
    assert set(settings.metrics()) == {
        "novelty", "diversity", "dsi", "theme_uniqueness", "num_themes", "prompt_novelty", "prompt_diversity",
        *(f"ngram_diversity_{n}" for n in range(1, 6)), "semantic_distance", "originality"}


def test_prompt_corpus_scores_each_prompts_answers_alone(settings):
    """corpus "prompt" (the paper's protocol): novelty, diversity and themes over each prompt's
    answers; num_themes and n-gram diversity averaged over prompts."""
    items = [tuple(i) for i in ITEMS]
    scorer = Scorer(ScoringConfig())
    pooled = lmeval.corpus_values(items, scorer, {}, corpus="prompt")
    answers = [a for _, _, rs, *_ in items for a in rs]
    owner = [k for k, (_, _, rs, *_) in enumerate(items) for _ in rs]
    by_prompt = scorer.score(answers, corpus_ids=owner, metrics=["novelty", "diversity", "theme_uniqueness",
                                                                 "ngram_diversity"])
    assert pooled["novelty"] == pytest.approx(mean_over_real(by_prompt.rows, "novelty"), abs=1e-12)
    assert pooled["diversity"] == pytest.approx(mean_over_real(by_prompt.rows, "diversity"), abs=1e-12)
    assert pooled["novelty"] == pytest.approx(pooled["prompt_novelty"], abs=1e-12)
    assert pooled["num_themes"] == pytest.approx(np.mean([c["num_themes"] for c in by_prompt.corpora.values()]))
    assert pooled["ngram_diversity_1"] == pytest.approx(
        np.mean([c["ngram_diversity_1"] for c in by_prompt.corpora.values()]))
    task_wide = lmeval.corpus_values(items, scorer, {}, corpus="task")
    assert abs(task_wide["novelty"] - pooled["novelty"]) > 1e-3  # the scope matters


def test_aggregations_equal_the_scorer_on_the_whole_corpus(settings):
    items = [tuple(i) for i in ITEMS]
    want = expected_values(items)
    for metric, value in want.items():
        assert lmeval.AGGREGATIONS[metric](items) == pytest.approx(value, abs=1e-9), metric


def test_jackknife_standard_error_leaves_one_prompt_out(settings):
    items = [tuple(i) for i in ITEMS]
    n = len(items)
    for metric in ("novelty", "prompt_diversity", "num_themes"):
        leave_one_out = np.array([expected_values([it for j, it in enumerate(items) if j != i])[metric]
                                  for i in range(n)])
        want = math.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
        assert lmeval.AGGREGATIONS[metric].crpo_stderr(items) == pytest.approx(want, abs=1e-9), metric


def test_bootstrap_draws_prompts_with_replacement():
    subsets, to_se = lmeval.resamples(5, "bootstrap", iters=50, seed=7)
    assert len(subsets) == 50 and all(len(s) == 5 and set(s) <= set(range(5)) for s in subsets)
    assert any(len(set(s)) < 5 for s in subsets)  # with replacement
    assert to_se(np.array([1.0, 3.0])) == pytest.approx(math.sqrt(2))
    jack, _ = lmeval.resamples(3, "jackknife", iters=0)
    assert jack == [[1, 2], [0, 2], [0, 1]]


def test_settings_come_from_metadata_then_environment(monkeypatch):
    monkeypatch.setenv("CRPO_EMBEDDER", "/models/from-env")
    monkeypatch.setenv("CRPO_DEGENERATE", "reference_compat")
    s = lmeval.resolve_settings({"embedder": "/models/from-metadata", "lm": "None"})
    assert s.scoring.embedder == "/models/from-metadata" and s.scoring.degenerate == "reference_compat"
    assert not s.surprise and s.scoring.lm is None and s.reward_model is None and s.stderr == "jackknife"
    unset = lmeval.resolve_settings({})  # the offline default SmolLM2, not "none"
    assert unset.surprise and unset.scoring.lm is None
    # the object travels as JSON in the task's items and comes back equal
    assert lmeval.TaskSettings.from_json(s.to_json()) == s
    monkeypatch.setenv("CRPO_MUCE_TEMPLATE", "scr")  # the data loaders' fallbacks are read in the same place
    assert lmeval.settings.muce_template(None) == "scr" and lmeval.settings.muce_template("default") == "default"
    with pytest.raises(ValueError, match="stderr method 'delta'"):
        lmeval.resolve_settings({"stderr": "delta"})


def test_lm_eval_uses_our_standard_errors():
    from lm_eval import evaluator_utils
    from lm_eval.api.metrics import mean, mean_stderr

    assert evaluator_utils.stderr_for_metric(lmeval.AGGREGATIONS["novelty"], 100000) is lmeval.AGGREGATIONS["novelty"].crpo_stderr
    assert evaluator_utils.stderr_for_metric(mean, 100000) is mean_stderr  # lm-eval's own still work
    assert evaluator_utils.stderr_for_metric(lmeval.AGGREGATIONS["novelty"], 0) is None  # --bootstrap_iters 0: none


def test_noveltybench_reports_utility_only_with_a_reward_model():
    settings = lmeval.resolve_settings({}, kind="noveltybench")
    assert set(settings.metrics()) == {"distinct", "prompt_novelty", "prompt_diversity"}
    assert "utility" in lmeval.resolve_settings({"reward_model": "/some/folder"}, kind="noveltybench").metrics()


def test_noveltybench_aggregation_is_the_mean_number_of_classes():
    unigram = nb_settings(equivalence="unigram")
    # unigram has no short-text rule (as in the reference): "Blue." joins "Blue" (ROUGE-1 tokens)
    items = [("nb", "Name a color.", ("Red", "red", "Blue", "Green", "red", "Blue.", "Teal", "Red", "Mauve", "green"),
              "Name a color.", "", unigram),
             ("nb", "Say hi.", ("hi",) * 10, "Say hi.", "", unigram)]
    assert lmeval.AGGREGATIONS["distinct"](items) == pytest.approx((5 + 1) / 2)
    # leave-one-prompt-out over two prompts: values 1 and 5 -> se = sqrt(1/2 * (2^2 * 2)) = 2
    assert lmeval.AGGREGATIONS["distinct"].crpo_stderr(items) == pytest.approx(2.0)


def test_the_paper_profile_reaches_the_tasks_scorer(monkeypatch):
    monkeypatch.delenv("CRPO_REWARD_MODEL", raising=False)
    paper = lmeval.resolve_settings({"profile": "paper", "lm": "google/gemma-2-2b-it", "trust_remote_code": True})
    config = paper.scoring
    assert (config.embedder, config.lm, config.tokenizer, config.surprise_scope, config.trust_remote_code) == (
        "jinaai/jina-embeddings-v3", "google/gemma-2-2b-it", "spacy", "whole_chat", True)
    assert paper.reward_model == config.reward_model == "Skywork/Skywork-Reward-Gemma-2-27B-v0.2"
    assert "quality" in paper.metrics()
    no_reward = lmeval.resolve_settings({"profile": "paper", "reward_model": "none"})
    assert no_reward.reward_model is None and no_reward.scoring.reward_model is None
    assert "quality" not in no_reward.metrics()
    offline = lmeval.resolve_settings({}).scoring
    assert (offline.embedder, offline.tokenizer, offline.trust_remote_code) == (None, "regex", False)
    with pytest.raises(ValueError, match="profile 'exact'"):
        lmeval.resolve_settings({"profile": "exact"})


def test_prompt_novelty_has_one_degenerate_rule_for_muce_and_noveltybench():
    """Degenerate answers ("" and a one-word answer) are left out of prompt_novelty and
    prompt_diversity in both kinds of task: the same answers give the same values."""
    answers = ("Hollow it out as a planter.", "Grind it into red pigment.", "", "Doorstop.", "Build a tiny oven.")
    nb = [("nb1", "Uses for a brick?", answers, "Uses for a brick?", "", nb_settings())]
    mu = [("mu1", "Uses for a brick?", answers, "brick", "aut", MUCE)]
    rows = Scorer(ScoringConfig()).score(list(answers), metrics=["novelty", "diversity"]).rows
    assert [r["degenerate"] for r in rows] == [None, None, "empty", "one_word", None]
    for metric, field in (("prompt_novelty", "novelty"), ("prompt_diversity", "diversity")):
        want = mean_over_real(rows, field)
        assert lmeval.AGGREGATIONS[metric](nb) == pytest.approx(want, abs=1e-12), metric
        assert lmeval.AGGREGATIONS[metric](mu) == pytest.approx(want, abs=1e-12), metric
