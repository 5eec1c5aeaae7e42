"""MuCE as the paper published and asked it: layouts, task names, full prompts, templates,
held-out documents. Expected prompts are written out by hand from the paper's
`prepare_full_prompt` (src/crpo/data.py) and `prepare_lm_eval_data.py`."""

from __future__ import annotations

import json

import pytest

from crpo_bench import lmeval, muce
from crpo_bench.muce.prompts import LIMITS, full_prompt, user_prompt

from muce_fixtures import PAPER_TASK_NAMES, raw_rows, write_jsonl

R = "Real-Life Creative Problem Solving"
KAPOOR_E = ("Your colleague takes credit for your work. Think of as many ethical, legal, and moral, but also original "
            "ways to respond")
KAPOOR_U = ("Your colleague takes credit for your work. Think of as many unethical, illegal, and immoral, but also "
            "original ways to get back at them")

# (TasksNamesFull, Dataset, Prompt) -> the paper's full prompt (None: the row is left out)
BRANCHES = [
    ("Consequences", "any", "What if people no longer needed sleep?",
     "Come up with an original and creative consequence for the following scenario:\nWhat if people no longer needed sleep?"),
    ("Alternate Uses of Objects Task", "any", "brick",
     "Come up with an original and creative use for the following object: brick"),
    ("Design Solutions", "OE_ratings_scored", "Develop as many design ideas as you can for a better umbrella.",
     "Come up with an original and creative solution for a better umbrella."),
    ("Design Solutions", "Rater_Sheets_RL_MASTER",
     "Please list all of the unusual, creative, and uncommon engineering solutions to keep a house cool.",
     "Come up with an original and creative solution to keep a house cool."),
    ("Design Solutions", "Environment_topic_Idea_ratings_unpub_data_M_Baas", "Reducing Plastic Waste",
     "Come up with an original and creative solution to reducing plastic waste."),
    ("Design Solutions", "other", "Design a chair.", "Design a chair."),
    (R, "AverieThesis2024cpst", "A problem.", None),
    (R, "averie2024thesis", "A problem.", None),
    (R, "WE_kapoor", KAPOOR_E,
     "Come up with an original and creative solution for the following real-world problem:\nYour colleague takes "
     "credit for your work. Think of an ethical, legal, and moral, but also original way to respond"),
    (R, "EE_kapoor", KAPOOR_E,
     "Come up with an original and creative solution for the following real-world problem:\nYour colleague takes "
     "credit for your work. Think of an ethical, legal, and moral, but also original way to respond"),
    (R, "other", "Your roommate never cleans",
     "Come up with an original and creative solution for the following real-world problem:\nYour roommate never cleans."),
    ("Metaphors", "DiStefano2024crj_Meta", "a stormy mind",
     "Come up with an original and creative metaphor to describe the following concept: a stormy mind."),
    ("Metaphors", "MersealDissertation", "Her voice was",
     "Finish the sentence with an original and creative metaphor: Her voice was."),
    ("Metaphors", "yuhua2024cogsci_meta", "a very boring lecture",
     "Come up with an original and creative metaphoric equivalent for the concept described below:\na very boring lecture."),
    ("Metaphors", "other", "Time is", "Time is"),
    ("Research Questions", "any", "Bees are disappearing.",
     "Come up with an original and creative scientific research question for the following scenario:\nBees are disappearing."),
    ("Hypothesis Generation", "s1_sctt_goecke_HG", "sleep",
     "Come up with an original and creative scientific hypothesis for the following concept:\nsleep."),
    ("Hypothesis Generation", "other", "Plants grow faster near music.",
     "Come up with an original and creative scientific hypothesis for the following scenario:\nPlants grow faster near music."),
    ("Experiment Design", "s1_sctt_goecke_ED", "memory",
     "Come up with an original and creative experiment about the following concept: memory."),
    ("Experiment Design", "other", "Does music help memory?",
     "Come up with an original and creative experiment to test the following hypothesis or research question:\n"
     "Does music help memory?."),
    ("Malevolent Problems", "WU_kapoor", KAPOOR_U,
     "Come up with an original and creative way to react to the following unfair scenario and get back at or sabotage "
     "the wrongdoer:\nYour colleague takes credit for your work. Think of an unethical, illegal, and immoral, but also "
     "original way to get back at them"),
    ("Malevolent Problems", "EU_kapoor", KAPOOR_U,
     "Come up with an original and creative way to react to the following unfair scenario and get back at or sabotage "
     "the wrongdoer:\nYour colleague takes credit for your work. Think of an unethical, illegal, and immoral, but also "
     "original way to get back at them"),
    *[("Malevolent Problems", d, "A neighbour steals your parcel.",
       "Come up with an original and creative way to react to the following unfair scenario and get back at or "
       "sabotage the wrongdoer:\nA neighbour steals your parcel.")
      for d in ("Creativity_Lying_Collated_Final_Ratings_Creativ", "Malevolent_1_fromAgnoliMalevolent2024",
                "Malevolent_2_fromAgnoliMalevolent2024")],
    ("Malevolent Problems", "other", "Get revenge.", "Get revenge."),
    ("Question Asking", "AQTCreativity", "a lamp",
     "Come up with an original and creative question you could ask about the following object: a lamp."),
    ("Question Asking", "other", "Ask about a lamp", "Ask about a lamp"),
    ("Sentence Completion", "any", "When I opened the door",
     "Finish the sentence with an original and creative ending: When I opened the door."),
    ("Instances of Common Concepts", "motesf_0_instances", "things that are round",
     "Come up with an original and creative instance of the following concept: things that are round."),
    ("Instances of Common Concepts", "other", "round things", "round things"),
    ("Analogies", "s2_sctt_goecke_AN", "heart_pump",
     "Come up with an original and creative analogy to explain the following concept or concepts: heart, pump."),
    ("Analogies", "other", "heart_pump", "heart_pump"),
    *[("Stories", d, "stamp-letter-send",
       "Come up with an original and creative story which includes the following 3 words, make it around 5 sentences "
       "long: stamp, letter, send.")
      for d in ("luchini2024paca_english", "luchini2024paca_multilingual_english", "Apollinariia2024stories",
                "luchini2024paca_multilingual_arabic", "SWU_short_stroy_Qunlin_Chen",
                "luchini2024paca_multilingual_chinese", "luchini2024paca_multilingual_dutch",
                "luchini2024paca_multilingual_french", "luchini2024paca_multilingual_german",
                "luchini2024paca_multilingual_hebrew", "luchini2024paca_multilingual_italian",
                "luchini2024paca_multilingual_polish", "luchini2024paca_multilingual_russian",
                "luchini2024paca_multilingual_spanish")],
    ("Stories", "other", "stamp-letter-send", "stamp-letter-send"),
    ("Associations", "s5_data_long", "candle",
     "Come up with an original and creative word that is associated with the following word: candle."),
    ("Associations", "other", "candle", "candle"),
    ("Essays", "Etown2012", "ignored",
     "Come up with an original and creative essay describing a project you would like to complete in your field of "
     "study."),
    ("Essays", "Etown2011", "ignored",
     "Come up with an original and creative essay describing a project you would like to complete in your field of "
     "study."),
    ("Essays", "other", "Write about a project.", "Write about a project."),
    ("Poems", "any", "autumn", "Come up with an original and creative poem about the following concept: autumn."),
    ("Emotions in Everyday Situations", "any", "missing the bus",
     "Come up with an original and creative sentence describing the emotions that the following everyday situation "
     "triggers in you: missing the bus."),
    ("Evoking Emotional Responses from People", "any", "awe",
     "Come up with an original and creative way to evoke the following emotional reaction in people as a television "
     "show producer: awe."),
    ("Emotional Trials", "any", "a wedding",
     "Come up with an original and creative way to combine three emotional terms that you associate with the "
     "following situation: a wedding."),
    ("Invent Nicknames", "any", "a cat", "Come up with an original and creative nickname for the following thing: a cat."),
    ("Composites", "any", "joy",
     "Come up with an original and creative compound word that describes the following emotion, by using the "
     "following emotion as part of the compound word: {prompt}."),
    ("Alternate Titles Generation", "any", "Jaws",
     "Come up with an original and creative for the following well-known book or movie: Jaws."),
    ("Situation Redescription", "any", "losing a job",
     "Come up with an original and creative way to reevaluate the following situation and see it in a positive "
     "light: losing a job."),
    ("Plot Titles Generation", "any", "A boy finds a dragon.",
     "Come up with an original and creative title for the following passage: A boy finds a dragon.."),
    ("Combining Objects", "any", "to cross a river",
     "Come up with two objects that can be combined in an original and creative way to achieve the following "
     "purpose: to cross a river."),
]


