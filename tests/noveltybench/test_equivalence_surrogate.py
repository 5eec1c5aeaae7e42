"""The offline NoveltyBench equivalence surrogate: its tree evaluator against scikit-learn, its
features against hand-worked values, the packaged artifact, retraining, and clear errors."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from crpo_bench.noveltybench import surrogate as es
from crpo_bench.noveltybench import surrogate_training as et
from crpo_bench import noveltybench as nb
from crpo_bench.cli import main
from crpo_bench.jsonl import InputError
from crpo_bench.models import minilm_tokenizer

# what the packaged surrogate (v6) was fitted on: the reference's partitions of two published
# runs and of NoveltyBench's human answers (three regimes; Gemini's made without the short-text rule)
PUBLISHED = ("noveltybench/published/2025-03-27_gemini-1.5-pro/nb-curated/scores.jsonl",
             "noveltybench/published/2025-11-21_CrPO-llama-3.1-8b-instruct-cre/nb-curated/scores.jsonl")
HUMANS = "noveltybench/equivalence/humans.jsonl"
PAIRS = "noveltybench/equivalence/train.jsonl"
SOURCES = ["2025-03-27_gemini-1.5-pro", "2025-11-21_CrPO-llama-3.1-8b-instruct-cre", "humans"]


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def fake_embed(texts):
    """Deterministic unit vectors from character counts: enough to exercise the plumbing."""
    rows = np.array([[t.count(c) + 1.0 for c in "aeiostn .*"] for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_tree_evaluator_matches_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, len(es.FEATURES)))
    y = (X[:, 0] + 0.5 * X[:, 3] * X[:, 5] + rng.normal(scale=0.5, size=600) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_depth=3, max_iter=40, min_samples_leaf=20, random_state=0,
                                           early_stopping=False).fit(X, y)
    trees = et.export_trees(model)
    probe = rng.normal(size=(300, len(es.FEATURES)))
    np.testing.assert_allclose(trees.probability(probe), model.predict_proba(probe)[:, 1], rtol=0, atol=1e-12)


def test_cut_keeps_the_first_128_tokens_in_the_original_characters(tokenizer):
    long = "The **Whispering Grubs** glow. " * 40
    cut, count = es.cut_to_tokens(long, tokenizer)
    assert count > 128 and long.startswith(cut) and "**Whispering" in cut  # case and markdown kept
    assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) == 128
    assert es.cut_to_tokens("Brad Pitt", tokenizer) == ("Brad Pitt", 2)


def test_pair_features_by_hand(tokenizer):
    a, b = "The first thing is the **battery**. It is 12 volts.", "The first thing is the **battery**."
    views = es.make_views([a, b], fake_embed, tokenizer)
    f = dict(zip(es.FEATURES, es.pair_features(views[a], views[b])))
    # every feature is rounded to FEATURE_DECIMALS (stable across CPUs): the exact value within half a unit
    assert all(v == round(v, es.FEATURE_DECIMALS) for v in f.values())
    approx = lambda x: pytest.approx(x, abs=0.5 * 10 ** -es.FEATURE_DECIMALS, rel=0)  # noqa: E731
    assert f["cosine"] == approx(float(fake_embed([a])[0] @ fake_embed([b])[0]))
    assert f["first_line_cosine"] == approx(f["cosine"])  # one line each
    # words: the|first|thing|is|the|battery|it|is|12|volts; the second text is the first 6 of them
    assert f["rouge1"] == approx(2 * (6 / 6) * (6 / 10) / (6 / 6 + 6 / 10))
    assert f["word_jaccard"] == approx(len({"the", "first", "thing", "is", "battery"})
                                              / len({"the", "first", "thing", "is", "battery", "it", "12", "volts"}))
    assert f["bigram_jaccard"] == approx(5 / 9)  # 9 distinct bigrams, the second's 5 among them
    assert f["common_prefix"] == approx(6 / 20)
    assert f["bold_jaccard"] == 1.0 and f["same_first_sentence"] == 1.0 and f["same_numbers"] == 0.0
    assert f["same_words"] == 0.0 and f["both_short"] == 0.0 and f["one_short"] == 0.0
    ta, tb = views[a].tokens, views[b].tokens
    assert (f["min_log_tokens"], f["max_log_tokens"]) == approx((np.log(tb + 1), np.log(ta + 1)))
    assert f["log_token_gap"] == approx(np.log(ta + 1) - np.log(tb + 1))
    assert es.pair_features(views[b], views[a]) == es.pair_features(views[a], views[b])


@pytest.mark.parametrize("a, b", [([0, 0, 1, 1, 2], [0, 1, 1, 2, 2]), ([0] * 6, [0, 0, 0, 1, 1, 1]),
                                  ([0] * 5, [0] * 5), ([0, 1, 2, 3], [0, 0, 1, 1]), ([0], [0])])
def test_adjusted_rand_index_against_scikit_learn(a, b):
    from sklearn.metrics import adjusted_rand_score

    assert et.adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b))


def test_evaluator_refuses_missing_values_and_loops():
    trees = es.SurrogateModel.load(es.packaged_path()).trees
    with pytest.raises(ValueError, match="must be finite"):
        trees.probability(np.full(len(es.FEATURES), np.nan))
    assert trees.probability(np.empty((0, len(es.FEATURES)))).shape == (0,)
    arrays = trees.arrays()
    first_inner = int(np.flatnonzero(~arrays["leaf"])[1])
    arrays["right"] = arrays["right"].copy()
    arrays["right"][first_inner] = first_inner  # a node that is its own child
    with pytest.raises(es.SurrogateError, match="right points back to an earlier node"):
        es.TreeEnsemble.from_arrays(arrays)


def test_the_surrogate_reads_minilm_whatever_the_other_metrics_embed_with(tokenizer):
    from crpo_bench.scoring import Scorer, ScoringConfig

    texts = ["Toyota Camry.", "Honda CR-V.", "Brad Pitt", "Tom Hanks", "The first thing is the **battery**."]

    def other_space(batch):
        raise AssertionError("the surrogate embedded with the other metrics' embedder")

    jina = nb.make_equivalence("surrogate", texts, other_space, embedder="jinaai/jina-embeddings-v3")
    scorer = Scorer(ScoringConfig(embedding_cache=False))
    minilm = es.surrogate_equivalence(texts, lambda t: scorer.embed(t, "e", 16), tokenizer)
    assert [jina(a, b) for a in texts for b in texts] == [minilm(a, b) for a in texts for b in texts]


def test_linkage_partition_joins_the_best_class_on_average_over_its_members():
    texts = ["a", "b", "c", "d", "a", "e"]
    same = np.eye(6)

    def put(i, j, q):
        same[i, j] = same[j, i] = q

    put(0, 1, 0.9)  # b joins a
    put(0, 2, 0.4), put(1, 2, 0.9)  # c: mean 0.65 over {a, b}, though a alone turns it down
    put(0, 3, 0.2), put(1, 3, 0.3), put(2, 3, 0.1)  # d: a new class
    put(4, 1, 0.0), put(4, 2, 0.0), put(4, 3, 0.9)  # a copy of a joins a's class whatever its scores
    for k in range(4):  # e: every class above 0.5, but d's (0.95) is the best
        put(5, k, 0.95 if k == 3 else 0.6)
    put(5, 4, 0.6)
    assert es.linkage_partition(texts, same, 0.5) == [0, 0, 0, 1, 0, 1]
    assert es.linkage_partition(texts, same, 0.7) == [0, 0, 1, 2, 0, 2]
    assert es.linkage_partition(texts, same, 0.99) == [0, 1, 2, 3, 0, 4]
    # the reference's loop asks first members only: c turned down by a, e taken by a's class
    greedy = lambda a, b: same[texts.index(a), texts.index(b)] > 0.5  # noqa: E731
    assert nb.partition(texts, greedy) == [0, 0, 1, 2, 0, 0]


def test_linkage_partition_ties_go_to_the_earlier_class_and_the_threshold_is_strict():
    same = np.array([[1, 0, 0.6], [0, 1, 0.6], [0.6, 0.6, 1]])
    assert es.linkage_partition(["x", "y", "z"], same, 0.5) == [0, 1, 0]
    assert es.linkage_partition(["x", "y", "z"], same, 0.6) == [0, 1, 2]
    assert es.linkage_partition([], np.eye(0), 0.5) == [] and es.linkage_partition(["x"], np.eye(1), 0.5) == [0]


def test_training_partition_reads_each_pair_in_place():
    row = {"generations": ["x", "y", "x", "z"], "partition": [0, 1, 0, 2]}
    prompt = et.Prompt.__new__(et.Prompt)
    prompt.generations, prompt.reference, prompt.short_rule = row["generations"], row["partition"], False
    prompt.pairs = list(itertools.combinations(range(4), 2))  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    probability = np.array([0.1, 0.9, 0.6, 0.1, 0.7, 0.1])
    # z: mean 0.35 over {x, x}, 0.7 over {y}; the reference's loop would take the first x (0.6)
    assert prompt.partition(probability, 0.5) == [0, 1, 0, 1]
    assert prompt.partition(probability, 0.75) == [0, 1, 0, 2]


@pytest.mark.parametrize("seed", range(20))
def test_verdicts_are_exactly_the_comparisons_the_reference_loop_made(seed):
    """Run the reference's greedy loop (rules.partition) with a random, not even transitive,
    judge that records every call; the verdicts read back from its partition alone must be
    those calls, in order, with their answers."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    relation = rng.random((n, n)) < rng.uniform(0.1, 0.9)
    relation = relation | relation.T
    texts = [f"t{i}" for i in range(n)]
    calls = []

    def judge(first, text):
        i, j = texts.index(first), texts.index(text)
        calls.append((i, j, int(relation[i, j])))
        return bool(relation[i, j])

    labels = nb.partition(texts, judge)
    assert et.reference_verdicts(labels) == calls


