"""`crpo-bench models path NAME`: the folder of a packaged model, for tools that want a path.

lm-eval's `hf` model takes a folder or a hub id; the packaged SmolLM2 ships as a GGUF file
and becomes a transformers folder on first use (in $CRPO_BENCH_CACHE/models). This prints
that folder (converting it first if needed; progress goes to stderr), so that

    lm_eval --model hf --model_args pretrained=$(crpo-bench models path smollm2) ...

runs offline.
"""

from __future__ import annotations

import argparse

PACKAGED = ("smollm2", "originality-v2", "originality-v3", "originality-v4", "originality-v5", "surrogate")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="where the packaged models are")
    verbs = p.add_subparsers(dest="models_verb", required=True)
    path = verbs.add_parser("path", help="print a packaged model's folder (the LM is converted on first use)")
    path.add_argument("name", choices=PACKAGED, help="smollm2: the offline default LM (SmolLM2-135M-Instruct); "
                      "originality-v2 to -v5: the originality scorers (v5 the default); surrogate: the NoveltyBench equivalence surrogate")


def run(args: argparse.Namespace) -> int:
    from .. import models

    if args.name == "smollm2":
        folder = models.smollm2_folder()
    elif args.name == "surrogate":
        from ..noveltybench.surrogate import packaged_path

        folder = packaged_path()
    else:
        folder = models.originality_model_path(args.name.removeprefix("originality-"))
    print(folder)
    return 0
