"""Surprise against a token-by-token computation; quality against one forward per answer."""

from __future__ import annotations

import math

import pytest
import torch

from crpo_bench import Scorer, ScoringConfig
from crpo_bench.models import load_causal_lm, load_reward_model

PROMPTS = ["Write a poem about rain.", "Uses for a brick?", "Write a poem about rain."]
RESPONSES = ["Rain on the window, rain on the street.", "A doorstop.", "The gutters hum a borrowed hymn for hours"]


def token_by_token_nll(model, context_ids, response_ids):
    """Mean over response tokens of -log p(token | everything before it), one forward per token."""
    ids = list(context_ids)
    nlls = []
    with torch.no_grad():
        for token in response_ids:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            nlls.append(-torch.log_softmax(logits.double(), -1)[token].item())
            ids.append(token)
    return sum(nlls) / len(nlls)


def test_surprise_matches_token_by_token(tiny_lm_folder):
    model, tok = load_causal_lm(str(tiny_lm_folder))
    rows = Scorer(ScoringConfig(lm=str(tiny_lm_folder))).score(RESPONSES, prompts=PROMPTS, metrics=["surprise"]).rows
    for prompt, response, row in zip(PROMPTS, RESPONSES, rows):
        # the chat-formatted prompt, written out from the template by hand: one BOS, the
        # user turn, the assistant header; the response tokens follow it
        context = tok(f"<s><|user|>{prompt}<|end|><|assistant|>", add_special_tokens=False)["input_ids"]
        assert context.count(tok.bos_token_id) == 1
        response_ids = tok(response, add_special_tokens=False)["input_ids"]
        expected = token_by_token_nll(model, context, response_ids)
        assert row["surprise"] == pytest.approx(expected, abs=1e-5)
        assert row["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_surprise_without_prompt_conditions_on_bos(tiny_lm_folder):
    model, tok = load_causal_lm(str(tiny_lm_folder))
    row = Scorer(ScoringConfig(lm=str(tiny_lm_folder))).score(RESPONSES[:1], metrics=["surprise"]).rows[0]
    response_ids = tok(RESPONSES[0], add_special_tokens=False)["input_ids"]
    assert row["surprise"] == pytest.approx(token_by_token_nll(model, [tok.bos_token_id], response_ids), abs=1e-5)


def test_surprise_without_chat_template(tiny_lm_folder, tmp_path):
    from crpo_bench.metrics.surprise import response_nll

    model, tok = load_causal_lm(str(tiny_lm_folder))
    tok.chat_template = None
    got = response_nll(model, tok, PROMPTS[:1], RESPONSES[:1])[0]
    context = tok(PROMPTS[0] + "\n", add_special_tokens=True)["input_ids"]
    response_ids = tok(RESPONSES[0], add_special_tokens=False)["input_ids"]
    assert got == pytest.approx(token_by_token_nll(model, context, response_ids), abs=1e-5)


def test_empty_response_has_no_surprise(tiny_lm_folder):
    row = Scorer(ScoringConfig(lm=str(tiny_lm_folder))).score([""], prompts=["Hi"], metrics=["surprise"]).rows[0]
    assert row["surprise"] is None and row["perplexity"] is None and row["degenerate"] == "empty"


def test_quality_matches_single_forward(tiny_reward_folder):
    model, tok = load_reward_model(str(tiny_reward_folder))
    # the last answer contains the pad token itself: it must not be mistaken for padding
    responses = RESPONSES + ["Stacked bricks <pad> a wall"]
    prompts = PROMPTS + ["Uses for a brick?"]
    rows = Scorer(ScoringConfig(reward_model=str(tiny_reward_folder))).score(
        responses, prompts=prompts, metrics=["quality"]).rows
    assert tok.pad_token_id in tok(responses[-1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for prompt, response, row in zip(prompts, responses, rows):
            ids = tok(f"<s><|user|>{prompt}<|end|><|assistant|>{response}<|end|>", add_special_tokens=False)["input_ids"]
            expected = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
            assert row["quality"] == pytest.approx(expected, abs=1e-5)


def test_quality_needs_a_reward_model():
    with pytest.raises(ValueError, match="needs a reward model"):
        Scorer(ScoringConfig()).score(["a b"], metrics=["quality"])


def test_smollm2_default_finds_fluent_text_less_surprising():
    """The packaged SmolLM2 (converted once into the cache) behaves like a real LM."""
    fluent = "A brick can hold a door open on a windy day."
    shuffled = "windy open brick day can a on door hold a a."
    rows = Scorer(ScoringConfig()).score([fluent, shuffled], prompts=["Give a use for a brick."] * 2,
                                         metrics=["surprise"]).rows
    assert rows[0]["surprise"] + 1.0 < rows[1]["surprise"]
    assert 1.0 < rows[0]["perplexity"] < 1000


def test_shared_prompt_prefixes_give_the_same_surprise_as_whole_sequences(tiny_lm_folder):
    """Answers that share a prompt reuse one pass over it (its cache); every value equals the
    whole-sequence computation, in both scopes, within 1e-4 nats."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crpo_bench.metrics import surprise

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_lm_folder), AutoTokenizer.from_pretrained(tiny_lm_folder)
    prompts = ["Think of a new use for a brick, and say it in a sentence or two please."] * 5 + ["Rain."] * 2 + [None]
    answers = ["a doorstop", "grind it into pigment for a cave painting", "a bed for a hamster", "a", "build a wall",
               "puddles", "the window hums", "no prompt here"]
    for scope, function in surprise.NLL_FUNCTIONS.items():
        shared = function(model, tokenizer, prompts, answers, max_tokens_per_batch=64)
        sequences = [surprise.context_and_response_ids(tokenizer, p, a) for p, a in zip(prompts, answers)]
        if scope == "response":
            whole = surprise.mean_token_nll(model, tokenizer, [c + r for c, r in sequences],
                                            [max(len(c), 1) for c, _ in sequences])
        else:
            whole = surprise.mean_token_nll(model, tokenizer, [surprise.whole_chat_ids(tokenizer, p, a)
                                                               for p, a in zip(prompts, answers)], [1] * len(answers))
        assert shared == pytest.approx(whole, abs=1e-4, nan_ok=True), scope
    group = [c + r for c, r in sequences[:5]]
    assert surprise.shared_prefix_nll(model, group) is not None  # the shared path ran, not the fallback
    assert surprise.common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert surprise.common_prefix([[1, 2], [1, 2]]) == 1  # each keeps a token of its own
