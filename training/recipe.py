"""`crpo-train RECIPE.yaml [--field value ...]`: one TRL-style recipe -> one trained checkpoint.

A recipe is a flat YAML mapping of the fields of three dataclasses, parsed with TRL's
TrlParser: RecipeArguments (below), the trainer's config (SFTConfig, DPOConfig or
CrPOConfig, chosen by `trainer:`) and TRL's ModelConfig (model, LoRA). Any field can be
overridden on the command line. Runs the same under `accelerate launch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

TRAINERS = ("sft", "dpo", "crpo")
RECIPES = Path(__file__).parent / "recipes"


@dataclass
class RecipeArguments:
    trainer: str = field(default="crpo", metadata={"help": "sft, dpo or crpo", "choices": list(TRAINERS)})
    dataset_path: str | None = field(default=None, metadata={
        "help": "Pairs from `crpo-train pairs` / `score` (a folder), or a hub dataset id."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to evaluate on (optional)."})
    max_train_pairs: int | None = field(default=None, metadata={
        "help": "Train on the first N pairs after a seeded shuffle (demos, smoke runs)."})
    sft_min_score: float = field(default=30.0, metadata={
        "help": "SFT trains on the answers (chosen or rejected) with a human score of at least this."})
    merge_adapter: bool = field(default=True, metadata={
        "help": "With LoRA, also save <output_dir>/merged, a full model that `lm_eval --model hf` loads."})


def resolve_recipe(name: str) -> Path:
    """A recipe file, or the name of a packaged recipe (`crpo_cre`, `demo_cpu`, ...)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = RECIPES / f"{name.removesuffix('.yaml')}.yaml"
    if packaged.is_file():
        return packaged
    known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise FileNotFoundError(f"recipe {name!r} is neither a file nor a packaged recipe ({known})")


def parse(recipe: Path, overrides: list[str]):
    from trl import DPOConfig, ModelConfig, SFTConfig, TrlParser

    from .trainer import CrPOConfig

    with recipe.open() as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict):
        raise ValueError(f"{recipe}: a recipe is a YAML mapping of field: value")
    trainer = spec.get("trainer", "crpo")
    if "--trainer" in overrides:
        trainer = overrides[overrides.index("--trainer") + 1]
    if trainer not in TRAINERS:
        raise ValueError(f"{recipe}: trainer {trainer!r}: choose one of {TRAINERS}")
    config_class = {"sft": SFTConfig, "dpo": DPOConfig, "crpo": CrPOConfig}[trainer]
    parser = TrlParser((RecipeArguments, config_class, ModelConfig))
    try:
        return parser.parse_args_and_config(["--config", str(recipe), *overrides])
    except ValueError as err:
        raise ValueError(f"{recipe}: {err}") from None


def load_splits(args: RecipeArguments):
    """(train, eval or None) from one load of the recipe's dataset."""
    import datasets

    if not args.dataset_path:
        raise ValueError("the recipe needs dataset_path: a folder from `crpo-train pairs` or a hub dataset id")
    path = Path(args.dataset_path)
    data = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(args.dataset_path)
    for split in (args.train_split, args.eval_split):
        if split is not None and split not in data:
            raise ValueError(f"dataset {args.dataset_path} has no split {split!r} (it has {list(data)})")
    return data[args.train_split], data[args.eval_split] if args.eval_split is not None else None


def sft_examples(pairs, min_score: float):
    """Prompt/completion rows of the unique answers scored at least `min_score` (either side of a pair)."""
    import datasets

    seen, rows = set(), []
    for pair in pairs:
        for side in ("chosen", "rejected"):
            # an explicit prompt, or (the paper's published pairs) the turns before the answer
            prompt = pair["prompt"] if pair.get("prompt") else pair[side][:-1]
            completion = pair[side][-1:]
            key = (prompt[-1]["content"], completion[0]["content"])
            if pair[f"score_{side}"] >= min_score and key not in seen:
                seen.add(key)
                rows.append({"prompt": prompt, "completion": completion})
    if not rows:
        raise ValueError(f"no answer has a score of at least {min_score} (sft_min_score)")
    return datasets.Dataset.from_list(rows)


def train(recipe_name: str, overrides: list[str]) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer, SFTTrainer, get_peft_config

    from crpo_bench.models import causal_lm_path

    from .trainer import CrPOTrainer

    recipe = resolve_recipe(recipe_name)
    script, config, model_args = parse(recipe, overrides)
    model_path = causal_lm_path(model_args.model_name_or_path)
    train_data, eval_data = load_splits(script)
    if script.max_train_pairs is not None:
        train_data = train_data.shuffle(seed=config.seed).select(range(min(script.max_train_pairs, len(train_data))))
    if script.trainer == "sft" and "messages" not in train_data.column_names:
        # preference pairs: their answers rated >= sft_min_score; `crpo-train sft-data` rows are used as they are
        train_data = sft_examples(train_data, script.sft_min_score)
        eval_data = sft_examples(eval_data, script.sft_min_score) if eval_data is not None else None

    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    trainer_class = {"sft": SFTTrainer, "dpo": DPOTrainer, "crpo": CrPOTrainer}[script.trainer]
    trainer = trainer_class(model, args=config, train_dataset=train_data, eval_dataset=eval_data,
                            processing_class=tokenizer, peft_config=get_peft_config(model_args))
    trainer.train()

    out = Path(config.output_dir)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    if model_args.use_peft and script.merge_adapter and trainer.accelerator.is_main_process:
        save_merged(trainer.model, tokenizer, out / "merged")
    return out


def save_merged(peft_model, tokenizer, target: Path) -> None:
    """The adapter folded into the base weights, written atomically."""
    from crpo_bench.jsonl import write_folder_atomic

    merged = peft_model.merge_and_unload()

    def write(staging: Path) -> None:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    write_folder_atomic(target, write)