def test_training_examples_are_the_verdicts_not_every_pair_of_a_class(tokenizer):
    # apple, sky, apple', sky': apple' is compared with apple only (same); sky' with apple (no),
    # then sky (same). Never compared, so no example: (sky, apple') and (apple', sky').
    texts = ["A red apple.", "A blue sky above.", "A red apple, ripe.", "A blue sky."]
    views = es.make_views(texts, fake_embed, tokenizer)
    prompt = et.Prompt({"generations": texts, "partition": [0, 1, 0, 1]}, views)
    pairs = list(itertools.combinations(range(4), 2))
    assert [pairs[k] for k in prompt.examples] == [(0, 1), (0, 2), (0, 3), (1, 3)]
    assert prompt.y.tolist() == [0, 1, 0, 1]
    X, y = et.stacked([prompt, prompt])
    assert X.shape == (8, len(es.FEATURES)) and np.array_equal(X[:4], prompt.X[prompt.examples])
    assert y.tolist() == [0, 1, 0, 1] * 2


def rule_by_hand(a, b):
    """The short-text rule written out: None unless both texts have at most 5 words."""
    wa, wb = a.lower().split(), b.lower().split()
    if max(len(wa), len(wb)) > 5:
        return None
    return float(2 * len(set(wa) & set(wb)) >= max(len(wa), len(wb)))


