"""CrPOConfig and CrPOTrainer: TRL's DPOTrainer with each pair's loss weighted by how much
more creative its chosen answer is.

How the weight gets in without copying TRL's loss code: every per-pair loss type in
TRL 1.16 depends on pair i only through rows i (chosen) and B+i (rejected) of the
policy's `log_probs` output, and the batch loss is the mean over pairs. Multiplying the
gradient of those two rows by w_i therefore gives exactly the gradient of
mean(w * per-pair loss), for every per-pair loss type, LoRA or not, with gradient
accumulation and under DDP/DeepSpeed (each process scales its own rows). A forward hook
on the policy registers that gradient hook; nothing else of TRL changes.

TRL's logged `loss` stays the unweighted DPO loss; CrPO logs its own figures under
`crpo/`. The trainer checks at every step that TRL still lays the batch out as it
expects and raises otherwise, rather than training with wrong weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass

import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer

from .scores import DIMENSIONS, score_column
from .weights import STRATEGIES, crpo_weight

WEIGHT = "crpo_weight"
GAIN = "crpo_gain_{}"  # per-dimension gain max(0, s(chosen) - s(rejected)), for logging
# Loss types that sort log-ratios across the batch: a pair's loss is not its own there.
BATCH_SORTED_LOSSES = ("aot", "aot_unpaired")
TRL_LAYOUT = ("_compute_loss", "_set_signature_columns_if_needed", "compute_ref_log_probs")


@dataclass
class _CrPOSettings(DPOConfig):
    crpo_strategy: str = field(default="add", metadata={
        "help": "How per-dimension gains combine into one weight: 'add' (weighted sum) or 'mult' (product).",
        "choices": list(STRATEGIES)})
    cpo_strategy: str | None = field(default=None, metadata={
        "help": "The paper's configs' spelling of crpo_strategy; where given, it wins.",
        "choices": [*STRATEGIES, None]})
    crpo_normalize_weights: bool = field(default=False, metadata={
        "help": "Divide every weight by the mean weight of the training pairs, so weights average 1: the same "
                "expected step size as DPO at the same learning rate, only the direction differs (not in the paper)."})

    def __post_init__(self):
        super().__post_init__()
        if self.cpo_strategy is not None:
            self.crpo_strategy = self.cpo_strategy
        if self.crpo_strategy not in STRATEGIES:
            raise ValueError(f"crpo_strategy {self.crpo_strategy!r}: choose one of {STRATEGIES}")
        negative = [f"lambda_{k}" for k, v in self.lambdas.items() if v < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must be at least 0")
        sorted_types = [t for t in self.loss_type if t in BATCH_SORTED_LOSSES]
        if self.weighted and sorted_types:
            raise ValueError(f"loss_type {sorted_types} sorts log-ratios across the batch, so a pair has no loss "
                             "of its own to weight; use a per-pair loss type (sigmoid, ipo, hinge, ...) with CrPO")

    @property
    def lambdas(self) -> dict[str, float]:
        return {dim: getattr(self, f"lambda_{dim}") for dim in DIMENSIONS}

    @property
    def weighted(self) -> bool:
        return any(v > 0 for v in self.lambdas.values())


# One `lambda_<dim>` field per CrPO dimension of the metric registry (crpo_bench/scoring/registry.py).
CrPOConfig = make_dataclass(
    "CrPOConfig",
    [(f"lambda_{dim}", float, field(default=0.0, metadata={"help": f"Weight of the {dim} gain."}))
     for dim in DIMENSIONS],
    bases=(_CrPOSettings,),
    namespace={"__doc__": "DPOConfig plus the CrPO weights (lambda_<dim>, crpo_strategy). All lambdas 0 is "
                          "plain DPO.", "__module__": __name__},
)


def score_columns(dataset, dim: str) -> tuple[str | None, str | None]:
    """The chosen and rejected score columns of a dimension: the paper's names
    (`novelty_chosen`), else crpo-bench 0.1's (`chosen_novelty`); None where absent."""
    names = dataset.column_names
    for chosen, rejected in ((score_column(dim, "chosen"), score_column(dim, "rejected")),
                             (f"chosen_{dim}", f"rejected_{dim}")):
        if chosen in names:
            return chosen, rejected if rejected in names else None
    return None, None


