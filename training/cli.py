"""`crpo-train`: the CrPO pipeline's one entry point.

    crpo-train pairs --data [SPLIT=]SOURCE ... --out pairs/      rated answers -> preference pairs
    crpo-train score pairs/ --out scored/                        + creativity scores per pair
    crpo-train sft-data --data [SPLIT=]SOURCE ... --out sft/     the paper's SFT data (answers rated >= 30)
    crpo-train RECIPE [--field value ...]                        train (sft, dpo, crpo_*, demo_cpu)
    crpo-train accelerate-config NAME                            path of a shipped accelerate config
                                                                 (multi_gpu, zero3) for `accelerate launch`
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

HELP = __doc__


def data_parser() -> argparse.ArgumentParser:
    from crpo_bench.scoring import add_device_options

    parser = argparse.ArgumentParser(prog="crpo-train", description="CrPO data steps.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    pairs = verbs.add_parser("pairs", help="human-rated answers -> preference pairs (TRL conversational format)")
    pairs.add_argument("--data", action="append", required=True, metavar="[SPLIT=]SOURCE",
                       help="'hub' (MuCE: every split), a MuCE file or folder in the raw or processed layout (split "
                            "from Set: Training->train, Validation->val, ...), or an ocsai JSONL; SPLIT= names the "
                            "split of an ocsai file (default train). Repeatable.")
    pairs.add_argument("--out", required=True, help="folder for the datasets DatasetDict")
    pairs.add_argument("--min-score", type=float, default=20.0, help="both answers scored at least this (20)")
    pairs.add_argument("--min-score-diff", type=float, default=5.0, help="chosen beats rejected by this (5)")
    pairs.add_argument("--max-matching", type=int, default=10, help="pairs one answer may join (10)")
    pairs.add_argument("--profile", choices=("offline", "paper"), default="offline",
                       help="paper: the paper's data step (--matching paper, and the hub's full_agreement configuration)")
    pairs.add_argument("--matching", choices=("widest", "paper"),
                       help="widest: repeated answers merged, widest score gap first (default); paper: the paper's "
                            "greedy matching in data order, repeats kept (the default of --profile paper)")
    pairs.add_argument("--config", help="configuration of the hub dataset (--data hub), e.g. full_agreement")
    pairs.add_argument("--tasks", nargs="+", help="only these task types (slugs such as aut, instances, or full names)")
    pairs.add_argument("--max-prompts", type=int, help="keep only the first N prompts of each split and task "
                                                           "(whole, so per-prompt scores are unchanged)")
    pairs.add_argument("--push-to-hub", metavar="REPO_ID", help="also push the dataset to the hub")

    sft = verbs.add_parser("sft-data", help="the paper's SFT data: every answer rated at least --min-score, repeats "
                                            "kept, as chat messages (train with a recipe like sft_paper)")
    sft.add_argument("--data", action="append", required=True, metavar="[SPLIT=]SOURCE", help="as for pairs")
    sft.add_argument("--out", required=True, help="folder for the datasets DatasetDict")
    sft.add_argument("--min-score", type=float, default=30.0, help="answers rated at least this (30, the paper's)")
    sft.add_argument("--config", help="configuration of the hub dataset (--data hub; the paper's: full_agreement)")
    sft.add_argument("--tasks", nargs="+", help="only these task types")

    score = verbs.add_parser("score", help="attach min-max normalised creativity scores to each pair")
    score.add_argument("pairs", help="folder written by `crpo-train pairs`")
    score.add_argument("--out", required=True, help="folder for the scored DatasetDict")
    score.add_argument("--dimensions", nargs="+", default=None,
                       help="of novelty diversity surprise quality originality (default: all but quality; "
                            "quality too with --reward-model)")
    score.add_argument("--score-rejected", action="store_true", help="score the rejected answers too")
    score.add_argument("--profile", choices=("offline", "paper"), default="offline",
                       help="scoring profile: offline (packaged MiniLM, SmolLM2) or paper (jina-embeddings-v3, spaCy "
                            "words, whole-chat surprise under gemma-2-27b-it, Skywork quality)")
    score.add_argument("--rules", choices=("ours", "paper"),
                       help="how scores become weights (default: the profile's). ours: surprise normalised as mean NLL, "
                            "degenerate answers 0 on every dimension, a lone answer 0.5 everywhere; paper: perplexity, "
                            "degenerate answers scored like any other, a lone answer diversity 0 (README: training profiles)")
    score.add_argument("--trust-remote-code", action="store_true",
                       help="let models that ship their own code run it (jina-embeddings-v3)")
    score.add_argument("--embedder", help="sentence embedder (default: packaged MiniLM)")
    score.add_argument("--lm", help="LM for surprise (default: packaged SmolLM2)")
    score.add_argument("--reward-model", help="reward model for quality")
    add_device_options(score)
    score.add_argument("--push-to-hub", metavar="REPO_ID", help="also push the dataset to the hub")
    return parser


def read_sources(specs: list[str], config: str | None = None) -> list[dict]:
    from crpo_bench import muce

    rows = []
    for spec in specs:
        # SPLIT=SOURCE: an ocsai file's split, or the one split kept of MuCE data; else every split
        split, _, source = spec.rpartition("=") if "=" in spec else ("", "", spec)
        if source != "hub" and not Path(source).exists():
            raise FileNotFoundError(f"--data {spec}: {source} does not exist")
        rows += muce.read_rated(source, split or None, config=config,
                                notice=lambda text, spec=spec: print(f"--data {spec}: {text}", file=sys.stderr))
    return rows


def save_dataset(splits: dict[str, list[dict]], out: str, push_to_hub: str | None, card: dict | None = None,
                 owner: str = "crpo-train"):
    """Write a DatasetDict atomically (a crash leaves no half-written folder); a metric card
    goes into every split's dataset info and beside it as card.json."""
    import json

    import datasets

    from crpo_bench.jsonl import write_folder_atomic

    info = datasets.DatasetInfo(description=json.dumps({"crpo_bench_card": card})) if card else None
    data = datasets.DatasetDict({split: datasets.Dataset.from_list(rows, info=info) for split, rows in splits.items()})

    def write(staging):
        data.save_to_disk(str(staging))
        if card:
            (staging / "card.json").write_text(json.dumps(card, indent=1) + "\n")

    write_folder_atomic(out, write, owner)  # owns only what it writes: --out's other contents stay
    if push_to_hub:
        data.push_to_hub(push_to_hub)
    return data


