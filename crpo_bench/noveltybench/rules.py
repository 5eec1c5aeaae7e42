"""NoveltyBench: equivalence classes of a prompt's generations, and patience-discounted utility.

For each prompt, k generations are partitioned greedily in order: a generation joins the
class of the first earlier class whose first member it is equivalent to, else it starts
a new class (the reference's loop; the surrogate backend brings its own, below).
`distinct` is the number of classes. A backend decides equivalence:
- `classifier`: the reference similarity classifier (P(class 1) > 0.102);
- `unigram`: ROUGE-1 F1 > 0.458;
- `surrogate` (ours, the offline default): trees that predict the reference's decisions
  from cheap comparisons of the two texts (crpo_bench/noveltybench/surrogate.py); it
  partitions by its own loop, a generation joining the class it matches best on average
  over all members rather than the first member only;
- `embedding` (ours): cosine similarity of the offline MiniLM embeddings above a
  threshold calibrated on the reference classifier's partitions (see EMBEDDING_THRESHOLD).
`classifier`, `embedding` and `surrogate` first apply the short-text rule (two texts of at
most 5 whitespace unigrams each are equivalent when they share at least half of the longer
one's words); `unigram` does not, as in the reference. NoveltyBench's code has applied the
rule since 2025-03-19 (its commit 1339e15); partitions made before it (Gemini-1.5-pro's
published ones: 72 of its 327 short-text verdicts contradict the rule) were not, and
`made_with_short_rule` tells the two apart from a partition file alone.
`llm` (NoveltyBench v1.1's partition, our prompt): a chat model sees all of a prompt's
generations at once and returns their groups (LlmJudge); it is no pairwise backend, so
make_equivalence (noveltybench/backends.py) does not build it.
Utility: a reward model's score, mapped to a 1-10 rating by the reference thresholds,
counts only for the first member of each class, weighted by patience^i and normalised.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

CLASSIFIER_ID = "yimingzhang/deberta-v3-large-generation-similarity"
CLASSIFIER_THRESHOLD = 0.102
UNIGRAM_THRESHOLD = 0.458
# Calibrated on ../shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl (50 prompts
# partitioned by the reference classifier, mean 1.80 classes), with the short-text rule applied
# first as for the classifier: at 0.68 MiniLM gives 1.84 classes
# and a mean adjusted Rand index of 0.546 against the reference partitions, within 0.005 of the
# best of the sweep (ARI is flat at 0.52-0.55 from 0.56 to 0.80, so the class count decides).
# benchmarks/calibrate_noveltybench.py prints the sweep.
EMBEDDING_THRESHOLD = 0.68
REWARD_THRESHOLDS = [-7.71875, -6.28125, -6.0, -5.71875, -5.5, -5.0, -4.375, -3.4375, -2.046875]
PATIENCE = 0.8
SHORT_WORDS = 5  # the short-text rule's limit
BACKENDS = ("classifier", "unigram", "embedding", "surrogate")  # pairwise: make_equivalence builds them
# and `llm`, which partitions a whole prompt's generations in one judge call (LlmJudge, below)
PARTITION_BACKENDS = (*BACKENDS, "llm")

Equivalence = Callable[[str, str], bool]


def short_texts_equivalent(a: str, b: str) -> bool | None:
    """The short-text rule: None when either text has more than SHORT_WORDS whitespace unigrams."""
    words_a, words_b = a.split(), b.split()
    if len(words_a) > SHORT_WORDS or len(words_b) > SHORT_WORDS:
        return None
    common = len(set(w.lower() for w in words_a) & set(w.lower() for w in words_b))
    return 2 * common >= max(len(words_a), len(words_b))


def reference_verdicts(reference: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first member, generation, same 0/1) for every comparison the reference's greedy loop
    (`partition`) made to arrive at `reference` (classes numbered in order of appearance):
    "different" for each earlier class's first member a generation passed, "same" for the one
    it joined. Two later members of one class were never compared, so they give no verdict."""
    firsts: list[int] = []
    found = []
    for j, label in enumerate(reference):
        for k, first in enumerate(firsts):
            found.append((first, j, int(k == label)))
            if k == label:
                break
        if label == len(firsts):
            firsts.append(j)
    return found