def pair_scores(row: dict, columns: dict[str, tuple[str, str | None]]) -> tuple[dict, dict]:
    """A pair's chosen and rejected score of each dimension of `columns` (from score_columns);
    rejected holds only the scores the pair has."""
    chosen = {dim: row[c] for dim, (c, _) in columns.items()}
    rejected = {dim: row[r] for dim, (_, r) in columns.items() if r is not None and row[r] is not None}
    return chosen, rejected


def add_weights(dataset, args: CrPOConfig, name: str = "train", scale: float = 1.0):
    """The dataset with the `crpo_weight` column (times `scale`) and one gain column per active
    dimension. A missing rejected score counts as 0, as in the paper."""
    active = [dim for dim, lam in args.lambdas.items() if lam > 0]
    columns = {dim: score_columns(dataset, dim) for dim in active}
    missing = [score_column(dim, "chosen") for dim in active if columns[dim][0] is None]
    if missing:
        raise ValueError(f"{name} dataset: {', '.join(f'lambda_{m[:-7]} > 0' for m in missing)} needs column(s) "
                         f"{missing}; add them with `crpo-train score`")

    def weigh(row):
        chosen, rejected = pair_scores(row, columns)
        gains = {GAIN.format(dim): max(0.0, chosen[dim] - rejected.get(dim, 0.0)) for dim in active}
        return {WEIGHT: scale * crpo_weight(chosen, rejected, args.lambdas, args.crpo_strategy), **gains}

    return dataset.map(weigh, desc=f"CrPO weights ({name})")


def mean_one_scale(weighted_train) -> float:
    """1 / the mean weight of the training pairs (crpo_normalize_weights)."""
    mean = math.fsum(weighted_train[WEIGHT]) / max(1, len(weighted_train))
    if not mean > 0:
        raise ValueError("crpo_normalize_weights: every training pair has weight 0, so there is no mean to divide by; "
                         "check the lambdas and the score columns")
    return 1.0 / mean


class _WeightCollator:
    """Wraps TRL's collator: the same batch plus the weight and gain tensors."""

    def __init__(self, collator, keys: list[str]):
        self.collator, self.keys = collator, keys

    def __call__(self, examples):
        batch = self.collator(examples)
        for key in self.keys:
            batch[key] = torch.tensor([example[key] for example in examples], dtype=torch.float64)
        return batch


