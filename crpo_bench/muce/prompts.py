"""MuCE prompts exactly as the CrPO paper asks them.

A MuCE row holds a test's raw `Prompt` ("brick", a scenario, three words joined by
"-"). The paper turns it into the instruction a model sees in two steps, both facts of
the benchmark that must match character for character:

1. `full_prompt(task, dataset, prompt, language)`: a task-, often dataset-specific
   wording (the paper's `prepare_full_prompt`, src/crpo/data.py). Some datasets' raw
   prompts are rewritten first, two datasets are excluded (None), datasets the paper
   does not know keep their raw prompt, and a non-English row gets a line asking for
   an answer in its language.
2. an evaluation template (`src/crpo/prepare_lm_eval_data.py`): `default` is the full
   prompt; `short_response`, `constrained_response` and `scr` append a length limit.
   The paper ran its CrPO models with `default` and its baselines with `scr`.

Two wordings of the paper are kept as they are, because they are what its models were
trained and evaluated on: Composites never fills in its prompt (the literal text
"{prompt}" is part of the instruction) and Alternate Titles Generation lacks a noun
("an original and creative for").
"""

from __future__ import annotations

from dataclasses import dataclass

# A wording: `text` with {prompt} (the raw prompt), {prompt_lower}, {concepts} (parts
# joined by "_" listed with commas) or {words} (parts joined by "-"); `rewrite` first
# replaces an opening the raw prompt must contain.


@dataclass(frozen=True)
class Wording:
    text: str
    rewrite: tuple[str, str] | None = None


# MuCE writes "English"; "en" and "eng" (other files' spellings) mean the same, not a language to ask for
ENGLISH = {"english", "en", "eng"}
ANY = None  # the wording of a task for datasets without one of their own
RAW = Wording("{prompt}")
EXCLUDED = None  # rows of this dataset have no prompt: the paper leaves them out

_RLCPS = "Come up with an original and creative solution for the following real-world problem:\n{prompt}"
_REVENGE = ("Come up with an original and creative way to react to the following unfair scenario and get back "
            "at or sabotage the wrongdoer:\n{prompt}")
_STORY = ("Come up with an original and creative story which includes the following 3 words, make it around 5 "
          "sentences long: {words}.")
_STORY_DATASETS = ("luchini2024paca_english", "luchini2024paca_multilingual_english", "Apollinariia2024stories",
                   "luchini2024paca_multilingual_arabic", "SWU_short_stroy_Qunlin_Chen",
                   "luchini2024paca_multilingual_chinese", "luchini2024paca_multilingual_dutch",
                   "luchini2024paca_multilingual_french", "luchini2024paca_multilingual_german",
                   "luchini2024paca_multilingual_hebrew", "luchini2024paca_multilingual_italian",
                   "luchini2024paca_multilingual_polish", "luchini2024paca_multilingual_russian",
                   "luchini2024paca_multilingual_spanish")

