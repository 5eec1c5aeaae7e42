"""Let a plain `lm_eval --tasks muce_poems` find crpo-bench's tasks, with no --include_path.

lm-eval 0.4.13 has no plugin mechanism for tasks: its TaskManager scans only its own
folder and `include_path`. The wheel ships `crpo_bench_lmeval.pth`, which imports this
module at interpreter start. It costs nothing until `lm_eval.tasks.manager` is imported;
then it makes every TaskManager also index our task folder (first, so a user's own
--include_path still overrides our tasks). Set CRPO_BENCH_NO_LMEVAL_TASKS=1 to turn
it off. Standard library only: it runs in every Python process of the environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys

TARGET = "lm_eval.tasks.manager"
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


class _PatchOnImport:  # a sys.meta_path finder (duck-typed: importlib.abc costs start-up time)
    """Finds nothing itself; wraps the loader of lm_eval.tasks.manager to patch it once loaded."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # one shot: find the real module, never intercept again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            add_our_tasks(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if os.environ.get(OPT_OUT, "").lower() in ("1", "true", "yes"):
        return
    if TARGET in sys.modules:
        add_our_tasks(sys.modules[TARGET])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


install()