def pair_probability(a, b, model, views, short_rule=True):
    if a == b:
        return 1.0
    rule = rule_by_hand(a, b) if short_rule else None
    return rule if rule is not None else model.probability(views[a], views[b])


def linkage_expected(generations, model, views, short_rule=True):
    """The surrogate's partition computed here: P(same) of every pair (1 for identical texts,
    the short-text rule's verdict on two short texts), then linkage_partition."""
    n = len(generations)
    same = np.array([[pair_probability(generations[i], generations[j], model, views, short_rule) for j in range(n)]
                     for i in range(n)])
    return es.linkage_partition(list(generations), same, model.threshold)


def test_packaged_surrogate_loads_and_decides_deterministically(tokenizer):
    folder = es.packaged_path()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    model = es.SurrogateModel.load(folder)
    assert list(model.card["fitted"]) == SOURCES and list(model.card["leave_one_source_out"]) == SOURCES
    assert [model.card["fitted"][s]["short_rule"] for s in SOURCES] == [False, True, True]
    for source in SOURCES[:2]:  # the class counts a leaderboard reads, within 5% on both published models
        for figures in (model.card["fitted"][source], model.card["leave_one_source_out"][source]):
            assert abs(figures["mean_classes"] / figures["reference_mean_classes"] - 1) <= 0.05, source
    texts = ["Video game designer.", "Astronaut", "The first thing to check is the **battery**. " * 3,
             "A chemical process that absorbs heat is called an **endothermic** process."]
    first = nb.make_equivalence("surrogate", texts, fake_embed)
    second = es.surrogate_equivalence(texts, fake_embed, tokenizer, es.SurrogateModel.load(folder))
    views = es.make_views(texts, fake_embed, tokenizer)
    unruled = es.surrogate_equivalence(texts, fake_embed, tokenizer, model, short_rule=False)
    for a, b in itertools.product(texts, texts):
        expected = pair_probability(a, b, model, views) > model.threshold
        assert first(a, b) == second(a, b) == expected
        assert unruled(a, b) == (a == b or model.probability(views[a], views[b]) > model.threshold)
    assert nb.partition(texts, first) == nb.partition(texts, second) == linkage_expected(texts, model, views)
    assert nb.partition(texts, unruled) == linkage_expected(texts, model, views, short_rule=False)
    # by default the rule decides two short texts: sharing no word, they are never the same
    assert first("Video game designer.", "Astronaut") is False
    assert first(texts[2], texts[3]) == unruled(texts[2], texts[3])  # long texts: the trees either way


