"""The evaluated model steps aside before the scoring models load.

lm-eval generates every request of an evaluation before it scores any, and our scoring then
loads models of its own (an embedder, an LM for surprise, a reward model; the paper profile's
are 27B each). compat.install_generator_hook hands us the model of each `evaluate` call
(`hold`); the first aggregation calls `step_aside`, which moves a transformers generator off
its GPU to the CPU and empties the CUDA cache; the next `evaluate` of the same model (`crpo-bench
run` evaluates one task at a time) puts it back first.

Left where they are: a model on the CPU (moving it frees nothing), a model spread over
devices by a device map (moving it would undo the map), and models whose weights are not a
torch module of ours to move (API models; vLLM's engine).
"""

from __future__ import annotations

_held = {"lm": None, "moved_from": None}


def _module(lm):
    """The generator's torch module where it is one we may move, else None."""
    import torch

    module = getattr(lm, "_model", None)
    if not isinstance(module, torch.nn.Module) or getattr(module, "hf_device_map", None):
        return None
    return module


def _frees_memory(device) -> bool:
    return device.type != "cpu"


def hold(lm) -> None:
    """Called as an evaluation starts: remember its model, and put it back on its device if
    an earlier evaluation moved it aside."""
    module, moved_from = _module(_held["lm"]), _held["moved_from"]
    if module is not None and moved_from is not None:
        module.to(moved_from)
    _held.update(lm=lm, moved_from=None)


def step_aside() -> None:
    """Called before scoring: move the held generator off its accelerator (once)."""
    module = _module(_held["lm"])
    if module is None or _held["moved_from"] is not None:
        return
    parameter = next(module.parameters(), None)
    if parameter is None or not _frees_memory(parameter.device):
        return
    _held["moved_from"] = parameter.device
    module.to("cpu")
    import torch

    if parameter.device.type == "cuda":
        torch.cuda.empty_cache()