@pytest.mark.parametrize("task, dataset, prompt, expected", BRANCHES)
def test_full_prompt_is_the_papers(task, dataset, prompt, expected):
    assert full_prompt(task, dataset, prompt, "English") == expected
    assert muce.row_full_prompt({"TasksNamesFull": task, "Dataset": dataset, "Prompt": prompt,
                                 "Language": "English"}) == expected


def test_every_paper_task_and_branch_is_covered():
    assert {b[0] for b in BRANCHES} == set(muce.TASKS) and len(muce.TASKS) == 26


def test_non_english_rows_ask_for_their_language():
    assert full_prompt("Poems", "x", "Herbst", "GERMAN") == (
        "Come up with an original and creative poem about the following concept: Herbst.\nPlease respond in German.")
    assert full_prompt("Essays", "other", "Schreibe.", "german") == "Schreibe.\nPlease respond in German."


def test_rewrite_that_does_not_apply_names_the_dataset():
    with pytest.raises(ValueError, match="WE_kapoor.*Think of as many ethical"):
        full_prompt(R, "WE_kapoor", "Some other wording", "English")


def test_a_row_with_full_prompt_keeps_it():
    row = {"TasksNamesFull": "Poems", "Dataset": "x", "Prompt": "rain", "FullPrompt": "Given."}
    assert muce.row_full_prompt(row) == "Given."


