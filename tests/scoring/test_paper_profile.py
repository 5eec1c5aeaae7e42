"""The `paper` scoring profile: its settings, the paper's spaCy words, the opt-in to remote
code, whole-chat surprise, and `crpo-bench score --profile paper` end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crpo_bench import text
from crpo_bench.cli import main
from crpo_bench.metrics.surprise import whole_chat_nll
from crpo_bench.models import ModelLoadError, load_causal_lm, load_embedder, load_reward_model
from crpo_bench.scoring import PROFILES, Scorer, ScoringConfig, default_metrics, profile_config

PAPER_EMBEDDER = "jinaai/jina-embeddings-v3"
PAPER_LM = "google/gemma-2-27b-it"
PAPER_REWARD = "Skywork/Skywork-Reward-Gemma-2-27B-v0.2"

# Inputs where spaCy's words and the regex's differ: abbreviations, clitics, whitespace runs.
TRICKY = [
    "K.F.C. is open late",
    "Don't stop, DON'T stop!",
    "Line one.\n\nLine two\n",
    "U.S.A.  vs  e-mail -- 'quoted' ... (brackets)",
    "café, naïve; 3.14 costs $5 @home #tag :)",
    "",
    "   \n\t",
    "?!... --",
]


def needs_spacy():
    return pytest.importorskip("spacy", reason="the paper's words need spaCy (pip install 'crpo-bench[paper]')")


def paper_words(sentence: str) -> set[str]:
    """The paper's rule, written out: spaCy tokens, is_punct dropped, lowercased, unique."""
    spacy = needs_spacy()
    return {t.text.lower() for t in spacy.blank("en")(sentence) if not t.is_punct}


# --- profiles ---------------------------------------------------------------------------


def test_offline_profile_is_todays_default():
    assert PROFILES == ("offline", "paper")
    assert profile_config() == ScoringConfig() == profile_config("offline")


def test_paper_profile_sets_the_papers_setup():
    cfg = profile_config("paper")
    assert (cfg.embedder, cfg.lm, cfg.reward_model) == (PAPER_EMBEDDER, PAPER_LM, PAPER_REWARD)
    assert (cfg.tokenizer, cfg.surprise_scope, cfg.degenerate) == ("spacy", "whole_chat", "exclude")
    assert cfg.trust_remote_code is False  # running jina's code stays an explicit choice
    assert "quality" in default_metrics(cfg)


def test_explicit_overrides_win_and_none_means_not_given():
    cfg = profile_config("paper", embedder="minilm", lm=None, reward_model="none", trust_remote_code=True,
                         tokenizer=None, degenerate="reference_compat")
    assert (cfg.embedder, cfg.lm, cfg.reward_model) == ("minilm", PAPER_LM, None)
    assert cfg.trust_remote_code and cfg.tokenizer == "spacy" and cfg.degenerate == "reference_compat"
    assert "quality" not in default_metrics(cfg)
    assert profile_config("offline", surprise_scope="whole_chat").surprise_scope == "whole_chat"


def test_unknown_profile_field_or_scope_is_refused():
    with pytest.raises(ValueError, match="profile 'nope': choose one of"):
        profile_config("nope")
    with pytest.raises(ValueError, match=r"unknown ScoringConfig field\(s\) \['embeder'\]"):
        profile_config("paper", embeder="minilm")
    with pytest.raises(ValueError, match="surprise scope 'prompt'"):
        ScoringConfig(surprise_scope="prompt")


# --- spaCy words ------------------------------------------------------------------------


@pytest.mark.parametrize("sentence", TRICKY)
def test_spacy_words_are_the_papers(sentence):
    spacy = needs_spacy()
    assert set(text.unique_words(sentence, "spacy")) == paper_words(sentence)
    # in order, with repeats, for n-grams
    assert text.word_sequence(sentence, "spacy") == [
        t.text.lower() for t in spacy.blank("en")(sentence) if not t.is_punct]


