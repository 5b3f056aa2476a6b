"""Parameterizations and regularizers of the one training core: full FT, L2-to-init, LoRA, WiSE-FT.

- Full fine-tuning: every parameter trains (nothing to do here).
- L2-to-init: the penalty ``(c/2)·||θ - θ0||²`` is added to the objective. Its gradient ``c·(θ - θ0)``
  is added straight to ``.grad`` once per optimizer step (after the micro-batches are accumulated)
  instead of building the penalty into every micro-batch graph: same gradient, no graph overhead.
  With AdamW this is a coupled L2 term (it goes through Adam's normalization), which is what an
  "L2 towards the pre-trained weights" loss means; AdamW's own decoupled weight decay pulls to 0.
- LoRA: adapters through ``peft`` (rank, alpha, target modules); only the adapters train.
- A frozen copy of the model (``frozen_copy``): the fixed base that ASFT's KL anchor compares with.
- WiSE-FT: post-hoc interpolation ``θ(α) = (1-α)·θ0 + α·θ1`` of the trained weights with the
  initial ones, evaluated over a grid of α.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def snapshot(model: nn.Module, trainable_only: bool = True) -> dict[str, torch.Tensor]:
    """A detached copy of the (trainable) parameters, keyed by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()
            if p.requires_grad or not trainable_only}


@torch.no_grad()
def add_l2_to_init_grad(model: nn.Module, init: dict[str, torch.Tensor], coeff: float) -> float:
    """Add ``coeff·(θ - θ0)`` to each parameter's gradient; return the penalty ``(coeff/2)·||θ-θ0||²``.

    The penalty value is returned for logging (in float64). Parameters without a gradient yet get one.
    """
    total = 0.0
    for name, p in model.named_parameters():
        if not p.requires_grad or name not in init:
            continue
        diff = p - init[name]
        total += float(diff.double().pow(2).sum())
        if p.grad is None:
            p.grad = coeff * diff
        else:
            p.grad.add_(diff, alpha=coeff)
    return 0.5 * coeff * total


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0,
               targets: str | Iterable[str] = "all-linear", dropout: float = 0.0) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (peft); the base weights are frozen.

    ``targets`` is peft's ``target_modules``: ``"all-linear"`` (every linear layer except the output
    head) or module names such as ``"q_proj,v_proj"``.
    """
    from peft import LoraConfig, get_peft_model

    if rank <= 0:
        raise ValueError(f"LoRA rank must be a positive integer; got {rank}")
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout),
                        target_modules=targets if isinstance(targets, str) else list(targets),
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@torch.no_grad()
def wise_interpolate(model: nn.Module, theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor],
                     alpha: float) -> None:
    """Load ``(1-α)·θ0 + α·θ1`` into ``model`` in place (parameters named in both dicts)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"WiSE-FT alpha must be in [0, 1]; got {alpha}")
    missing = set(theta0) ^ set(theta1)
    if missing:
        raise ValueError(f"WiSE-FT endpoints do not have the same parameters (e.g. {sorted(missing)[:3]})")
    params = dict(model.named_parameters())
    for name, t0 in theta0.items():
        # torch.lerp(t0, t1, α) = t0 + α (t1 - t0); exact at α = 0 and α = 1.
        params[name].copy_(t0 if alpha == 0.0 else theta1[name] if alpha == 1.0 else torch.lerp(t0, theta1[name], alpha))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter frozen (a fixed reference, e.g. ASFT's base)."""
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