@pytest.fixture(scope="module")
def training_prompts(shared_data, tokenizer):
    """The packaged surrogate's training data as the command reads it, one source per file."""
    from crpo_bench.scoring import Scorer, ScoringConfig

    sources = {et.source_name(shared_data / f): et.read_partitions(shared_data / f) for f in (*PUBLISHED, HUMANS)}
    scorer = Scorer(ScoringConfig())
    views = es.make_views([g for rows in sources.values() for r in rows for g in r["generations"]],
                          lambda t: scorer.embed(t, "embedding", 16), tokenizer)
    return [et.Prompt(r, views, name, et.source_short_rule(rows)) for name, rows in sources.items() for r in rows]


def published_only(prompts):
    return [p for p in prompts if p.source != "humans"]


def test_packaged_surrogate_reproduces_its_card(training_prompts):
    model = es.SurrogateModel.load(es.packaged_path())
    found = et.per_source(training_prompts, model.trees, model.threshold)
    # embeddings differ in their last bits between CPUs; a rounded feature that crosses a
    # boundary may flip one prompt's partition (0.01 classes of 100 prompts)
    for source, card in model.card["fitted"].items():
        assert found[source]["mean_ari"] == pytest.approx(card["mean_ari"], abs=0.01), source
        assert found[source]["mean_classes"] == pytest.approx(card["mean_classes"], abs=0.021), source
    # the backend as the commands use it partitions as the training code does
    from crpo_bench.scoring import Scorer, ScoringConfig

    scorer = Scorer(ScoringConfig())
    prompts = published_only(training_prompts)[::10]
    equivalent = es.surrogate_equivalence([g for p in prompts for g in p.generations],
                                          lambda t: scorer.embed(t, "embedding", 16), minilm_tokenizer(), model)
    unruled = es.surrogate_equivalence([g for p in prompts for g in p.generations],
                                       lambda t: scorer.embed(t, "embedding", 16), minilm_tokenizer(), model,
                                       short_rule=False)
    for p in prompts:
        judge = equivalent if p.short_rule else unruled
        assert nb.partition(p.generations, judge) == p.partition(model.trees.probability(p.X), model.threshold)


# Retraining on another CPU (benchmarks/training_spread.py; README "Reproducing the packaged
# models"): with features rounded to 4 decimals, 1e-6 relative noise on every embedding
# component (ten times what other float rounding gives) leaves the trees identical. A real
# difference that still crosses a rounding boundary may pick another setting whose class
# error is within SETTING_TOLERANCE of the best, or the neighbouring threshold. What must
# hold is the model's behaviour: its partitions of the published runs' prompts.
SETTING_TOLERANCE = 0.002  # out-of-fold class error
PARTITION_AGREEMENT = 0.99  # mean ARI of the retrained model's partitions against the packaged one's


def reproduction_failures(fresh: es.SurrogateModel, packaged: es.SurrogateModel, prompts) -> list[str]:
    """What makes `fresh` a different model from `packaged` (empty: the same model)."""
    failures = []
    scores = packaged.card["setting_class_error"]
    chosen = "/".join(str(v) for v in fresh.card["setting"].values())
    if scores.get(chosen, float("inf")) > min(scores.values()) + SETTING_TOLERANCE:
        failures.append(f"setting {chosen}: class error {scores.get(chosen)} against the best {min(scores.values())}")
    if abs(fresh.threshold - packaged.threshold) > 0.025 + 1e-9:  # one step of et.THRESHOLDS
        failures.append(f"threshold {fresh.threshold} against {packaged.threshold}")
    ours, theirs = ([p.partition(m.trees.probability(p.X), m.threshold) for p in prompts] for m in (fresh, packaged))
    agreement = float(np.mean([et.adjusted_rand_index(a, b) for a, b in zip(ours, theirs)]))
    if agreement < PARTITION_AGREEMENT:
        failures.append(f"partitions agree at mean ARI {agreement:.4f} with the packaged model's")
    return failures