def short_rule_agreement(generations: Sequence[str], reference: Sequence[int]) -> tuple[int, int]:
    """(agreeing, compared): of the reference's verdicts on two short texts, how many the
    short-text rule would have given."""
    agreeing = compared = 0
    for a, b, same in reference_verdicts(reference):
        rule = short_texts_equivalent(generations[a], generations[b])
        if rule is not None:
            compared += 1
            agreeing += int(rule) == same
    return agreeing, compared


def short_rule_counts(rows: Sequence[tuple[Sequence[str], Sequence[int]]]) -> tuple[int, int]:
    """short_rule_agreement summed over prompts ((generations, partition) each)."""
    agreeing = compared = 0
    for generations, reference in rows:
        a, c = short_rule_agreement(generations, reference)
        agreeing, compared = agreeing + a, compared + c
    return agreeing, compared


def made_with_short_rule(rows: Sequence[tuple[Sequence[str], Sequence[int]]]) -> bool | None:
    """Whether partitions ((generations, partition) per prompt, classes in order of appearance)
    were made by a reference that applies the short-text rule: True when every verdict on two
    short texts follows the rule, False when one does not, None when there is none. The rule
    is exact, so a file made with it never contradicts it."""
    agreeing, compared = short_rule_counts(rows)
    return None if compared == 0 else agreeing == compared


def short_rule_then(backend: Equivalence) -> Equivalence:
    """`backend`, consulted only when the short-text rule is undecided."""
    if hasattr(backend, "partition"):  # the wrapper would hide it, and partition() fall back to our loop
        raise TypeError("short_rule_then: this backend partitions by its own loop; give it the rule instead")
    def equivalent(a: str, b: str) -> bool:
        rule = short_texts_equivalent(a, b)
        return rule if rule is not None else backend(a, b)

    return equivalent


def partition(generations: Sequence[str], equivalent: Equivalence) -> list[int]:
    """Class index of each generation, classes numbered in order of appearance. The
    short-text rule, where it applies, belongs to `equivalent` (see the backends). A backend
    with its own `partition` method (the surrogate) decides the whole partition."""
    if hasattr(equivalent, "partition"):
        return equivalent.partition(generations)
    representatives: list[str] = []
    labels = []
    for text in generations:
        for k, first in enumerate(representatives):
            if equivalent(first, text):
                labels.append(k)
                break
        else:
            labels.append(len(representatives))
            representatives.append(text)
    return labels


# --- equivalence backends ----------------------------------------------------------------


def rouge1_f(a: str, b: str) -> float:
    """ROUGE-1 F1 over lowercased alphanumeric tokens (clipped unigram overlap)."""
    ta, tb = Counter(re.findall(r"[a-z0-9]+", a.lower())), Counter(re.findall(r"[a-z0-9]+", b.lower()))
    overlap = sum((ta & tb).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(tb.values()), overlap / sum(ta.values())
    return 2 * precision * recall / (precision + recall)


def unigram_equivalence(threshold: float = UNIGRAM_THRESHOLD) -> Equivalence:
    # No short-text rule: the reference's unigram backend compares ROUGE-1 only.
    return lambda a, b: rouge1_f(a, b) > threshold


def embedding_equivalence(vectors: dict[str, np.ndarray], threshold: float = EMBEDDING_THRESHOLD) -> Equivalence:
    """`vectors`: unit embeddings of every generation (embedded once, in batches, beforehand).
    The short-text rule comes first, as in the classifier backend: EMBEDDING_THRESHOLD was
    calibrated with it, as a stand-in for the classifier."""
    return short_rule_then(lambda a, b: float(vectors[a] @ vectors[b]) > threshold)


class ClassifierEquivalence:
    """The reference classifier: [CLS] a [SEP] b [SEP], each side cut to 128 tokens,
    token types 0 then 1; equivalent when P(class 1) > 0.102, unless the short-text rule
    decides first."""

    def __init__(self, name: str = CLASSIFIER_ID, threshold: float = CLASSIFIER_THRESHOLD):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..models import ModelLoadError

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        except Exception as err:
            raise ModelLoadError(
                f"cannot load the equivalence classifier {name!r} ({type(err).__name__}); pass a local folder "
                "with --classifier, or use --equivalence surrogate|embedding|unigram offline") from err
        self.threshold = threshold

    def probability(self, a: str, b: str) -> float:
        import torch

        tok = self.tokenizer
        ids_a = tok(a, add_special_tokens=False)["input_ids"][:128]
        ids_b = tok(b, add_special_tokens=False)["input_ids"][:128]
        ids = [tok.cls_token_id, *ids_a, tok.sep_token_id, *ids_b, tok.sep_token_id]
        types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0]
        return float(torch.softmax(logits.float(), -1)[1])

    def __call__(self, a: str, b: str) -> bool:
        # The reference decides two short texts by the short-text rule, without the classifier.
        rule = short_texts_equivalent(a, b)
        return rule if rule is not None else self.probability(a, b) > self.threshold