# TasksNamesFull -> {Dataset (or ANY) -> Wording, or EXCLUDED}. A dataset missing from a
# task without an ANY entry keeps its raw prompt, as in the paper.
WORDINGS: dict[str, dict[str | None, Wording | None]] = {
    "Consequences": {ANY: Wording("Come up with an original and creative consequence for the following "
                                  "scenario:\n{prompt}")},
    "Alternate Uses of Objects Task": {ANY: Wording("Come up with an original and creative use for the following "
                                                    "object: {prompt}")},
    "Design Solutions": {
        "OE_ratings_scored": Wording("{prompt}", rewrite=("Develop as many design ideas as you can",
                                                          "Come up with an original and creative solution")),
        "Rater_Sheets_RL_MASTER": Wording("{prompt}", rewrite=(
            "Please list all of the unusual, creative, and uncommon engineering solutions",
            "Come up with an original and creative solution")),
        "Environment_topic_Idea_ratings_unpub_data_M_Baas": Wording(
            "Come up with an original and creative solution to {prompt_lower}."),
    },
    "Real-Life Creative Problem Solving": {
        "AverieThesis2024cpst": EXCLUDED,
        "averie2024thesis": EXCLUDED,
        **dict.fromkeys(("WE_kapoor", "EE_kapoor"), Wording(_RLCPS, rewrite=(
            "Think of as many ethical, legal, and moral, but also original ways",
            "Think of an ethical, legal, and moral, but also original way"))),
        ANY: Wording(_RLCPS + "."),
    },
    "Metaphors": {
        "DiStefano2024crj_Meta": Wording("Come up with an original and creative metaphor to describe the following "
                                         "concept: {prompt}."),
        "MersealDissertation": Wording("Finish the sentence with an original and creative metaphor: {prompt}."),
        "yuhua2024cogsci_meta": Wording("Come up with an original and creative metaphoric equivalent for the concept "
                                        "described below:\n{prompt}."),
    },
    "Research Questions": {ANY: Wording("Come up with an original and creative scientific research question for the "
                                        "following scenario:\n{prompt}")},
    "Hypothesis Generation": {
        "s1_sctt_goecke_HG": Wording("Come up with an original and creative scientific hypothesis for the following "
                                     "concept:\n{prompt}."),
        ANY: Wording("Come up with an original and creative scientific hypothesis for the following scenario:\n"
                     "{prompt}"),
    },
    "Experiment Design": {
        "s1_sctt_goecke_ED": Wording("Come up with an original and creative experiment about the following concept: "
                                     "{prompt}."),
        ANY: Wording("Come up with an original and creative experiment to test the following hypothesis or research "
                     "question:\n{prompt}."),
    },
    "Malevolent Problems": {
        **dict.fromkeys(("WU_kapoor", "EU_kapoor"), Wording(_REVENGE, rewrite=(
            "Think of as many unethical, illegal, and immoral, but also original ways",
            "Think of an unethical, illegal, and immoral, but also original way"))),
        **dict.fromkeys(("Creativity_Lying_Collated_Final_Ratings_Creativ", "Malevolent_1_fromAgnoliMalevolent2024",
                         "Malevolent_2_fromAgnoliMalevolent2024"), Wording(_REVENGE)),
    },
    "Question Asking": {"AQTCreativity": Wording("Come up with an original and creative question you could ask about "
                                                 "the following object: {prompt}.")},
    "Sentence Completion": {ANY: Wording("Finish the sentence with an original and creative ending: {prompt}.")},
    "Instances of Common Concepts": {"motesf_0_instances": Wording("Come up with an original and creative instance of "
                                                                   "the following concept: {prompt}.")},
    "Analogies": {"s2_sctt_goecke_AN": Wording("Come up with an original and creative analogy to explain the following "
                                               "concept or concepts: {concepts}.")},
    "Stories": dict.fromkeys(_STORY_DATASETS, Wording(_STORY)),
    "Associations": {"s5_data_long": Wording("Come up with an original and creative word that is associated with the "
                                             "following word: {prompt}.")},
    "Essays": dict.fromkeys(("Etown2012", "Etown2011"), Wording(
        "Come up with an original and creative essay describing a project you would like to complete in your field "
        "of study.")),
    "Poems": {ANY: Wording("Come up with an original and creative poem about the following concept: {prompt}.")},
    "Emotions in Everyday Situations": {ANY: Wording(
        "Come up with an original and creative sentence describing the emotions that the following everyday "
        "situation triggers in you: {prompt}.")},
    "Evoking Emotional Responses from People": {ANY: Wording(
        "Come up with an original and creative way to evoke the following emotional reaction in people as a "
        "television show producer: {prompt}.")},
    "Emotional Trials": {ANY: Wording("Come up with an original and creative way to combine three emotional terms "
                                      "that you associate with the following situation: {prompt}.")},
    "Invent Nicknames": {ANY: Wording("Come up with an original and creative nickname for the following thing: "
                                      "{prompt}.")},
    # the paper's wording never fills the prompt in: "{prompt}" is literal text here
    "Composites": {ANY: Wording("Come up with an original and creative compound word that describes the following "
                                "emotion, by using the following emotion as part of the compound word: {{prompt}}.")},
    "Alternate Titles Generation": {ANY: Wording("Come up with an original and creative for the following well-known "
                                                 "book or movie: {prompt}.")},
    "Situation Redescription": {ANY: Wording("Come up with an original and creative way to reevaluate the following "
                                             "situation and see it in a positive light: {prompt}.")},
    "Plot Titles Generation": {ANY: Wording("Come up with an original and creative title for the following passage: "
                                            "{prompt}.")},
    "Combining Objects": {ANY: Wording("Come up with two objects that can be combined in an original and creative way "
                                       "to achieve the following purpose: {prompt}.")},
}