class _RowGradientScaler:
    """Forward hook on the policy: scales the gradient of log_probs rows i and B+i by w_i,
    and keeps the per-sequence log-probs of the forwards it sees, for logging."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights
        self.scaled = 0
        self.policy_logps = None
        self.ref_logps = None

    def __call__(self, module, args, output):
        log_probs = getattr(output, "log_probs", None)
        if log_probs is None:
            raise RuntimeError("CrPOTrainer: the policy output has no `log_probs`; TRL's DPOTrainer no longer "
                               "computes its loss the way CrPO relies on (TRL 1.16 layout)")
        n = len(self.weights)
        if log_probs.dim() != 2 or log_probs.size(0) != 2 * n:
            raise RuntimeError(f"CrPOTrainer: expected log_probs of shape [2B, T] = [{2 * n}, T] laid out "
                               f"[chosen; rejected], got {tuple(log_probs.shape)}; TRL's batch layout changed "
                               "(packing or padding-free?), so per-pair weights cannot be applied")
        if not log_probs.requires_grad:  # the reference forward (PEFT adapter disabled)
            self.ref_logps = log_probs.detach().sum(dim=1)
            return
        scale = torch.cat([self.weights, self.weights]).to(log_probs.dtype)[:, None]
        log_probs.register_hook(lambda grad: grad * scale)
        self.scaled += 1
        self.policy_logps = log_probs.detach().sum(dim=1)


class CrPOTrainer(DPOTrainer):
    """DPOTrainer whose per-pair losses are weighted by the CrPO weight of each pair."""

    _tag_names = ["trl", "dpo", "crpo"]

    def __init__(self, model, ref_model=None, args: CrPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, **kwargs):
        missing = [name for name in TRL_LAYOUT if not hasattr(DPOTrainer, name)]
        if missing:
            raise RuntimeError(f"CrPOTrainer needs DPOTrainer.{', '.join(missing)} (TRL 1.16); this TRL has none")
        if not isinstance(args, CrPOConfig):
            raise TypeError("CrPOTrainer needs args=CrPOConfig(...)")
        self._crpo_keys = [WEIGHT] + [GAIN.format(d) for d, lam in args.lambdas.items() if lam > 0]
        if args.weighted:
            train_dataset = add_weights(train_dataset, args, "train")
            # eval pairs are scaled by the training pairs' mean, so eval and train weights compare
            scale = mean_one_scale(train_dataset) if args.crpo_normalize_weights else 1.0
            if scale != 1.0:
                train_dataset = train_dataset.map(lambda row: {WEIGHT: scale * row[WEIGHT]},
                                                  desc="CrPO weights (train, mean 1)")
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: add_weights(v, args, k, scale) for k, v in eval_dataset.items()}
            elif eval_dataset is not None:
                eval_dataset = add_weights(eval_dataset, args, "eval", scale)
        super().__init__(model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, **kwargs)
        if args.weighted:
            self.data_collator = _WeightCollator(self.data_collator, self._crpo_keys)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.args.weighted:
            self._signature_columns = list(self._signature_columns) + [
                k for k in self._crpo_keys if k not in self._signature_columns]

    def compute_ref_log_probs(self, model, inputs):
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in self._crpo_keys})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.args.weighted:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        extras = {key: inputs.pop(key) for key in self._crpo_keys}
        weights = extras[WEIGHT].to(self.accelerator.device)
        scaler = _RowGradientScaler(weights)
        hooks = [model.register_forward_hook(scaler)]
        if self.ref_model is not None:
            hooks.append(self.ref_model.register_forward_hook(scaler))
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            for hook in hooks:
                hook.remove()
        if model.training and torch.is_grad_enabled() and scaler.scaled != 1:
            raise RuntimeError(f"CrPOTrainer: expected one policy forward with gradients per step, saw "
                               f"{scaler.scaled}; TRL's DPOTrainer changed how it computes the loss")
        self._log_crpo(extras, scaler, inputs)
        return result

    def _log_crpo(self, extras: dict, scaler: _RowGradientScaler, inputs: dict) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        gather = self.accelerator.gather_for_metrics
        weights = gather(extras[WEIGHT].to(self.accelerator.device))
        metrics["crpo/weight_mean"].append(weights.mean().item())
        metrics["crpo/weight_max"].append(weights.max().item())
        metrics["crpo/weight_zero_fraction"].append((weights == 0).double().mean().item())
        for key in self._crpo_keys[1:]:
            metrics[f"crpo/{key.removeprefix('crpo_')}"].append(gather(extras[key].to(self.accelerator.device))
                                                               .mean().item())
        objective = self._sigmoid_objective(scaler, inputs)
        if objective is not None:
            metrics["crpo/objective"].append(gather(objective).mean().item())

    def _sigmoid_objective(self, scaler: _RowGradientScaler, inputs: dict) -> torch.Tensor | None:
        """mean(w * DPO sigmoid loss) for the paper's setting (sigmoid, reverse KL, no
        length desensitisation); other loss types log the weight statistics only."""
        args = self.args
        if list(self.loss_types) != ["sigmoid"] or args.f_divergence_type != "reverse_kl" or args.ld_alpha:
            return None
        if scaler.policy_logps is None:
            return None
        if "ref_chosen_logps" in inputs:
            ref = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(scaler.policy_logps)
        elif scaler.ref_logps is not None:
            ref = scaler.ref_logps
        else:
            return None
        chosen, rejected = (scaler.policy_logps - ref).chunk(2)
        losses = -F.logsigmoid(self.beta * (chosen - rejected))
        return (scaler.weights.to(losses.dtype) * losses).mean().reshape(1)