# --- utility -------------------------------------------------------------------------------


def rating(reward: float, thresholds: Sequence[float] = REWARD_THRESHOLDS) -> int:
    """Raw reward -> 1..10 (calibrated for Skywork-Reward-Gemma-2-27B-v0.2)."""
    return bisect.bisect_left(thresholds, reward) + 1


def generation_scores(labels: Sequence[int], ratings: Sequence[int]) -> list[int]:
    """A generation scores its rating only as the first member of its class."""
    seen: set[int] = set()
    scores = []
    for label, r in zip(labels, ratings):
        scores.append(0 if label in seen else r)
        seen.add(label)
    return scores


def utility(scores: Sequence[float], patience: float = PATIENCE) -> float:
    """sum_i p^i s_i / sum_i p^i: a normalised, patience-weighted average."""
    weights = patience ** np.arange(len(scores))
    return float(weights @ np.asarray(scores, dtype=float) / weights.sum())


def partition_scores(labels: Sequence[int], ratings: Sequence[int]) -> list[int]:
    """The rating of each class (that of its first member), in class order."""
    first: dict[int, int] = {}
    for label, r in zip(labels, ratings):
        first.setdefault(label, r)
    return [first[k] for k in sorted(first)]


# --- v1.1: relabelling, and the LLM judge that groups all of a prompt's answers at once -----


def canonical(labels: Sequence[int]) -> list[int]:
    """Labels renumbered 0, 1, 2, ... in the order each class first appears (NoveltyBench v1.1)."""
    first: dict[int, int] = {}
    return [first.setdefault(label, len(first)) for label in labels]


# Our own wording of the task NoveltyBench v1.1's judge is given (its JUDGE_SYSTEM in
# src/partition.py): the same criterion, asked for as plain JSON so that any chat endpoint
# can answer it, with or without structured outputs.
LLM_JUDGE_SYSTEM = """\
You will read several answers that one language model gave to the same prompt, each \
under its number. Sort them into groups of answers that say the same thing.

Put two answers in one group when a reader who has seen one would learn essentially \
nothing new from the other: they give the same main answer, idea, story, argument, \
recommendation or picture, and differ only in phrasing, format, length, order or small \
details. Put them in different groups when their main content differs, even if they \
share a structure, a tone or a register. Two lists belong together only when most of \
their items are the same.

Reply with one JSON object and nothing else, of the form {"groups": [[1, 4], [2], [3, 5]]}: \
a list of groups, each a list of answer numbers, with every answer number in exactly one group."""

JUDGE_ATTEMPTS = 3  # answers asked for per prompt before the last one is read leniently
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MAX_TOKENS = 4096  # the Messages API requires a limit; a grouping of 10 answers needs ~100 tokens


def judge_message(prompt: str, shown: Sequence[str]) -> str:
    """The user message: the prompt, then every answer under its number (1-based)."""
    parts = [f"Prompt:\n{prompt}", f"There are {len(shown)} answers, numbered 1 to {len(shown)}."]
    parts += [f"=== Answer {k} ===\n{text}" for k, text in enumerate(shown, 1)]
    return "\n\n".join(parts)


def shown_order(seed: int | None, key: str, n: int) -> list[int]:
    """order[p] = the index of the generation shown as answer p + 1: the original order
    without a seed; with one, a shuffle fixed by the seed and `key` (the prompt's id), so a
    rerun shows the same order and each prompt gets its own."""
    order = list(range(n))
    if seed is not None:
        digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
        random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


class BadGrouping(ValueError):
    """A judge answer that is not a valid grouping of exactly the answers shown."""