def test_retraining_reproduces_the_packaged_surrogate(shared_data, training_prompts, tmp_path):
    assert main(["equivalence", "train", "--data", *(str(shared_data / f) for f in (*PUBLISHED, HUMANS)),
                 "--out", str(tmp_path / "m"), "--no-held-out"]) == 0
    packaged, fresh = es.SurrogateModel.load(es.packaged_path()), es.SurrogateModel.load(tmp_path / "m")
    assert fresh.card["data"] == packaged.card["data"]
    assert reproduction_failures(fresh, packaged, published_only(training_prompts)) == []


def test_retraining_with_another_setting_is_told_apart(training_prompts, monkeypatch):
    """The reproduction check sees a material change: trees fitted with one hyperparameter
    moved (half the trees: max_iter 100 -> 50) fail it, through their partitions alone."""
    packaged = es.SurrogateModel.load(es.packaged_path())
    setting = tuple(packaged.card["setting"].values())
    moved = (setting[0], 50 if setting[1] != 50 else 100, setting[2])
    monkeypatch.setattr(et, "GRID", (moved,))
    trees, threshold, chosen, _ = et.fit(training_prompts)
    fresh = es.SurrogateModel(trees, threshold, {"setting": dict(zip(("max_depth", "max_iter", "min_samples_leaf"),
                                                                      chosen))})
    failures = reproduction_failures(fresh, packaged, published_only(training_prompts))
    assert any("partitions agree" in f for f in failures), failures


def copy_packaged(tmp_path):
    folder = tmp_path / "surrogate"
    shutil.copytree(es.packaged_path(), folder)
    return folder


def test_missing_or_damaged_artifact_is_named(tmp_path):
    folder = copy_packaged(tmp_path)
    (folder / "trees.npz").write_bytes(b"not a zip file")
    with pytest.raises(es.SurrogateError, match=r"trees\.npz: not a surrogate tree file"):
        es.SurrogateModel.load(folder)
    (folder / "trees.npz").unlink()
    with pytest.raises(es.SurrogateError, match=r"trees\.npz is missing"):
        es.SurrogateModel.load(folder)


def test_card_for_other_features_or_a_broken_tree_is_refused(tmp_path):
    folder = copy_packaged(tmp_path)
    card = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**card, "features": ["cosine"]}))
    with pytest.raises(es.SurrogateError, match="fitted on features"):
        es.SurrogateModel.load(folder)
    (folder / "card.json").write_text("{")
    with pytest.raises(es.SurrogateError, match=r"card\.json: not a surrogate card"):
        es.SurrogateModel.load(folder)
    (folder / "card.json").write_text(json.dumps(card))
    arrays = dict(np.load(folder / "trees.npz"))
    arrays["left"] = arrays["left"] + 10_000
    np.savez(folder / "trees.npz", **arrays)
    with pytest.raises(es.SurrogateError, match="left points outside"):
        es.SurrogateModel.load(folder)


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "generations": ["x", "y"], "partition": [0]}, "one integer class per generation"),
    ({"id": "a", "generations": ["x", "y"], "partition": [1, 0]}, "in order of appearance"),
    ({"id": "a", "generations": ["x", ""], "partition": [0, 1]}, "non-empty strings"),
    ({"id": "a", "generations": ["x"], "partition": [0]}, "at least 2"),
])
def test_bad_partition_rows_are_named(tmp_path, row, message):
    path = tmp_path / "p.jsonl"
    good = {"id": "g", "generations": ["x", "y"], "partition": [0, 1]}
    path.write_text("".join(json.dumps(r) + "\n" for r in [good, row] + [good] * 4))
    with pytest.raises(InputError, match=rf"p\.jsonl:2: .*{message}"):
        et.read_partitions(path)


