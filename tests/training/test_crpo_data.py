"""CrPO data steps: preference pairs from rated answers, and per-prompt normalised scores."""

from __future__ import annotations

import json

import pytest

import brute_force as bf
from crpo_bench import muce
from crpo_bench.scoring import Scorer, ScoringConfig
from crpo_bench.training.cli import main as crpo_train
from crpo_bench.training.pairs import PairSettings, build_pairs, match_in_order, match_widest
from crpo_bench.training.scores import score_pairs
from crpo_bench.training.weights import crpo_weight


def row(split, answer, score, item="brick", task="Alternate Uses of Objects Task", language="English"):
    return {"split": split, "TasksNamesFull": task, "Prompt": item, "Response": answer,
            "facsco_grm_scaled": score, "Language": language}


def test_match_pairs_hand_worked():
    """min 20, diff 5, at most 2 pairs per answer; widest gaps first, ties in data order.
    Candidates by gap: AD 18, FD 18, BD 13, AC 10, FC 10, CD 8, AB 5, FB 5, BC 5 ->
    AD, FD (D full), AC, FC (A, C, F full); B finds no partner left. E is below 20."""
    answers = [("A", 40), ("B", 35), ("C", 30), ("D", 22), ("E", 18), ("F", 40)]
    pairs = match_widest(answers, PairSettings(min_score=20, min_score_diff=5, max_matching=2))
    assert [(answers[c][0], answers[r][0]) for c, r in pairs] == [("A", "D"), ("F", "D"), ("A", "C"), ("F", "C")]


def test_match_pairs_properties_against_brute_force():
    answers = [(f"a{i}", s) for i, s in enumerate([10, 45, 21, 33, 33, 29, 50, 26, 38, 20, 41])]
    settings = PairSettings(min_score=20, min_score_diff=6, max_matching=3)
    pairs = match_widest(answers, settings)
    allowed = {(c, r) for c in range(len(answers)) for r in range(len(answers))
               if answers[c][1] >= 20 and answers[r][1] >= 20 and answers[c][1] - answers[r][1] >= 6}
    assert set(pairs) <= allowed and len(set(pairs)) == len(pairs)
    uses = [sum(i in p for p in pairs) for i in range(len(answers))]
    assert max(uses) <= 3
    # maximal: every allowed pair left out has an answer that is already full
    assert all(uses[c] == 3 or uses[r] == 3 for c, r in allowed - set(pairs))


def test_build_pairs_splits_groups_duplicates_and_language():
    rows = [row("train", "doorstop", 40), row("train", "doorstop", 30),  # duplicate: mean 35
            row("train", "paperweight", 22), row("train", "tiny house for a mouse", 45),
            row("train", "Türstopper", 50, language="deu"),  # not English: left out
            row("val", "bookend", 40), row("val", "hold a door", 25),
            row("train", "a lantern", 44, item="bottle"), row("train", "water", 21, item="bottle")]
    splits = build_pairs(rows, PairSettings(min_score=20, min_score_diff=5, max_matching=10))
    assert set(splits) == {"train", "val"}
    train = {(p["item"], p["chosen"][0]["content"], p["rejected"][0]["content"]): (p["score_chosen"],
                                                                               p["score_rejected"])
             for p in splits["train"]}
    assert train == {("brick", "tiny house for a mouse", "paperweight"): (45, 22),
                     ("brick", "tiny house for a mouse", "doorstop"): (45, 35),
                     ("brick", "doorstop", "paperweight"): (35, 22),
                     ("bottle", "a lantern", "water"): (44, 21)}
    (val,) = splits["val"]
    assert val["prompt"] == [{"role": "user", "content": "Come up with an original and creative use for the "
                                                         "following object: brick"}]
    assert val["chosen"] == [{"role": "assistant", "content": "bookend"}] and val["task"] == "aut"
    assert build_pairs(rows, PairSettings(), max_prompts=1)["train"][0]["item"] == "bottle"  # sorted, whole