def _json_candidates(text: str) -> list:
    """JSON values found in a judge's answer: the whole text, a ```fenced block, the span
    from the first { to the last } and from the first [ to the last ] (most specific first)."""
    spans = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        spans.append(fence.group(1).strip())
    for left, right in ("{}", "[]"):
        start, end = text.find(left), text.rfind(right)
        if 0 <= start < end:
            spans.append(text[start:end + 1])
    found = []
    for span in spans:
        try:
            found.append(json.loads(span))
        except (ValueError, RecursionError):
            continue
    return found


def strict_groups(text: str, n: int) -> list[list[int]]:
    """The groups (1-based answer numbers) of an answer that is exactly what was asked:
    {"groups": [[...], ...]} (alone, or alone inside a ```json fence), every number 1..n in
    exactly one non-empty group. Anything else raises BadGrouping, saying what is wrong."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    try:
        value = json.loads(fence.group(1) if fence else body)
    except (ValueError, RecursionError):
        raise BadGrouping(f"not JSON: {_clip(text)}") from None
    if not isinstance(value, dict) or not isinstance(value.get("groups"), list):
        raise BadGrouping(f'not an object with a "groups" list: {_clip(text)}')
    groups, seen = [], set()
    for group in value["groups"]:
        if not isinstance(group, list) or not group:
            raise BadGrouping(f"a group is not a non-empty list of answer numbers: {_clip(json.dumps(group))}")
        for number in group:
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= n:
                raise BadGrouping(f"{_clip(json.dumps(number))} is not an answer number (1-{n})")
            if number in seen:
                raise BadGrouping(f"answer {number} is in more than one group")
            seen.add(number)
        groups.append(list(group))
    missing = [k for k in range(1, n + 1) if k not in seen]
    if missing:
        raise BadGrouping(f"answer(s) {missing} in no group")
    return groups


def _number(value) -> int | None:
    """An answer number as a lenient reading accepts it: 3, 3.0 or "3"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def lenient_groups(text: str, n: int) -> list[list[int]]:
    """The best grouping that can be read from any answer: the first JSON value found in it
    (see _json_candidates) with a "groups" list, or a list itself, is taken as the groups;
    in each group, numbers outside 1..n and anything that is not a number are dropped, an
    answer listed again keeps its first group, and a group left empty is dropped; every
    answer in no group (all of them, when nothing can be read) becomes a class of its own."""
    raw: list = []
    for value in _json_candidates(text):
        if isinstance(value, dict) and isinstance(value.get("groups"), list):
            raw = value["groups"]
            break
        if isinstance(value, list):
            raw = value
            break
    groups, seen = [], set()
    for group in raw:
        members = []
        for value in group if isinstance(group, list) else [group]:
            number = _number(value)
            if number is not None and 1 <= number <= n and number not in seen:
                seen.add(number)
                members.append(number)
        if members:
            groups.append(members)
    return groups + [[k] for k in range(1, n + 1) if k not in seen]


def labels_from_groups(groups: list[list[int]], order: Sequence[int]) -> list[int]:
    """Groups of shown answer numbers -> a label per generation in the original order,
    relabelled in order of first appearance."""
    labels = [-1] * len(order)
    for g, members in enumerate(groups):
        for number in members:
            labels[order[number - 1]] = g
    return canonical(labels)


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "") or "(empty)"