def test_spacy_words_worked_examples():
    needs_spacy()
    assert "k.f.c." in text.unique_words(TRICKY[0], "spacy")  # the regex splits it into k, f, c
    assert {"do", "n't"} <= set(text.unique_words(TRICKY[1], "spacy"))
    assert "\n\n" in text.unique_words(TRICKY[2], "spacy")  # whitespace runs are words in the paper


def test_spacy_falls_back_to_blank_english(monkeypatch):
    spacy = needs_spacy()

    def no_model(name, *args, **kwargs):
        raise OSError(f"[E050] Can't find model '{name}'")

    monkeypatch.setattr(spacy, "load", no_model)
    text._spacy_tokenizer.cache_clear()
    try:
        assert all(set(text.unique_words(s, "spacy")) == paper_words(s) for s in TRICKY)
    finally:
        text._spacy_tokenizer.cache_clear()


@pytest.mark.parametrize("answer, kind", [
    ("", text.EMPTY),
    ("   \n\t", text.NO_WORDS),
    ("\n\n ... \n", text.NO_WORDS),  # whitespace words only: still no answer
    ("Brick.", text.ONE_WORD),
    ("Brick. brick!", text.ONE_WORD),
    ("Brick.\n", None),  # the paper's words: {"brick", "\n"}
    ("K.F.C. rocks", None),
])
def test_degenerate_kinds_with_spacy_words(answer, kind):
    needs_spacy()
    assert text.degenerate_kind(answer, "spacy") == kind


# --- remote code --------------------------------------------------------------------------

CUSTOM_CODE = '''
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel


class TinyCustomConfig(LlamaConfig):
    pass


class TinyCustomForCausalLM(LlamaForCausalLM):
    config_class = TinyCustomConfig


class TinyCustomModel(LlamaModel):
    config_class = TinyCustomConfig
'''


@pytest.fixture(scope="module")
def custom_code_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny Llama whose config.json maps to classes in a Python file of its own folder.

    Its model_type stays "llama", one transformers knows: with trust_remote_code=False
    transformers would then silently load its built-in Llama instead of refusing."""
    from conftest import save_tiny
    from transformers import LlamaForCausalLM

    folder = save_tiny(LlamaForCausalLM, tiny_tokenizer, tmp_path_factory.mktemp("custom-code"), seed=4)
    (folder / "modeling_tiny_custom.py").write_text(CUSTOM_CODE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_tiny_custom.TinyCustomConfig",
                          "AutoModel": "modeling_tiny_custom.TinyCustomModel",
                          "AutoModelForCausalLM": "modeling_tiny_custom.TinyCustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("loader, kind", [(load_embedder, "sentence embedder"), (load_causal_lm, "causal LM"),
                                          (load_reward_model, "reward model")])
def test_remote_code_is_refused_without_opt_in(custom_code_folder, loader, kind):
    with pytest.raises(ModelLoadError) as err:
        loader(str(custom_code_folder))
    message = str(err.value)
    assert f"{kind} '{custom_code_folder}' needs remote code" in message
    assert "modeling_tiny_custom.TinyCustomConfig" in message
    assert "pass --trust-remote-code (or the metadata key trust_remote_code: true)" in message


def test_opt_in_runs_the_models_own_code(custom_code_folder):
    from transformers import AutoModelForCausalLM

    # why the check exists: transformers alone would quietly swap in its own Llama
    assert type(AutoModelForCausalLM.from_pretrained(custom_code_folder, trust_remote_code=False)).__name__ == \
        "LlamaForCausalLM"
    model, _ = load_causal_lm(str(custom_code_folder), trust_remote_code=True)
    assert type(model).__name__ == "TinyCustomForCausalLM"
    embedder = load_embedder(str(custom_code_folder), trust_remote_code=True)
    assert type(embedder.model[0].auto_model).__name__ == "TinyCustomModel"
    assert embedder.encode(["a brick"]).shape == (1, 64)


def test_custom_sentence_transformers_module_is_refused(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "custom_st.Transformer"}]))
    with pytest.raises(ModelLoadError, match="modules.json names the custom module custom_st.Transformer"):
        load_embedder(str(tmp_path))


def test_cli_trust_remote_code_flag(custom_code_folder, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "Uses for a brick?", "response": "A doorstop for windy days."}) + "\n")
    args = ["score", str(src), "-o", str(tmp_path / "out.jsonl"), "--lm", str(custom_code_folder),
            "--metrics", "surprise", "--quiet"]
    assert main(args) == 2
    assert "needs remote code" in capsys.readouterr().err
    assert main(args + ["--trust-remote-code"]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["surprise"] > 0


# --- whole-chat surprise ----------------------------------------------------------------

PROMPTS = ["Write a poem about rain.", "Uses for a brick?", "Write a poem about rain.", None]
RESPONSES = ["Rain on the window, rain on the street.", "A doorstop.",
             "The gutters hum a borrowed hymn for hours and hours", "A bookend."]


def brute_force_mean_nll(model, ids: list[int]) -> float:
    """One unbatched forward; the sum of cross-entropy over every predicted position."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    total = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum")
    return total.item() / (len(ids) - 1)