@pytest.mark.parametrize("template, task, expected_suffix", [
    ("default", "Poems", ""),
    ("short_response", "Alternate Uses of Objects Task", "\nPlease limit your response to a few sentences."),
    ("short_response", "Poems", ""),
    ("constrained_response", "Stories", "\nPlease limit your response to about 5 sentences and at most 150 words."),
    ("constrained_response", "Question Asking", "\nPlease limit your response to about 1 sentence and at most 25 words."),
    ("constrained_response", "Instances of Common Concepts",
     "\nPlease limit your response to about 3 sentences and at most 50 words."),
    ("constrained_response", "Essays", "\nPlease limit your response to about 20 sentences and at most 500 words."),
    ("scr", R, "\nPlease limit your response to 4 sentences and at most 75 words."),
    ("scr", "Alternate Uses of Objects Task", "\nPlease limit your response to 1 sentence and at most 17 words."),
    ("scr", "Design Solutions", "\nPlease limit your response to 2 sentences and at most 36 words."),
    ("scr", "Hypothesis Generation", "\nPlease limit your response to 1 sentence and at most 22 words."),
    ("scr", "Metaphors", "\nPlease limit your response to 1 sentence and at most 10 words."),
    ("scr", "Poems", "\nPlease limit your response to 5 sentences and at most 150 words."),
    ("scr", "Associations", "\nPlease limit your response to 1 sentence and at most 10 words."),
    ("scr", "Sentence Completion", ""),
])
def test_evaluation_templates(template, task, expected_suffix):
    assert user_prompt(task, "FULL", template) == "FULL" + expected_suffix
    assert set(LIMITS) == {"default", "short_response", "constrained_response", "scr"}


def test_unknown_template_and_task_list_the_known_ones():
    with pytest.raises(ValueError, match="default, short_response, constrained_response, scr"):
        user_prompt("Poems", "x", "fancy")
    with pytest.raises(ValueError, match="unknown MuCE task 'Humour'.*Alternate Uses of Objects Task.*Combining Objects"):
        muce.task_slug("Humour")


