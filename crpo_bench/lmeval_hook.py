"""Let a plain `lm_eval --tasks muce_poems` find crpo-bench's tasks, with no --include_path.

lm-eval 0.4.13 has no plugin mechanism for tasks: its TaskManager scans only its own
folder and `include_path`. The wheel and the editable install put `crpo_bench_lmeval.pth`
(written by setup.py) in site-packages; it imports this module at interpreter start. It
costs nothing until `lm_eval.tasks.manager` is imported; then it makes every TaskManager also index our task folder (first, so a user's own
--include_path still overrides our tasks). Once `lm_eval.__main__` is imported (the
`lm_eval` command), an error our tasks mark as one-line (data that cannot be had: no hub,
no file) ends the command with that line and exit code 2 instead of a traceback. Set
CRPO_BENCH_NO_LMEVAL_TASKS=1 to turn both off. Standard library only: it runs in every
Python process of the environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys

TARGET = "lm_eval.tasks.manager"
CLI = "lm_eval.__main__"
ONE_LINE = "crpo_bench_one_line"  # an exception with this attribute set is said in one line
OPT_OUT = "CRPO_BENCH_NO_LMEVAL_TASKS"


def tasks_dir() -> str:
    """Our task folder: inside the installed package, or the checkout's top-level tasks/.
    (os.path, not pathlib: pathlib alone would add ~15 ms to every interpreter start.)"""
    here = os.path.dirname(os.path.realpath(__file__))
    packaged = os.path.join(here, "tasks")
    return packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(here), "tasks")


def add_our_tasks(manager_module) -> None:
    import inspect  # here, not at start-up: this module is imported by every interpreter

    manager_class = manager_module.TaskManager
    original = manager_class.__init__
    if getattr(original, "crpo_bench_hooked", False):
        return
    signature = inspect.signature(original)

    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        theirs = bound.arguments.get("include_path")
        theirs = [] if theirs is None else list(theirs) if isinstance(theirs, (list, tuple)) else [theirs]
        ours = tasks_dir()
        bound.arguments["include_path"] = [ours] + [p for p in theirs if str(p) != ours]
        original(*bound.args, **bound.kwargs)

    __init__.crpo_bench_hooked = True
    __init__.__wrapped__ = original
    manager_class.__init__ = __init__


def say_data_errors_in_one_line(cli_module) -> None:
    original = cli_module.cli_evaluate
    if getattr(original, "crpo_bench_hooked", False):
        return

    def cli_evaluate(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except Exception as err:
            if not getattr(err, ONE_LINE, False):
                raise
            print(f"lm_eval: error: {err}", file=sys.stderr)
            sys.exit(2)

    cli_evaluate.crpo_bench_hooked = True
    cli_evaluate.__wrapped__ = original
    cli_module.cli_evaluate = cli_evaluate


PATCHES = {TARGET: add_our_tasks, CLI: say_data_errors_in_one_line}


class _PatchOnImport:  # a sys.meta_path finder (duck-typed: importlib.abc costs start-up time)
    """Finds nothing itself; wraps the loader of each module of PATCHES to patch it once loaded."""

    def __init__(self):
        self.waiting = set(PATCHES)

    def find_spec(self, name, path, target=None):
        if name not in self.waiting:
            return None
        self.waiting.discard(name)  # one shot each: find the real module, never intercept it again
        if not self.waiting:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if os.environ.get(OPT_OUT, "").lower() in ("1", "true", "yes"):
        return
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not all(name in sys.modules for name in PATCHES) and not any(isinstance(f, _PatchOnImport)
                                                                    for f in sys.meta_path):
        finder = _PatchOnImport()
        finder.waiting -= set(sys.modules)
        sys.meta_path.insert(0, finder)


install()