def test_paper_matching_is_greedy_in_data_order_with_repeats_kept():
    """The paper's prepare_preference_data: pairs (i, j), i < j, in data order, each answer
    in at most max_matching pairs, repeated answers separate. Hand-worked with max 2:
    (0,1) gap 5; (0,2) gap 15 -> 0 full; (0,3) gap 0; (1,2) gap 20 -> 1 and 2 full; (3,4) gap 18;
    E is below 20."""
    answers = [("A", 30.0), ("B", 25.0), ("C", 45.0), ("A", 30.0), ("D", 48.0), ("E", 15.0)]
    pairs = match_in_order(answers, PairSettings(min_score=20, min_score_diff=5, max_matching=2, matching="paper"))
    assert pairs == [(0, 1), (2, 0), (2, 1), (4, 3)]
    rows = [row("train", a, s) for a, s in answers]
    built = build_pairs(rows, PairSettings(max_matching=2, matching="paper"))["train"]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in built] == [
        ("A", "B"), ("C", "A"), ("C", "B"), ("D", "A")]
    with pytest.raises(ValueError, match="matching 'best'"):
        PairSettings(matching="best")


def pair(prompt, chosen, rejected, item=None):
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "item": item or prompt, "task": "aut"}


@pytest.fixture
def scorer(embedder, isolated_cache):
    return Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)


def test_scores_are_min_max_within_each_prompt(scorer, embedder):
    brick = ["a doorstop that hums at night", "grind it into red paint for a mural",
             "a pillow for a very stubborn giant"]
    pairs = {"train": [pair("brick?", brick[0], "a brick"), pair("brick?", brick[1], "build"),
                       pair("brick?", brick[2], "wall"), pair("brick?", brick[0], "house"),  # repeated chosen
                       pair("brick?", "!!", "stone"),  # degenerate chosen
                       pair("bottle?", "a lantern full of fireflies", "water")],  # a single chosen answer
             "val": [pair("brick?", brick[0], "wall")]}  # another split: its own corpus of one
    scored = score_pairs(pairs, scorer, ("novelty", "diversity"))

    vectors = [embedder.encode([t])[0] for t in brick]
    diversity = [bf.mean_distance_to_others(vectors, k) for k in range(3)]
    word_vec = {w: embedder.encode([w])[0] for t in brick for w in bf.words(t)}
    corpus_dsi = bf.dsi([word_vec[w] for w in bf.words(" ".join(brick))])
    novelty = [2 * abs(bf.dsi([word_vec[w] for w in bf.words(t)]) - corpus_dsi) for t in brick]
    for raw, dim in ((novelty, "novelty"), (diversity, "diversity")):
        low, high = min(raw), max(raw)
        want = [(v - low) / (high - low) for v in raw]
        got = [p[f"{dim}_chosen"] for p in scored["train"][:3]]
        assert got == pytest.approx(want, abs=1e-5), dim
        assert scored["train"][3][f"{dim}_chosen"] == got[0]  # same answer, same score
        assert scored["train"][4][f"{dim}_chosen"] == 0.0  # degenerate: lowest
        assert scored["train"][5][f"{dim}_chosen"] == 0.5  # one answer: the no-spread rule
        assert scored["val"][0][f"{dim}_chosen"] == 0.5
    assert "novelty_rejected" not in scored["train"][0]
    degenerate = scored["train"][4]
    assert crpo_weight({"novelty": degenerate["novelty_chosen"]}, {}, {"novelty": 1.0}) == 0.0


def test_score_rejected_puts_both_sides_in_the_corpus(scorer, embedder):
    pairs = {"train": [pair("brick?", "a doorstop that hums at night", "a plain brick wall"),
                       pair("brick?", "grind it into red paint", "build a house")]}
    scored = score_pairs(pairs, scorer, ("diversity",), score_rejected=True)
    texts = ["a doorstop that hums at night", "a plain brick wall", "grind it into red paint", "build a house"]
    vectors = [embedder.encode([t])[0] for t in texts]
    raw = [bf.mean_distance_to_others(vectors, k) for k in range(4)]
    want = [(v - min(raw)) / (max(raw) - min(raw)) for v in raw]
    got = [scored["train"][0]["diversity_chosen"], scored["train"][0]["diversity_rejected"],
           scored["train"][1]["diversity_chosen"], scored["train"][1]["diversity_rejected"]]
    assert got == pytest.approx(want, abs=1e-5)