def run_pairs(args) -> int:
    from .pairs import PairSettings, build_pairs

    paper = args.profile == "paper"
    matching = args.matching or ("paper" if paper else "widest")
    config = args.config or ("full_agreement" if paper and "hub" in args.data else None)
    settings = PairSettings(args.min_score, args.min_score_diff, args.max_matching, matching)
    splits = build_pairs(read_sources(args.data, config), settings, set(args.tasks) if args.tasks else None,
                         args.max_prompts)
    if not splits:
        raise ValueError("no pairs: no group has two answers that pass --min-score and --min-score-diff")
    save_dataset(splits, args.out, args.push_to_hub, owner="crpo-train pairs")
    for split, pairs in sorted(splits.items()):
        tasks = Counter(p["task"] for p in pairs)
        print(f"{split}: {len(pairs)} pairs over {len({p['prompt'][0]['content'] for p in pairs})} prompts "
              f"({', '.join(f'{t} {n}' for t, n in tasks.most_common())})")
    print(f"wrote {args.out}")
    return 0


def run_sft_data(args) -> int:
    from .pairs import sft_messages

    splits = sft_messages(read_sources(args.data, args.config), args.min_score, set(args.tasks) if args.tasks else None)
    if not splits:
        raise ValueError(f"no answer is rated at least {args.min_score} (--min-score)")
    save_dataset(splits, args.out, None, owner="crpo-train sft-data")
    for split, rows in sorted(splits.items()):
        print(f"{split}: {len(rows)} answers rated >= {args.min_score:g}")
    print(f"wrote {args.out}")
    return 0


def run_score(args) -> int:
    import datasets

    from crpo_bench.scoring.card import metric_card
    from crpo_bench.scoring import Scorer, profile_config

    from .scores import DIMENSIONS, score_pairs

    rules = args.rules or ("paper" if args.profile == "paper" else "ours")
    config = profile_config(args.profile, embedder=args.embedder, lm=args.lm, reward_model=args.reward_model,
                            trust_remote_code=args.trust_remote_code or None, progress=True,
                            device=args.device, dtype=args.dtype,
                            # the paper's code keeps degenerate answers in their corpus and scores them
                            degenerate="reference_compat" if rules == "paper" else None)
    dimensions = args.dimensions or [d for d in DIMENSIONS if d != "quality" or config.reward_model]
    unknown = sorted(set(dimensions) - set(DIMENSIONS))
    if unknown:
        raise ValueError(f"--dimensions: unknown {unknown}; choose from {DIMENSIONS}")
    if not Path(args.pairs).is_dir():
        raise FileNotFoundError(f"{args.pairs}: not a folder written by `crpo-train pairs`")
    data = datasets.load_from_disk(args.pairs)
    scorer = Scorer(config)
    scored = score_pairs({split: list(data[split]) for split in data}, scorer, dimensions, args.score_rejected, rules)
    card = metric_card(config, surprise="surprise" in dimensions, profile=args.profile, corpus="prompt",
                       dimensions=list(dimensions), normalisation="min-max within each prompt's corpus",
                       weight_rules=rules,
                       scored_sides="chosen and rejected" if args.score_rejected else "chosen")
    save_dataset(scored, args.out, args.push_to_hub, card, owner="crpo-train score")
    for split, pairs in sorted(scored.items()):
        means = ", ".join(f"{d} {sum(p[f'{d}_chosen'] for p in pairs) / len(pairs):.3f}" for d in dimensions)
        print(f"{split}: {len(pairs)} pairs; mean normalised chosen score: {means}")
    print(f"wrote {args.out}")
    return 0


def accelerate_config(name: str) -> Path:
    """A shipped accelerate config (training/recipes/accelerate/NAME.yaml) by name."""
    from .recipe import RECIPES

    folder = RECIPES / "accelerate"
    path = folder / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise FileNotFoundError(f"accelerate config {name!r}: choose one of {known}")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return 0 if argv else 2
    from crpo_bench.cli import run_verb

    return run_verb("crpo-train", lambda: dispatch(argv))


def dispatch(argv: list[str]) -> int:
    if argv[0] == "accelerate-config":
        print(accelerate_config(argv[1] if len(argv) > 1 else ""))
        return 0
    if argv[0] in ("pairs", "score", "sft-data"):
        args = data_parser().parse_args(argv)
        return {"pairs": run_pairs, "score": run_score, "sft-data": run_sft_data}[args.verb](args)
    from .recipe import train

    out = train(argv[0], argv[1:])
    merged = out / "merged"
    print(f"saved {out}; evaluate with: lm_eval --model hf --model_args pretrained="
          f"{merged if merged.is_dir() else out} --tasks muce_aut --apply_chat_template")
    return 0


if __name__ == "__main__":
    sys.exit(main())