def test_whole_chat_nll_matches_one_forward_per_text(tiny_lm_folder):
    model, tok = load_causal_lm(str(tiny_lm_folder))
    # a small budget: several batches, padded rows
    got = whole_chat_nll(model, tok, PROMPTS, RESPONSES, max_tokens_per_batch=64)
    for prompt, response, value in zip(PROMPTS, RESPONSES, got):
        # the template written out by hand: BOS from the template, then the paper's extra BOS
        chat = response if prompt is None else f"<s><|user|>{prompt}<|end|><|assistant|>{response}<|end|>"
        ids = [tok.bos_token_id] + tok(chat, add_special_tokens=False)["input_ids"]
        assert ids.count(tok.bos_token_id) == (1 if prompt is None else 2)
        assert value == pytest.approx(brute_force_mean_nll(model, ids), abs=1e-5)


def test_whole_chat_nll_without_chat_template(tiny_lm_folder):
    model, tok = load_causal_lm(str(tiny_lm_folder))
    tok.chat_template = None
    got = whole_chat_nll(model, tok, PROMPTS[:2], RESPONSES[:2])
    for prompt, response, value in zip(PROMPTS, RESPONSES, got):
        ids = [tok.bos_token_id] + tok(f"{prompt}\n{response}", add_special_tokens=False)["input_ids"]
        assert value == pytest.approx(brute_force_mean_nll(model, ids), abs=1e-5)


def test_scorer_whole_chat_scope(tiny_lm_folder):
    model, tok = load_causal_lm(str(tiny_lm_folder))
    rows = Scorer(ScoringConfig(lm=str(tiny_lm_folder), surprise_scope="whole_chat")).score(
        RESPONSES, prompts=PROMPTS, metrics=["surprise"]).rows
    expected = whole_chat_nll(model, tok, PROMPTS, RESPONSES)
    for row, value in zip(rows, expected):
        assert row["surprise"] == pytest.approx(value, abs=1e-6)
        assert row["perplexity"] == pytest.approx(math.exp(value), rel=1e-6)


# --- crpo-bench score --profile paper -------------------------------------------------------

PAPER_ROWS = [
    {"task": "aut", "prompt": "Uses for a brick?", "response": "A K.F.C. doorstop, don't laugh.\n\nIt works."},
    {"task": "aut", "prompt": "Uses for a brick?", "response": "Grind it into pigment for a U.S. mural."},
    {"task": "aut", "prompt": "Uses for a brick?", "response": "Brick."},
]


def brute_force_dsi(vectors: dict[str, torch.Tensor], words: set[str]) -> float:
    """Mean over words of the mean cosine distance to every other word (pair loops)."""
    words = sorted(words)
    if len(words) < 2:
        return 0.0
    per_word = []
    for a in words:
        per_word.append(sum(1 - float(vectors[a] @ vectors[b]) for b in words if b != a) / (len(words) - 1))
    return sum(per_word) / len(per_word)


