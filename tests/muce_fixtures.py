"""MuCE rows in the published raw layout, built by hand from facts of the paper's code:
real task and dataset names, CamelCase `Set`, `TaskType`, `Language`, human scores."""

from __future__ import annotations

import json
from pathlib import Path

PAPER_TASK_NAMES = ("Real-Life Creative Problem Solving", "Alternate Uses of Objects Task", "Design Solutions",
                    "Hypothesis Generation", "Metaphors", "Poems", "Sentence Completion")

# (TasksNamesFull, Dataset, Prompt) of held-out rows: at least one per paper task
HELDOUT = [
    ("HeldoutItem", "Alternate Uses of Objects Task", "aut_data", "brick"),
    ("HeldoutItem", "Alternate Uses of Objects Task", "aut_data", "brick"),  # same full prompt: one document
    ("HeldoutTask", "Alternate Uses of Objects Task", "aut_data", "paperclip"),
    ("HeldoutItem", "Real-Life Creative Problem Solving", "AverieThesis2024cpst", "Averie's problem"),  # left out
    ("HeldoutItem", "Real-Life Creative Problem Solving", "other_rlcps", "Your roommate never cleans"),
    ("HeldoutTask", "Real-Life Creative Problem Solving", "WE_kapoor",
     "Your colleague takes credit for your work. Think of as many ethical, legal, and moral, but also original ways "
     "to respond"),
    ("HeldoutItem", "Design Solutions", "Environment_topic_Idea_ratings_unpub_data_M_Baas", "Reducing Plastic Waste"),
    ("HeldoutTask", "Hypothesis Generation", "s1_sctt_goecke_HG", "sleep"),
    ("HeldoutItem", "Metaphors", "DiStefano2024crj_Meta", "a stormy mind"),
    ("HeldoutItem", "Poems", "poems_data", "autumn"),
    ("HeldoutTask", "Sentence Completion", "completion_data", "When I opened the door"),
]
# rows of the training splits: never evaluation documents
TRAINING = [
    ("Training", "Alternate Uses of Objects Task", "aut_data", "shoe"),
    ("Validation", "Alternate Uses of Objects Task", "aut_data", "spoon"),
    ("Test", "Real-Life Creative Problem Solving", "other_rlcps", "Your neighbour is loud"),
    ("Training", "Poems", "poems_data", "spring"),
    ("Validation", "Poems", "poems_data", "winter"),
]
ANSWERS = [("a doorstop for a heavy door", 22.0), ("grind it into red pigment for paint", 38.0),
           ("use it as a pillow for a very tough dog", 31.0), ("hold down papers on a windy day", 25.0)]


def raw_rows() -> list[dict]:
    rows = []
    for set_value, task, dataset, prompt in HELDOUT + TRAINING:
        for response, score in ANSWERS:
            rows.append({"TaskType": "text", "Language": "English", "TasksNamesFull": task, "Dataset": dataset,
                         "Prompt": prompt, "Set": set_value, "Response": response, "facsco_grm_scaled": score,
                         "RatingLabel": "originality", "DatasetsSplit": set_value})
    rows.append({"TaskType": "image", "Language": "English", "TasksNamesFull": "Poems", "Dataset": "img",
                 "Prompt": "a picture", "Set": "HeldoutItem", "Response": "x y", "facsco_grm_scaled": 30.0,
                 "RatingLabel": "originality", "DatasetsSplit": "HeldoutItem"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