def test_noveltybench_command_runs_offline_with_the_surrogate(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    gens = ["Toyota Camry."] * 5 + ["Honda CR-V."] * 2 + ["The first thing to check is the **battery**. " * 20] * 3
    (run / "generations.jsonl").write_text(json.dumps({"id": "p", "prompt": "A car?", "generations": gens}) + "\n")
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "surrogate"]) == 0
    record = json.loads((run / "v1.1" / "partitions.jsonl").read_text())
    model, tokenizer = es.SurrogateModel.load(es.packaged_path()), minilm_tokenizer()
    from crpo_bench.scoring import Scorer, ScoringConfig

    scorer = Scorer(ScoringConfig(embedding_cache=False))
    views = es.make_views(gens, lambda t: scorer.embed(t, "e", 16), tokenizer)
    expected = linkage_expected(gens, model, views)
    assert record["partition"] == expected and record["num_classes"] == max(expected) + 1
    assert record["partition"][7] == record["partition"][8] == record["partition"][9]  # identical texts
    assert json.loads((run / "v1.1" / "noveltybench_settings.json").read_text())["equivalence"] == \
        "surrogate/equivalence-surrogate-v6"
    # --no-short-rule: the reference before its short-text rule; the trees decide short texts too
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run / "generations.jsonl", old / "generations.jsonl")
    assert main(["noveltybench", "--eval-dir", str(old), "--equivalence", "surrogate", "--no-short-rule"]) == 0
    record = json.loads((old / "v1.1" / "partitions.jsonl").read_text())
    assert record["partition"] == linkage_expected(gens, model, views, short_rule=False)
    assert json.loads((old / "v1.1" / "noveltybench_settings.json").read_text())["equivalence"] == \
        "surrogate/equivalence-surrogate-v6 (no short-text rule)"


def test_lmeval_tasks_default_to_the_surrogate_and_name_it_in_the_card(tokenizer):
    from crpo_bench import lmeval
    from crpo_bench.scoring import Scorer, ScoringConfig

    settings = lmeval.resolve_settings({"lm": "none"}, kind="noveltybench")
    assert settings.equivalence == "surrogate"
    assert lmeval.task_card(settings, {}, 10)["equivalence"] == "surrogate/equivalence-surrogate-v6"
    gens = ("Toyota Camry.",) * 6 + ("Honda CR-V.",) * 2 + ("A bike.", "The first thing to check is the battery.")
    key = settings.to_json()
    items = [("nb", "A car?", gens, "A car?", "", key), ("nb", "Hi?", ("hi",) * 10, "Hi?", "", key)]
    model, scorer = es.SurrogateModel.load(es.packaged_path()), Scorer(ScoringConfig(embedding_cache=False))
    views = es.make_views(list(gens), lambda t: scorer.embed(t, "e", 16), tokenizer)
    classes = max(linkage_expected(gens, model, views)) + 1
    assert lmeval.AGGREGATIONS["distinct"](items) == pytest.approx((classes + 1) / 2)


# Probabilities under which the surrogate's loop and the reference's disagree: "Blue" is
# turned down by the first member "Red" (0.1) but matches the class on average (0.5).
DISAGREEING = {frozenset({"Red", "Crimson"}): 0.9, frozenset({"Red", "Blue"}): 0.1,
               frozenset({"Crimson", "Blue"}): 0.9}
LOOP_GENERATIONS = ["Red", "Crimson", "Blue"] + ["Red"] * 7  # one class by ours, two by the reference's


def disagreeing_probabilities(self, pairs):
    return np.array([1.0 if a == b else DISAGREEING[frozenset({a, b})] for a, b in pairs])


def test_commands_and_tasks_partition_by_the_surrogates_own_loop(tmp_path, monkeypatch):
    from crpo_bench import lmeval

    monkeypatch.setattr(es.SurrogateJudge, "probabilities", disagreeing_probabilities)
    judge = es.SurrogateJudge(es.SurrogateModel.load(es.packaged_path()), {})
    assert 0.1 < judge.model.threshold < 0.5
    assert nb.partition(LOOP_GENERATIONS, lambda a, b: judge(a, b)) == [0, 0, 1] + [0] * 7  # the reference's loop

    run = tmp_path / "run"
    run.mkdir()
    (run / "generations.jsonl").write_text(json.dumps({"id": "p", "prompt": "A colour?",
                                                       "generations": LOOP_GENERATIONS}) + "\n")
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "surrogate"]) == 0
    assert json.loads((run / "v1.1" / "partitions.jsonl").read_text())["partition"] == [0] * 10

    settings = lmeval.resolve_settings({"lm": "none"}, kind="noveltybench")
    key = settings.to_json()
    items = [("nb", "A colour?", tuple(LOOP_GENERATIONS), "A colour?", "", key)]
    assert lmeval.AGGREGATIONS["distinct"](items) == pytest.approx(1.0)


