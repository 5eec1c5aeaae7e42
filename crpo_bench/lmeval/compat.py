"""The one place crpo-bench patches lm-eval internals (besides task discovery in
crpo_bench/lmeval_hook.py): our standard errors, and the evaluated model handed to
generator.hold so that it can step aside before scoring. Written for lm-eval 0.4.13; on another
version it checks the layout it relies on and fails with a message that says what to update.
"""

from __future__ import annotations

WRITTEN_FOR = "0.4.13"


def check_version() -> None:
    """Refuse an lm-eval outside 0.4.x with a clear message (pyproject pins <0.5)."""
    import lm_eval

    version = getattr(lm_eval, "__version__", "unknown")
    if not str(version).startswith("0.4."):
        raise RuntimeError(f"crpo-bench's lm-eval glue was written for lm-eval {WRITTEN_FOR} (0.4.x); this is lm-eval "
                           f"{version}. Install lm-eval>=0.4.13,<0.5 or update crpo_bench/lmeval/compat.py")


def _wrap_once(module, name: str, purpose: str, make) -> None:
    """Replace `module.name` by `make(original)`, once: a second call finds the mark and leaves
    it. A name that is gone fails loudly rather than silently losing what the hook provides."""
    check_version()
    original = getattr(module, name, None)
    if original is None:
        raise RuntimeError(f"{module.__name__}.{name} is gone: crpo_bench's {purpose} "
                           f"(crpo_bench/lmeval/compat.py, written for lm-eval {WRITTEN_FOR}) needs updating")
    if getattr(original, "crpo_hooked", False):
        return
    wrapper = make(original)
    wrapper.crpo_hooked = True
    wrapper.__wrapped__ = original
    setattr(module, name, wrapper)


def install_stderr_hook() -> None:
    """Make lm-eval use each aggregation's `crpo_stderr` instead of reporting "N/A".

    lm-eval 0.4.x looks the stderr function up by aggregation function in
    `stderr_for_metric`, imported by name into `lm_eval.evaluator_utils`.
    """
    import lm_eval.evaluator_utils as evaluator_utils

    def make(original):
        def stderr_for_metric(metric, bootstrap_iters):
            own = getattr(metric, "crpo_stderr", None)
            if own is not None and bootstrap_iters and bootstrap_iters > 0:
                return own
            return original(metric=metric, bootstrap_iters=bootstrap_iters)
        return stderr_for_metric

    _wrap_once(evaluator_utils, "stderr_for_metric", "standard errors", make)


def install_generator_hook() -> None:
    """Hand each `evaluate` call's model to generator.hold (simple_evaluate calls lm-eval's
    module-level `evaluate` by name, so wrapping that name reaches every evaluation)."""
    import lm_eval.evaluator as evaluator

    from . import generator

    def make(original):
        def evaluate(*args, **kwargs):
            generator.hold(kwargs["lm"] if "lm" in kwargs else args[0])
            return original(*args, **kwargs)
        return evaluate

    _wrap_once(evaluator, "evaluate", "generator hand-over", make)