def test_every_task_name_and_old_spelling_reaches_a_task():
    for name, slug in muce.TASKS.items():
        assert muce.task_slug(name) == slug and muce.task_name(slug) == name
    for old, slug in {"Alternate Uses": "aut", "Instances": "instances", "alternate_uses_of_objects_task": "aut",
                      "instances_of_common_concepts": "instances", "Real-Life Creative Problem Solving": "rlcps"}.items():
        assert muce.task_slug(old) == slug


@pytest.mark.parametrize("value, split", [("Training", "train"), ("Validation", "val"), ("Test", "test"),
                                          ("HeldoutItem", "heldout_item"), ("HeldoutTask", "heldout_task"),
                                          ("HeldoutLanguage", "heldout_language"), ("heldout_item", "heldout_item")])
def test_set_values_of_both_layouts(value, split):
    assert muce.split_of(value) == split


def test_unknown_set_value_is_an_error_naming_the_row(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"TasksNamesFull": "Poems", "Prompt": "x", "Set": "Holdout"}])
    with pytest.raises(ValueError, match=r"m.jsonl:1: unknown MuCE Set 'Holdout'.*HeldoutItem"):
        muce.read_table(path)


def _layouts(tmp_path):
    """The same hand-built rows in the raw file layout, a processed per-split folder, and a
    saved processed DatasetDict."""
    import datasets

    rows = raw_rows()
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    folder = tmp_path / "processed_files"
    folder.mkdir()
    by_split = {}
    for r in rows:
        by_split.setdefault(muce.split_of(r["Set"]), []).append({k: v for k, v in r.items() if k != "Set"})
    for split, part in by_split.items():
        write_jsonl(folder / f"{split}.jsonl", part)
    saved = tmp_path / "processed_dict"
    datasets.DatasetDict({s: datasets.Dataset.from_list([{**r, "Set": {v: k for k, v in muce.SET_TO_SPLIT.items()}[s]}
                                                         for r in part]) for s, part in by_split.items()}
                         ).save_to_disk(str(saved))
    return rows, {"raw": raw, "processed_files": folder, "processed_dict": saved}


def test_every_layout_reads_the_same_rows_and_splits(tmp_path):
    rows, layouts = _layouts(tmp_path)
    expected = sorted((muce.split_of(r["Set"]), r["TasksNamesFull"], r["Prompt"], r["Response"]) for r in rows
                      if r["TaskType"] == "text")
    for name, path in layouts.items():
        got = sorted((r["split"], r["TasksNamesFull"], r["Prompt"], r["Response"]) for r in muce.read_table(path))
        assert got == expected, name
    assert any(r["TaskType"] == "image" for r in rows)  # the fixture has an image row, and it is dropped


def test_heldout_documents_are_the_papers(tmp_path):
    rows = muce.read_table(write_jsonl(tmp_path / "raw.jsonl", raw_rows()))
    docs = lmeval.heldout_documents(rows, "rlcps")
    # Averie rows give nothing; training/validation/test rows never become documents; one
    # document per distinct full prompt, heldout_item before heldout_task
    assert [(d["split"], d["dataset"]) for d in docs] == [("heldout_item", "other_rlcps"),
                                                          ("heldout_task", "WE_kapoor")]
    assert docs[1]["prompt"] == (
        "Come up with an original and creative solution for the following real-world problem:\nYour colleague takes "
        "credit for your work. Think of an ethical, legal, and moral, but also original way to respond")
    train_prompts = {muce.row_full_prompt(r) for r in rows if r["split"] in ("train", "val", "test")}
    for task in muce.PAPER_TASKS:
        for doc in lmeval.heldout_documents(rows, task):
            assert doc["split"] in muce.HELDOUT_SPLITS and doc["full_prompt"] not in train_prompts
    aut = lmeval.heldout_documents(rows, "aut", template="scr", prompts_per_task=1)
    assert [d["prompt"] for d in aut] == ["Come up with an original and creative use for the following object: "
                                          "brick\nPlease limit your response to 1 sentence and at most 17 words."]