def test_cli_paper_profile_with_offline_models(tmp_path, embedder):
    needs_spacy()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in PAPER_ROWS))
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "-o", str(out), "--profile", "paper", "--embedder", "minilm",
                 "--lm", "smollm2", "--reward-model", "none", "--no-cache", "--quiet"]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("quality" not in row for row in scored)  # --reward-model none: no quality
    assert [row["degenerate"] for row in scored] == [None, None, "one_word"]

    # DSI and novelty from the paper's words, embedded one by one, pairs looped over
    words = [paper_words(r["response"]) for r in PAPER_ROWS[:2]]
    assert words[0] != set(text.unique_words(PAPER_ROWS[0]["response"]))  # regex words would differ
    vocab = sorted(set().union(*words))
    vectors = dict(zip(vocab, torch.tensor(embedder.encode(vocab), dtype=torch.float64)))
    corpus_dsi = brute_force_dsi(vectors, set(vocab))
    for row, ws in zip(scored, words):
        assert row["dsi"] == pytest.approx(brute_force_dsi(vectors, ws), abs=1e-5)
        assert row["novelty"] == pytest.approx(2 * abs(brute_force_dsi(vectors, ws) - corpus_dsi), abs=1e-5)

    # surprise: the whole chat under SmolLM2, the template's BOS plus the paper's own
    model, tok = load_causal_lm("smollm2")
    for row, original in zip(scored, PAPER_ROWS):
        chat = [{"role": "user", "content": original["prompt"]}, {"role": "assistant", "content": original["response"]}]
        ids = [tok.bos_token_id] + tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)[
            "input_ids"]
        expected = brute_force_mean_nll(model, ids)
        # float32 cross-entropy over SmolLM2's 49k-word vocabulary, in the scorer's
        # (batch, vocab, position) layout, is off by ~1e-4 from float64 (measured); the
        # tiny-model tests above pin the computation itself to 1e-5
        assert row["surprise"] == pytest.approx(expected, abs=5e-4)
        assert row["perplexity"] == pytest.approx(math.exp(expected), rel=5e-4)


def test_cli_paper_profile_offline_names_the_papers_embedder(tmp_path):
    """No overrides, no hub: a one-line error naming jina-embeddings-v3, and at once."""
    needs_spacy()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in PAPER_ROWS))
    code = "import sys\nfrom crpo_bench.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, "score", str(src), "-o", str(tmp_path / "out.jsonl"),
                           "--profile", "paper", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert f"cannot load sentence embedder '{PAPER_EMBEDDER}'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 120  # imports only: no download retries


class _HashEmbedder:
    """A stand-in for another embedding space (jina's is 1024-d): 8-d vectors from a hash."""

    key, dimension = "hash-8d", 8

    def encode(self, texts, progress=False, desc="", batch_size=32):
        import hashlib

        import numpy as np

        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8).astype(np.float32) + 1
                for t in texts]
        return np.stack(rows) if rows else np.zeros((0, 8), dtype=np.float32)


def test_originality_keeps_the_embedder_it_was_trained_on(embedder, isolated_cache):
    """Under another embedder (the paper profile's jina), semantic_distance uses that space,
    originality the MiniLM space its ridge model was fitted in: the same values as offline."""
    from crpo_bench.scoring import Scorer, ScoringConfig

    answers, items = ["grind it into red pigment for a mural", "a doorstop"], ["brick", "brick"]
    offline = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder).score(
        answers, items=items, tasks=["aut", "aut"], metrics=["originality", "semantic_distance"]).rows
    other = Scorer(ScoringConfig(embedder="hash-8d", cache_path=isolated_cache), embedder=_HashEmbedder()).score(
        answers, items=items, tasks=["aut", "aut"], metrics=["originality", "semantic_distance"]).rows
    assert [r["originality"] for r in other] == pytest.approx([r["originality"] for r in offline], abs=1e-9)
    assert [r["semantic_distance"] for r in other] != pytest.approx([r["semantic_distance"] for r in offline])