class LlmJudge:
    """NoveltyBench v1.1's `llm` partition: one chat request per prompt shows the judge all
    of its generations, numbered (in an order shuffled by `seed`, if given), and asks for
    their groups as JSON. An answer that is not a valid grouping of exactly those answers
    (BadGrouping) is asked for again, up to JUDGE_ATTEMPTS answers in all; the last is then
    read leniently (lenient_groups) and the result says so. HTTP failures (5xx, 408/429,
    timeouts, a body without an answer) are retried with backoff up to `max_retries` tries
    per request; a refusal (another 4xx, a redirect, which is never followed) stops the run.

    `spec` is a crpo_bench.run.runner.ModelSpec of an HTTP API (openai:, gemini:, api: speak the
    chat-completions protocol, anthropic: the Messages API); `api_key` goes only into the
    request header, never into anything written or printed."""

    def __init__(self, spec, api_key: str | None, seed: int | None = None, timeout: float = 120,
                 max_retries: int = 5, attempts: int = JUDGE_ATTEMPTS, log=None):
        from ..run import runner as bench

        self.spec, self.seed, self.timeout = spec, seed, timeout
        self.max_retries, self.attempts = max(1, max_retries), max(1, attempts)
        self.model = spec.model_args["model"]
        self.log = log or (lambda message: None)
        bench.keep_secret(api_key)
        provider = bench.PROVIDERS[spec.provider]
        self.headers = {"Content-Type": "application/json"}
        if spec.provider == "anthropic":
            self.headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            self.headers[provider.key_header] = api_key if provider.key_header == "x-api-key" else f"Bearer {api_key}"
        self._session = None

    def payload(self, user: str) -> dict:
        if self.spec.provider == "anthropic":
            return {"model": self.model, "system": LLM_JUDGE_SYSTEM, "max_tokens": ANTHROPIC_MAX_TOKENS,
                    "messages": [{"role": "user", "content": user}]}
        return {"model": self.model, "messages": [{"role": "system", "content": LLM_JUDGE_SYSTEM},
                                                  {"role": "user", "content": user}]}

    def answer_text(self, body: bytes, number: str) -> str:
        """The text of a reply; a reply that carries none is an ApiError (retried)."""
        from ..run.runner import ApiError, _excerpt

        try:
            reply = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(f"the answer to request {number} is not JSON: {_excerpt(body)}") from None
        if not isinstance(reply, dict):
            raise ApiError(f"the answer to request {number} is a JSON {type(reply).__name__}, not an object")
        if self.spec.provider == "anthropic":
            content = reply.get("content")
            if not isinstance(content, list):
                raise ApiError(f"request {number}: the reply has no content: {_excerpt(body)}")
            return "".join(b["text"] for b in content
                           if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ApiError(f"request {number}: the reply has no choices: {_excerpt(body)}")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return content if isinstance(content, str) else ""

    def ask(self, user: str, number: str) -> str:
        """One answer of the judge, through HTTP retries."""
        import time

        import requests

        from ..run.runner import ApiError, ApiRefused, _check_status, _excerpt, redact

        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # no proxy or .netrc credentials from the environment, as in `run`
        for attempt in range(1, self.max_retries + 1):
            try:
                try:
                    response = self._session.post(self.spec.base_url, json=self.payload(user), headers=self.headers,
                                                  timeout=self.timeout, allow_redirects=False)
                except requests.Timeout:
                    raise ApiError(f"no answer to request {number} within {self.timeout:g} s") from None
                except requests.RequestException as err:
                    raise ApiError(f"request {number} failed: {type(err).__name__}: {_excerpt(str(err))}") from None
                _check_status(response.status_code, response.headers, response.content, number)
                return self.answer_text(response.content, number)
            except ApiRefused as err:
                raise ApiRefused(redact(str(err))) from None
            except ApiError as err:
                if attempt >= self.max_retries:
                    tries = f" (tried {attempt} times)" if attempt > 1 else ""
                    raise ApiError(redact(str(err)) + tries) from None
                wait = err.retry_after
                wait = min(wait, 60.0) if wait is not None else max(1.0, min(10.0, 0.5 * 2 ** (attempt - 1)))
                self.log(f"judge {self.spec.name}: {redact(str(err))}; retry {attempt} of {self.max_retries - 1} "
                         f"in {wait:.0f} s")
                time.sleep(wait)
        raise AssertionError("unreachable")

    def partition(self, key: str, prompt: str, generations: Sequence[str]) -> tuple[list[int], dict]:
        """(labels in the original order, the fields that describe how the judge answered)."""
        from ..run.runner import redact

        n = len(generations)
        order = shown_order(self.seed, key, n)
        user = judge_message(prompt, [generations[i] for i in order])
        text, problem = "", ""
        for attempt in range(1, self.attempts + 1):
            text = self.ask(user, f"for prompt {key}, answer {attempt}")
            try:
                groups = strict_groups(text, n)
            except BadGrouping as err:
                problem = redact(str(err))
                self.log(f"judge {self.spec.name}, prompt {key}: answer {attempt} of {self.attempts} is not a "
                         f"valid grouping ({problem})")
                continue
            return labels_from_groups(groups, order), {"judge_attempts": attempt, "judge_lenient": False}
        labels = labels_from_groups(lenient_groups(text, n), order)
        return labels, {"judge_attempts": self.attempts, "judge_lenient": True, "judge_problem": problem}