def test_the_rule_cannot_wrap_a_backend_with_its_own_loop():
    judge = es.SurrogateJudge(es.SurrogateModel.load(es.packaged_path()), {})
    with pytest.raises(TypeError, match="partitions by its own loop"):
        nb.short_rule_then(judge)


@pytest.mark.parametrize("rows, expected", [
    # Gemini's: "Brad Pitt" judged the same as "Tom Hanks", which the rule calls different
    ([(["Brad Pitt", "Tom Hanks", "Brad Pitt!"], [0, 0, 0])], False),
    # every verdict on two short texts is the rule's: "Unicorns." and "Unicorns" share no word
    ([(["Unicorns.", "Unicorns", "unicorns."], [0, 1, 0])], True),
    # long texts only, or two short texts never compared (a later member of a class): no evidence
    ([(["A long answer about the sea and ships.", "Blue", "Red"], [0, 0, 0])], None),
    ([(["Paris", "Paris, France.", "Rome"], [0, 0, 1]), (["Red", "Blue"], [0, 0])], False),
])
def test_made_with_short_rule_reads_the_reference_version_from_its_verdicts(rows, expected):
    assert nb.made_with_short_rule(rows) is expected


def test_rule_sources_give_no_examples_on_two_short_texts_and_partition_by_the_rule(tokenizer):
    texts = ["Unicorns.", "Unicorns", "A unicorn is a horse with one horn, says the old story.", "unicorns."]
    views = es.make_views(texts, fake_embed, tokenizer)
    row = {"generations": texts, "partition": [0, 1, 2, 0]}
    pairs = list(itertools.combinations(range(4), 2))
    ruled, unruled = et.Prompt(row, views, "x", short_rule=True), et.Prompt(row, views, "x", short_rule=False)
    # verdicts: (0,1) (0,2) (1,2) (0,3); the rule gave those on two short texts, (0,1) and (0,3)
    assert [pairs[k] for k in unruled.examples] == [(0, 1), (0, 2), (1, 2), (0, 3)]
    assert [pairs[k] for k in ruled.examples] == [(0, 2), (1, 2)] and ruled.y.tolist() == [0, 0]
    high = np.full(len(pairs), 0.9)  # the trees would put everything in one class
    assert unruled.partition(high, 0.5) == [0, 0, 0, 0]
    # "Unicorns." / "Unicorns" share no whitespace word: the rule keeps them apart; the long text
    # averages 0.9 with each, so joins the first class
    assert ruled.partition(high, 0.5) == [0, 1, 0, 0]
    assert et.source_short_rule([row]) is True
    assert et.source_short_rule([{"generations": texts, "partition": [0, 0, 1, 0]}]) is False


def test_fitting_keeps_a_prompt_whose_verdicts_the_rule_all_gave(tokenizer):
    """A rule source's prompt of short answers only gives no example, yet the fit runs and
    partitions it by the rule."""
    short = {"generations": ["Blue", "Red", "blue", "Green"], "partition": [0, 1, 2, 3]}
    long = [{"generations": [f"A long answer number {i} about the sea, the ships and the sky.",
                             f"Another long answer {i} about mountains, rivers and old roads."],
             "partition": [0, i % 2]} for i in range(12)]
    texts = [g for r in [short, *long] for g in r["generations"]]
    views = es.make_views(texts, fake_embed, tokenizer)
    prompts = [et.Prompt(short, views, "s", short_rule=True)] + [et.Prompt(r, views, "l") for r in long]
    assert prompts[0].examples.size == 0 and prompts[0].y.size == 0
    X, y = et.stacked(prompts)
    assert X.shape == (12, len(es.FEATURES)) and y.tolist() == [1 - i % 2 for i in range(12)]  # [0, 0]: same
    trees, threshold, _, _ = et.fit(prompts)
    # "Blue" and "blue" share their word: one class by the rule, whatever the trees say
    assert prompts[0].partition(trees.probability(prompts[0].X), threshold) == [0, 1, 0, 2]


def test_no_short_rule_is_refused_for_other_backends(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "generations.jsonl").write_text(json.dumps({"id": "p", "prompt": "A?", "generations": ["x"] * 10}) + "\n")
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "unigram", "--no-short-rule"]) == 2
    assert "--no-short-rule applies to --equivalence surrogate only, not unigram" in capsys.readouterr().err
    assert not (run / "v1.1").exists()
