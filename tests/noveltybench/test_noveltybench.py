"""NoveltyBench partition and utility against hand-worked examples; the `noveltybench` command's files."""

from __future__ import annotations

import json

import pytest

from crpo_bench import noveltybench as nb
from crpo_bench.cli import main
from noveltybench_fixtures import write_generations  # noqa: F401 -- shared with other test files


def never(a, b):
    return False


def test_short_text_rule_counts_common_words_against_the_longer_text():
    assert nb.short_texts_equivalent("Paris", "paris") is True            # 2*1 >= 1
    assert nb.short_texts_equivalent("the red fox", "a red dog") is False  # 2*1 < 3
    assert nb.short_texts_equivalent("the red fox", "the red dog") is True  # 2*2 >= 3
    assert nb.short_texts_equivalent("one two three four five six", "one") is None  # 6 words: backend decides


def test_partition_is_greedy_in_order_against_class_representatives():
    # backend: equivalent when they share the first letter; long texts so the short rule stays out
    pad = " and so on and so forth"
    texts = ["apple pie" + pad, "banana bread" + pad, "avocado toast" + pad, "blueberry jam" + pad,
             "cherry tart" + pad, "apricot cake" + pad]
    first_letter = lambda a, b: a[0] == b[0]  # noqa: E731
    assert nb.partition(texts, first_letter) == [0, 1, 0, 1, 2, 0]
    assert nb.partition(texts, never) == [0, 1, 2, 3, 4, 5]
    # a generation is compared with each class's first member only, in class order
    calls = []
    nb.partition(["x1" + pad, "y1" + pad, "z1" + pad], lambda a, b: calls.append((a[:2], b[:2])) or False)
    assert calls == [("x1", "y1"), ("x1", "z1"), ("y1", "z1")]


def test_partition_leaves_the_short_text_rule_to_the_backend():
    assert nb.partition(["Paris", "paris", "Rome"], lambda a, b: True) == [0, 0, 0]
    assert nb.partition(["Paris", "paris", "Rome"], nb.short_rule_then(lambda a, b: True)) == [0, 0, 1]


def test_unigram_backend_has_no_short_text_rule_as_in_the_reference():
    # whitespace words "blue." and "blue" differ (rule: not equivalent); ROUGE-1 tokens agree (F = 1)
    assert nb.short_texts_equivalent("Blue.", "blue") is False
    assert nb.unigram_equivalence()("Blue.", "blue") is True
    assert nb.partition(["Blue", "Blue.", "blue!"], nb.unigram_equivalence()) == [0, 0, 0]


def test_embedding_backend_applies_the_short_text_rule_first():
    import numpy as np

    same, other = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    vectors = {"Blue.": same, "blue": same, "Red": other, "red": other}
    equivalent = nb.embedding_equivalence(vectors, threshold=0.5)
    assert equivalent("Blue.", "blue") is False  # cosine 1, but the rule decides: no common word
    assert equivalent("Red", "red") is True
    assert nb.make_equivalence("embedding", ["Blue.", "blue"], lambda texts: np.stack([same] * len(texts)))(
        "Blue.", "blue") is False


def test_unigram_backend_uses_rouge1_f():
    # 4 tokens each, 2 in common: P = R = 0.5, F = 0.5 > 0.458
    assert nb.rouge1_f("a b c d", "a b e f") == pytest.approx(0.5)
    assert nb.unigram_equivalence()("a b c d", "a b e f") is True
    # 2 of 5 in common: F = 0.4
    assert nb.unigram_equivalence()("a b c d e", "a b f g h") is False
    assert nb.rouge1_f("x", "y") == 0.0


def test_embedding_backend_thresholds_cosine():
    import numpy as np

    # texts of 6 words, so the short-text rule stays out
    a, b, c = ("one two three four five " + w for w in ("six", "seven", "eight"))
    vectors = {a: np.array([1.0, 0.0]), b: np.array([0.8, 0.6]), c: np.array([0.6, 0.8])}
    equivalent = nb.embedding_equivalence(vectors, threshold=0.7)
    assert equivalent(a, b) is True and equivalent(a, c) is False  # cos 0.8, 0.6