def test_pairs_command_errors_name_the_problem(tmp_path, capsys):
    assert crpo_train(["pairs", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "DT Uses Prompt:brick\nResponse:wall\nScore:\n", "completion": "30"})
                   + "\n{not json\n")
    assert crpo_train(["pairs", "--data", f"train={bad}", "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert crpo_train(["no_such_recipe"]) == 2
    assert "neither a file nor a packaged recipe" in capsys.readouterr().err


def test_lambda_originality_from_the_score_step_to_the_weight(scorer, tmp_path):
    """The learned originality scorer is one more CrPO dimension: scored per prompt, weighted in training."""
    import datasets

    from crpo_bench.training import CrPOConfig
    from crpo_bench.training.trainer import WEIGHT, add_weights

    pairs = {"train": [pair("brick?", "grind it into red pigment for a cave painting", "wall", item="brick"),
                       pair("brick?", "build a wall", "house", item="brick"),
                       pair("brick?", "a doorstop", "stone", item="brick")]}
    scored = score_pairs(pairs, scorer, ("originality",))["train"]
    raw = scorer.score([p["chosen"][0]["content"] for p in pairs["train"]], items=["brick"] * 3, tasks=["aut"] * 3,
                       metrics=["originality"]).rows
    values = [r["originality"] for r in raw]
    want = [(v - min(values)) / (max(values) - min(values)) for v in values]
    assert [p["originality_chosen"] for p in scored] == pytest.approx(want, abs=1e-9)
    config = CrPOConfig(output_dir=str(tmp_path), lambda_originality=2.0, bf16=False, use_cpu=True)
    weighted = add_weights(datasets.Dataset.from_list(scored), config)
    assert weighted[WEIGHT] == pytest.approx([2.0 * w for w in want])


def _muce_line(response="a doorstop", score=30, **extra):
    row = {"TasksNamesFull": "Alternate Uses of Objects Task", "Prompt": "brick", "Set": "Training",
           "Response": response, "facsco_grm_scaled": score, **extra}
    return json.dumps(row)


@pytest.mark.parametrize("lines, message", [
    # a missing Response column: named, not a KeyError traceback
    (['{"TasksNamesFull": "Poems", "Prompt": "rain", "Set": "Training", "facsco_grm_scaled": 30}'],
     "{path}:1: missing column 'Response'"),
    # a bad JSON line: its file and its real line number (blank lines count)
    ([_muce_line(), "", _muce_line("paperweight", 22), "{not json"], "{path}:4: malformed JSON"),
    # a score that is not a number: an error, not half the pairs dropped with exit 0
    ([_muce_line(), _muce_line("paperweight", "high")], "{path}:2: facsco_grm_scaled: not a number: 'high'"),
    # Infinity is not a score
    ([_muce_line(), _muce_line("paperweight", "Infinity")], "{path}:2: facsco_grm_scaled: not a finite number"),
])
def test_pairs_input_errors_name_file_line_and_field(tmp_path, capsys, lines, message):
    path = tmp_path / "muce.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert crpo_train(["pairs", "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message.format(path=path) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unrated_rows_are_left_out_and_counted(tmp_path, capsys):
    path = tmp_path / "muce.jsonl"
    path.write_text("\n".join([_muce_line("a doorstop", 40), _muce_line("paperweight", 22),
                               _muce_line("unrated", None), _muce_line("blank", "")]) + "\n")
    assert crpo_train(["pairs", "--data", str(path), "--out", str(tmp_path / "o")]) == 0
    assert "2 row(s) without a score (facsco_grm_scaled) left out as unrated" in capsys.readouterr().err


def test_bad_bytes_are_named_by_their_own_line_after_blank_lines(tmp_path, capsys):
    path = tmp_path / "muce.jsonl"
    path.write_bytes(_muce_line().encode() + b"\n\n\n" + b'{"Prompt": "\xff"}\n')
    assert crpo_train(["pairs", "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert f"{path}:4: not UTF-8" in capsys.readouterr().err
