"""Model resolution: offline defaults, local folders, and clear errors for the rest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crpo_bench.models import (DEFAULT_EMBEDDER, ModelLoadError, load_causal_lm, load_embedder,
                               load_reward_model, smollm2_folder)


def test_default_embedder_is_the_packaged_minilm(embedder):
    assert embedder.name == DEFAULT_EMBEDDER and embedder.key.startswith(f"{DEFAULT_EMBEDDER}@sha256:")
    vectors = embedder.encode(["a brick", "a red brick", "quantum chromodynamics"])
    assert vectors.shape == (3, 384)
    assert abs(float((vectors**2).sum(1).max()) - 1) < 1e-5
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_local_folder_embedder_gets_its_own_cache_key(embedder, tmp_path):
    embedder.model.save(str(tmp_path / "minilm-copy"))
    copy = load_embedder(str(tmp_path / "minilm-copy"))
    assert copy.name == f"local:{(tmp_path / 'minilm-copy').resolve()}"
    assert copy.key.startswith(copy.name + "@sha256:") and copy.key != embedder.key
    assert abs(float(copy.encode(["brick"])[0] @ embedder.encode(["brick"])[0]) - 1) < 1e-5


def test_smollm2_is_converted_once_into_the_cache():
    folder = smollm2_folder()
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    assert smollm2_folder() == folder  # second call: the cached folder, no conversion


@pytest.mark.parametrize("loader", [load_embedder, load_causal_lm, load_reward_model])
def test_missing_local_folder_is_named(loader):
    with pytest.raises(ModelLoadError, match="'/no/such/folder' does not exist"):
        loader("/no/such/folder")


@pytest.mark.parametrize("loader, flag", [("load_embedder", "--embedder"), ("load_causal_lm", "--lm"),
                                          ("load_reward_model", "--reward-model")])
def test_hub_id_that_cannot_load_offline_names_it_and_asks_for_a_folder(loader, flag):
    # In a subprocess with HF_HUB_OFFLINE=1, as on a machine without the hub (the
    # variable is read when huggingface_hub is imported).
    code = (
        "import crpo_bench.models as m\n"
        f"try:\n    m.{loader}('no-such-org/no-such-model')\n"
        "except m.ModelLoadError as e:\n    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "'no-such-org/no-such-model'" in out.stdout, out.stderr
    assert f"pass its local folder, e.g. {flag} /path/to/no-such-model" in out.stdout


def test_reward_model_must_have_one_output(tmp_path, tiny_tokenizer):
    from conftest import save_tiny
    from transformers import LlamaForSequenceClassification

    save_tiny(LlamaForSequenceClassification, tiny_tokenizer, tmp_path, seed=2, num_labels=3)
    with pytest.raises(ModelLoadError, match="has 3 outputs; quality needs a sequence classifier with exactly one"):
        load_reward_model(str(tmp_path))