def test_classifier_backend_input_format_and_threshold(tmp_path):
    """A tiny random BERT pair classifier: [CLS] a [SEP] b [SEP], types 0/1, P(class 1) > threshold."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]")
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2))
    model.save_pretrained(tmp_path)
    fast.save_pretrained(tmp_path)
    clf = nb.ClassifierEquivalence(str(tmp_path))
    long_a = " ".join(["a"] * 200)
    p = clf.probability(long_a, "b c")
    ids = [2] + [4] * 128 + [3] + [5, 6] + [3]  # each side cut to 128 tokens
    types = [0] * 130 + [1] * 3
    with torch.no_grad():
        want = torch.softmax(clf.model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0], -1)[1]
    assert p == pytest.approx(float(want), abs=1e-6)
    clf.threshold = p - 1e-6
    assert clf(long_a, "b c") is True
    clf.threshold = p + 1e-6
    assert clf(long_a, "b c") is False
    # two short texts: the short-text rule decides, the classifier is not asked
    clf.threshold = 2.0
    assert clf("b c", "c b") is True
    clf.threshold = -1.0
    assert clf("b", "c") is False


def test_rating_thresholds():
    t = nb.REWARD_THRESHOLDS
    assert nb.rating(-100) == 1 and nb.rating(t[0]) == 1  # bisect_left: a tie stays below
    assert nb.rating(t[0] + 1e-9) == 2 and nb.rating(-5.2) == 6 and nb.rating(0.0) == 10


def test_utility_counts_first_of_class_with_patience_weights():
    labels = [0, 0, 1, 0, 2]
    ratings = [5, 9, 7, 9, 3]
    scores = nb.generation_scores(labels, ratings)
    assert scores == [5, 0, 7, 0, 3]
    assert nb.partition_scores(labels, ratings) == [5, 7, 3]
    weights = [1, 0.8, 0.64, 0.512, 0.4096]
    assert nb.utility(scores) == pytest.approx((5 + 7 * 0.64 + 3 * 0.4096) / sum(weights))
    assert nb.utility([10] + [0] * 9) == pytest.approx(10 / sum(0.8 ** i for i in range(10)))  # 2.2406, as in the reference file
    assert nb.utility([4, 4], patience=0.5) == pytest.approx(4.0)


def test_reference_files_utilities_recompute(shared_data):
    for line in (shared_data / "noveltybench" / "gemini-1.5-pro-curated-calibration.jsonl").open():
        row = json.loads(line)
        assert max(row["partition"]) == row["distinct"]  # the reference field is classes - 1
        assert nb.utility(row["generation_scores"]) == pytest.approx(row["utility"], abs=1e-9)
        first = {}
        for label, s in zip(row["partition"], row["generation_scores"]):
            first.setdefault(label, s)
        assert [first[k] for k in sorted(first)] == row["partition_scores"]


GENS = [
    {"id": "p-1", "prompt": "Name a color.", "generations": ["Red", "red", "Blue", "Green", "red", "Blue.", "Teal",
                                                             "Red", "Mauve", "green"]},
    {"id": "p-2", "prompt": "Tell a one-line joke.", "generations": [
        "Why did the chicken cross the road? To get to the other side.",
        "Why did the chicken cross the road? To reach the other side!",
        "I told my computer a joke about UDP, but it did not get it.",
        *["What do you call a fish with no eyes? A fsh, said the fishmonger."] * 7]},
]


def test_noveltybench_command_writes_every_file(tmp_path, tiny_reward_folder, capsys):
    write_generations(tmp_path / "run", GENS)
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--version", "1.0", "--equivalence", "unigram",
                 "--reward-model", str(tiny_reward_folder)]) == 0
    partitions = [json.loads(x) for x in (tmp_path / "run" / "v1.0" / "partitions.jsonl").read_text().splitlines()]
    # colors: unigram has no short-text rule; ROUGE-1 tokens are lowercased and drop punctuation,
    # so "Blue." joins "Blue"
    assert partitions[0]["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]
    assert partitions[0]["num_classes"] == 5 and partitions[0]["distinct"] == 4
    assert partitions[1]["partition"] == [0, 0, 1, 2, 2, 2, 2, 2, 2, 2]
    scores = [json.loads(x) for x in (tmp_path / "run" / "v1.0" / "scores.jsonl").read_text().splitlines()]
    for row, part in zip(scores, partitions):
        assert set(row) >= {"id", "prompt", "generations", "partition", "distinct", "generation_scores",
                            "partition_scores", "utility", "novelty", "diversity"}
        assert all(1 <= s <= 10 for s in row["partition_scores"]) and len(row["partition_scores"]) == part["num_classes"]
        assert row["utility"] == pytest.approx(nb.utility(row["generation_scores"]))
        assert [s > 0 for s in row["generation_scores"]] == [
            part["partition"][i] not in part["partition"][:i] for i in range(10)]
    summary = json.loads((tmp_path / "run" / "v1.0" / "summary.json").read_text())
    assert summary["mean_distinct"] == pytest.approx(4.0) and summary["num_prompts"] == 2
    assert summary["version"] == "1.0"
    assert summary["mean_utility"] == pytest.approx((scores[0]["utility"] + scores[1]["utility"]) / 2)
    assert summary["distinct"] == summary["mean_distinct"] and summary["utility"] == summary["mean_utility"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["mean_distinct"] == pytest.approx(4.0)


def test_without_reward_model_utility_is_unavailable_not_a_number(tmp_path):
    write_generations(tmp_path / "run", GENS[:1])
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    summary = json.loads((tmp_path / "run" / "v1.1" / "summary.json").read_text())
    assert summary["mean_utility"] is None and "no reward model" in summary["utility_unavailable"]
    row = json.loads((tmp_path / "run" / "v1.1" / "scores.jsonl").read_text())
    assert row["utility"] is None and row["generation_scores"] is None


def test_resume_skips_finished_prompts_and_redoes_a_torn_line(tmp_path, monkeypatch):
    write_generations(tmp_path / "run", GENS)
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    partitions = tmp_path / "run" / "v1.1" / "partitions.jsonl"
    first, second = partitions.read_text().splitlines(keepends=True)
    partitions.write_text(first + second[: len(second) // 2])  # crash in the middle of prompt 2
    seen = []
    real = nb.partition
    monkeypatch.setattr(nb, "partition", lambda gens, eq: seen.append(gens[0]) or real(gens, eq))
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    assert seen == [GENS[1]["generations"][0]]  # only the torn prompt is partitioned again
    assert partitions.read_text().splitlines(keepends=True) == [first, second]


def test_resuming_with_other_settings_is_refused(tmp_path, capsys):
    write_generations(tmp_path / "run", GENS[:1])
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 0
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "embedding"]) == 2
    assert "holds results made with other settings (equivalence)" in capsys.readouterr().err


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "prompt": "x", "generations": ["g"] * 9}], "generations.jsonl:1 (prompt id a): 9 generations, NoveltyBench needs 10"),
    ([{"id": "a", "prompt": "x", "generations": ["g"] * 9 + ["  "]}], "(prompt id a): generation 9 is empty"),
    ([{"id": 3, "prompt": "x", "generations": []}], "generations.jsonl:1: field 'id' must be a str"),
    ([{"id": "a", "prompt": "x", "generations": ["g"] * 10}] * 2, "generations.jsonl:2 (prompt id a): duplicate prompt id"),
    # copied into partitions.jsonl and scores.jsonl, where NaN would not be JSON
    ([{"id": "a", "prompt": "x", "generations": ["g"] * 10, "meta": {"t": float("nan")}}],
     "generations.jsonl:1 (prompt id a): field 'meta.t': not a finite number (NaN)"),
])
def test_bad_generations_name_the_prompt_or_line(tmp_path, capsys, rows, message):
    write_generations(tmp_path / "run", rows)
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 2
    assert message in capsys.readouterr().err


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_editing_one_prompts_generations_redoes_that_prompt_and_the_summary(tmp_path, monkeypatch):
    """Issue 13, item 4: a rerun reused the old partitions of an edited prompt and reported a stale summary."""
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "unigram"]) == 0
    assert json.loads((run / "v1.1" / "summary.json").read_text())["mean_distinct"] == pytest.approx(4.0)  # 5 and 3 classes
    untouched = read_lines(run / "v1.1" / "partitions.jsonl")[1]

    edited = [dict(GENS[0], generations=["Red"] * 10), GENS[1]]
    write_generations(run, edited)
    seen = []
    real = nb.partition
    monkeypatch.setattr(nb, "partition", lambda gens, eq: seen.append(gens[0]) or real(gens, eq))
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "unigram"]) == 0
    assert seen == ["Red"]  # only the edited prompt is partitioned again
    partitions, scores = read_lines(run / "v1.1" / "partitions.jsonl"), read_lines(run / "v1.1" / "scores.jsonl")
    assert sorted(r["id"] for r in partitions) == sorted(r["id"] for r in scores) == ["p-1", "p-2"]  # one record each
    by_id = {r["id"]: r for r in partitions}
    assert by_id["p-1"]["partition"] == [0] * 10 and by_id["p-1"]["generations"] == ["Red"] * 10
    assert by_id["p-2"] == untouched
    assert {r["id"]: r["num_classes"] for r in scores} == {"p-1": 1, "p-2": 3}
    assert json.loads((run / "v1.1" / "summary.json").read_text())["mean_distinct"] == pytest.approx(2.0)


def test_a_reference_partition_of_other_generations_is_redone(tmp_path):
    """A partitions.jsonl without our hash (the reference's) counts only while its generations are the current ones.
    The reference's v1.0 files lie flat in the eval dir, as an older crpo-bench's did: --version 1.0 reads them."""
    run = tmp_path / "run"
    write_generations(run, GENS)
    old = {"id": "p-1", "prompt": GENS[0]["prompt"], "generations": ["x"] * 10, "partition": [0] * 10, "distinct": 0}
    kept = {"id": "p-2", "prompt": GENS[1]["prompt"], "generations": GENS[1]["generations"],
            "partition": [0] * 10, "distinct": 0}
    (run / "partitions.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(kept) + "\n")
    assert main(["noveltybench", "--eval-dir", str(run), "--version", "1.0", "--equivalence", "unigram"]) == 0
    by_id = {r["id"]: r for r in read_lines(run / "v1.0" / "partitions.jsonl")}
    assert by_id["p-1"]["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]  # recomputed from the current generations
    assert by_id["p-2"] == kept  # used as it is


def test_a_run_that_fails_before_any_result_does_not_lock_the_settings(tmp_path, capsys):
    """Issue 13, item 4: a classifier that cannot load wrote the settings file first, so the
    suggested other backend was then refused as "other settings"."""
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "classifier",
                 "--classifier", str(tmp_path / "no-such-classifier")]) == 2
    assert "cannot load the equivalence classifier" in capsys.readouterr().err
    assert not (run / "v1.1" / "noveltybench_settings.json").exists()
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "unigram"]) == 0
    assert json.loads((run / "v1.1" / "noveltybench_settings.json").read_text())["equivalence"] == "unigram"


def test_a_settings_file_without_results_does_not_bind(tmp_path):
    """A folder left by the earlier version: settings written, no result ever produced."""
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    for folder in (run, run / "v1.1"):  # the flat layout of older versions, and the versioned one
        folder.mkdir(exist_ok=True)
        (folder / "noveltybench_settings.json").write_text(json.dumps({"equivalence": "classifier"}))
    assert main(["noveltybench", "--eval-dir", str(run), "--equivalence", "unigram"]) == 0
    assert json.loads((run / "v1.1" / "noveltybench_settings.json").read_text())["equivalence"] == "unigram"
    assert main(["noveltybench", "--eval-dir", str(run), "--version", "1.0", "--equivalence", "unigram"]) == 0
    assert json.loads((run / "v1.0" / "noveltybench_settings.json").read_text())["equivalence"] == "unigram"
    assert json.loads((run / "noveltybench_settings.json").read_text())["equivalence"] == "classifier"  # left alone


def test_the_default_equivalence_works_offline():
    import argparse

    from crpo_bench.commands import noveltybench as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["noveltybench", "--eval-dir", "d"])
    assert args.equivalence == "surrogate"


def test_malformed_line_is_named(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "generations.jsonl").write_text('{"id": "a", "prompt": \n')
    assert main(["noveltybench", "--eval-dir", str(tmp_path / "run"), "--equivalence", "unigram"]) == 2
    assert "generations.jsonl:1: malformed JSON" in capsys.readouterr().err


def reward_for(rating: int) -> float:
    """A raw reward that maps to `rating` (bisect_left: a threshold itself stays below it)."""
    t = nb.REWARD_THRESHOLDS
    return t[rating - 1] if rating <= len(t) else t[-1] + 1.0


def test_summary_matches_the_reference_formulas_on_the_reference_gemini_files(tmp_path, shared_data, monkeypatch):
    """The reference's own partitions (its classifier's) of Gemini-1.5-pro's generations go through
    the command as a finished partitions.jsonl; the reward model is replaced by rewards that give
    each class's first member the reference's rating (the others get arbitrary ratings, which must
    not count). summary.json must hold the reference summary's mean_distinct and mean_utility."""
    from types import SimpleNamespace

    from crpo_bench.scoring import scorer as scoring

    ref = [json.loads(line) for line in
           (shared_data / "noveltybench" / "gemini-1.5-pro-curated-calibration.jsonl").open()]
    ratings = {}
    for row in ref:
        labels = row["partition"]
        ratings[tuple(row["generations"])] = [
            score if labels[i] not in labels[:i] else 1 + (3 * i + 7) % 10
            for i, score in enumerate(row["generation_scores"])]

    def fake_score(self, responses, corpus_ids=None, prompts=None, metrics=None, **_):
        # no models: rewards from the table above, and novelty/diversity are not under test here
        if metrics == ["quality"]:
            return SimpleNamespace(rows=[{"quality": reward_for(r)} for r in ratings[tuple(responses)]])
        return SimpleNamespace(rows=[{"novelty": 0.0, "diversity": 0.0} for _ in responses])

    monkeypatch.setattr(scoring.Scorer, "score", fake_score)
    run = tmp_path / "run"
    write_generations(run, [{"id": r["id"], "prompt": r["prompt"], "generations": r["generations"]} for r in ref])
    fields = ("id", "prompt", "model", "generations", "partition", "distinct")  # as the reference partition step writes
    (run / "partitions.jsonl").write_text("".join(json.dumps({k: r[k] for k in fields}) + "\n" for r in ref))
    # classifier, as the reference; never loaded, since every prompt is already partitioned (the
    # reference's v1.0 files lie flat in the eval dir, which --version 1.0 reads)
    assert main(["noveltybench", "--eval-dir", str(run), "--version", "1.0", "--equivalence", "classifier",
                 "--reward-model", "stub-reward-model"]) == 0

    # brute force, by the reference's formulas
    classes, utilities = [], []
    for r in ref:
        classes.append(len(set(r["partition"])))
        seen, num, den = set(), 0.0, 0.0
        for i, (label, rating) in enumerate(zip(r["partition"], ratings[tuple(r["generations"])])):
            num += 0.8 ** i * (0 if label in seen else rating)
            den += 0.8 ** i
            seen.add(label)
        utilities.append(num / den)
        assert abs(num / den - r["utility"]) < 1e-9  # the reference's own per-prompt utility
    mean_distinct, mean_utility = sum(classes) / len(ref), sum(utilities) / len(ref)
    assert abs(mean_distinct - 1.80) < 1e-9  # the figure in the data README

    summary = json.loads((run / "v1.0" / "summary.json").read_text())
    assert summary["num_prompts"] == 50
    assert abs(summary["mean_distinct"] - mean_distinct) < 1e-9
    assert abs(summary["mean_utility"] - mean_utility) < 1e-9
    # the reference summary's own expressions over the reference's stored fields
    assert abs(summary["mean_distinct"] - sum(len(r["partition_scores"]) for r in ref) / len(ref)) < 1e-9
    assert abs(summary["mean_utility"] - sum(r["utility"] for r in ref) / len(ref)) < 1e-9
    ours = [json.loads(line) for line in (run / "v1.0" / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ours] == [r["id"] for r in ref]
    for mine, theirs in zip(ours, ref):
        assert mine["partition"] == theirs["partition"]
        assert mine["generation_scores"] == theirs["generation_scores"]
        assert mine["partition_scores"] == theirs["partition_scores"]
        assert abs(mine["utility"] - theirs["utility"]) < 1e-9


def test_prompt_scores_is_one_prompts_reference_rule():
    """The command's and the lm-eval tasks' one per-prompt rule, against a brute-force recomputation."""
    labels = [0, 0, 1, 2, 1]
    rows = [{"novelty": n, "diversity": d, "degenerate": kind} for n, d, kind in
            ((0.1, 0.5, None), (0.3, 0.7, None), (0.0, 0.0, "empty"), (0.5, 0.9, None), (0.2, 0.4, None))]
    rewards = [-10.0, 3.0, 0.5, 40.0, -1.0]
    out = nb.prompt_scores(labels, rows, rewards, patience=0.5)
    ratings = [1 + sum(t < r for t in nb.REWARD_THRESHOLDS) for r in rewards]
    firsts = [ratings[i] if labels[i] not in labels[:i] else 0 for i in range(5)]
    assert out["num_classes"] == 3 and out["generation_scores"] == firsts
    assert out["partition_scores"] == [ratings[0], ratings[2], ratings[3]]
    weights = [0.5 ** i for i in range(5)]
    assert out["utility"] == pytest.approx(sum(w * s for w, s in zip(weights, firsts)) / sum(weights))
    assert out["novelty"] == pytest.approx((0.1 + 0.3 + 0.5 + 0.2) / 4)  # the empty answer does not count
    assert out["diversity"] == pytest.approx((0.5 + 0.7 + 0.9 + 0.4) / 4)
    assert nb.prompt_scores(labels, rows, None)["utility"] is None
    assert nb.prompt_scores([0], [{"novelty": 0.0, "diversity": 0.0, "degenerate": "empty"}], None)["novelty"] is None