def full_prompt(task: str, dataset: str | None, prompt: str, language: str | None = None) -> str | None:
    """The paper's instruction for one MuCE row, or None for a row it leaves out.

    `task` is the full TasksNamesFull ("Alternate Uses of Objects Task"); a task the
    paper does not know keeps its raw prompt.
    """
    wordings = WORDINGS.get(task, {})
    wording = wordings[dataset] if dataset in wordings else wordings.get(ANY, RAW)
    if wording is EXCLUDED:
        return None
    if wording.rewrite:
        old, new = wording.rewrite
        if old not in prompt:
            raise ValueError(f"MuCE {task!r} / {dataset!r}: the prompt should contain {old!r} (the paper rewrites "
                             f"it), got {prompt[:80]!r}")
        prompt = prompt.replace(old, new)
    text = wording.text.format(prompt=prompt, prompt_lower=prompt.lower(), concepts=", ".join(prompt.split("_")),
                               words=", ".join(prompt.split("-"))).strip()
    if language and language.strip().lower() not in ENGLISH:
        text = f"{text}\nPlease respond in {language.lower().capitalize()}."
    return text.strip()


# --- evaluation templates (src/crpo/prepare_lm_eval_data.py) --------------------------

AUT, RLCPS, DESIGN = "Alternate Uses of Objects Task", "Real-Life Creative Problem Solving", "Design Solutions"
HYPOTHESES, METAPHORS, POEMS = "Hypothesis Generation", "Metaphors", "Poems"


def _limit(sentences: str, words: int) -> str:
    return f"\nPlease limit your response to {sentences} and at most {words} words."


# template -> {TasksNamesFull -> text appended to the full prompt}; other tasks get nothing
LIMITS: dict[str, dict[str, str]] = {
    "default": {},
    "short_response": dict.fromkeys(
        (RLCPS, "Malevolent Problems", AUT, DESIGN, "Consequences", "Instances of Common Concepts",
         "Experiment Design", HYPOTHESES, "Research Questions", "Associations", METAPHORS),
        "\nPlease limit your response to a few sentences."),
    "constrained_response": {
        **dict.fromkeys((RLCPS, "Malevolent Problems", "Stories", "Experiment Design"), _limit("about 5 sentences", 150)),
        **dict.fromkeys((AUT, METAPHORS, "Sentence Completion", "Research Questions", "Question Asking",
                         "Consequences"), _limit("about 1 sentence", 25)),
        **dict.fromkeys((DESIGN, HYPOTHESES, "Associations", "Instances of Common Concepts"),
                        _limit("about 3 sentences", 50)),
        **dict.fromkeys(("Essays", POEMS), _limit("about 20 sentences", 500)),
    },
    # the paper's medians of sentences and words of its CrPO models' answers, per task
    "scr": {RLCPS: _limit("4 sentences", 75), AUT: _limit("1 sentence", 17), DESIGN: _limit("2 sentences", 36),
            HYPOTHESES: _limit("1 sentence", 22), METAPHORS: _limit("1 sentence", 10),
            POEMS: _limit("5 sentences", 150), "Associations": _limit("1 sentence", 10)},
}
TEMPLATES = tuple(LIMITS)


def user_prompt(task: str, full: str, template: str = "default") -> str:
    """The user turn of an evaluation document: the full prompt under `template`."""
    if template not in LIMITS:
        raise ValueError(f"MuCE template {template!r}: choose one of {', '.join(TEMPLATES)}")
    return (full + LIMITS[template].get(task, "")).strip()
