"""The one training core: every method (SFT, TALR, DFT, FLOW, EAFT, ASFT, truncate-hard, L2-to-init, LoRA,
WiSE-FT) is an option.

``train(model, examples, config, evaluator, on_checkpoint)`` runs ``config.steps`` optimizer steps on
any Hugging Face causal LM and a list of ``EncodedExample`` (labels -100 on the prompt). Reading
order: config and its validation, the data order, the step (micro-batches, global token count,
loss, backward, L2, clipping, optimizer), checkpoints (evaluator + WiSE-FT grid), failure handling.

Batches. ``batch_size`` examples per micro-batch per process; one optimizer step consumes
``batch_size × grad_accum × world_size`` examples, taken in order from a seeded stream of epoch
permutations. The loss of every micro-batch is divided by the number of supervised tokens in the
WHOLE step (all micro-batches, all processes), so the accumulated gradient equals the gradient of the
full-batch token mean whatever the split. Under DDP each process multiplies its loss by the world
size because DDP averages gradients over processes.

TALR's median τ is computed per micro-batch (per process under DDP): with accumulation or several
processes it is the median of a smaller batch than the optimizer step sees. A fixed τ has no such
caveat. ASFT keeps a frozen copy of the model as it was before the first step (its KL anchor) and
runs it without gradient on every micro-batch. The model is trained in place (pass a copy to keep
the base model).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from talr_theory.training import objectives as obj
from talr_theory.training.config import METHODS, TrainConfig, checkpoint_steps, lr_factor  # noqa: F401 (re-exported)
from talr_theory.training.params import (
    add_l2_to_init_grad,
    apply_lora,
    frozen_copy,
    snapshot,
    trainable_parameters,
    wise_interpolate,
)
from talr_theory.training.tail import gather_compact, logits_and_labels


@dataclass
class TrainResult:
    """What a run produced: the trained model, checkpoint rows, per-step log, and how it ended."""

    model: nn.Module
    history: list[dict]
    log: list[dict]
    status: str = "ok"  # "ok" | "failed"
    failure: str | None = None
    failed_step: int | None = None
    seconds: float = 0.0


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class _ExampleStream:
    """Indices of a seeded sequence of epoch permutations; step s owns one contiguous global block."""

    def __init__(self, n: int, seed: int):
        self.n, self.gen, self.buffer = n, torch.Generator().manual_seed(seed), []

    def take(self, k: int) -> list[int]:
        while len(self.buffer) < k:
            self.buffer.extend(torch.randperm(self.n, generator=self.gen).tolist())
        out, self.buffer = self.buffer[:k], self.buffer[k:]
        return out


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _pad_id(model_or_loaded, pad_id: int | None) -> int:
    if pad_id is not None:
        return pad_id
    tok = None if isinstance(model_or_loaded, nn.Module) else getattr(model_or_loaded, "tokenizer", None)
    if tok is not None:
        from talr_theory.models import pad_token_id

        return pad_token_id(tok)
    return 0


def _reference_logits(ref_model: nn.Module | None, batch: dict, autocast, like=None) -> torch.Tensor | None:
    """The frozen base model's logits on ``batch`` (ASFT's anchor), without gradient, in the layout of the
    policy's output ``like`` (dense, or compact at its positions); None without a reference."""
    if ref_model is None:
        return None
    with torch.no_grad(), autocast:
        ref = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mine, theirs = getattr(like, "positions", None), getattr(ref, "positions", None)
    if theirs is not None:
        if mine is None or not torch.equal(mine, theirs):
            raise ValueError("ASFT reference: its compact logits are read at other positions than the policy's")
        return ref.logits
    return ref.logits if mine is None else gather_compact(ref.logits, mine)


def flow_weights_for(model, examples, pad_id: int, batch_size: int, tau: float | None = None) -> dict:
    """FLOW's static weight per example id, from the base model's mean token loss (the one place it is computed)."""
    from talr_theory.training.evaluation import per_example_nll

    base = per_example_nll(model, examples, pad_id=pad_id, batch_size=batch_size)
    weights, _tau = obj.flow_example_weights(base["mean_nll"].to_numpy().copy(), tau=tau)
    return dict(zip(base["example_id"], weights.tolist()))


def train(
    model_or_loaded,
    examples: list,
    config: TrainConfig,
    evaluator: Callable[[nn.Module, int], dict] | None = None,
    on_checkpoint: Callable[[dict, nn.Module], None] | None = None,
    pad_id: int | None = None,
    flow_weights: dict[str, float] | None = None,
    progress: bool = True,
    progress_desc: str | None = None,
) -> TrainResult:
    """Train ``model_or_loaded`` (an ``nn.Module`` or a ``LoadedModel``) on ``examples`` in place.

    ``evaluator(model, step) -> dict`` runs at every checkpoint (step 0 included) in eval mode and
    without gradients; ``on_checkpoint(row, model)`` then receives the row: step, epoch, method, lr,
    seed, wise_alpha, training statistics since the previous checkpoint (loss, token NLL, TALR mean
    weight, effective LR = LR × mean weight) and the evaluator's metrics. For WiSE-FT one row per α
    is produced at each checkpoint, evaluated on the interpolated weights. A non-finite loss stops the
    run: ``status="failed"`` and one failure row at the next checkpoint step (metrics absent).
    ``flow_weights`` maps example_id -> static FLOW weight; if None for method "flow", the weights are
    computed from the model before training (it is the base model then).
    """
    from tqdm.auto import tqdm

    from talr_theory.data.encode import collate

    config.validate()
    if not examples:
        raise ValueError("train() needs at least one training example")
    # A LoadedModel carries .model and .tokenizer; an HF causal LM also has a .model (its backbone).
    model = model_or_loaded if isinstance(model_or_loaded, nn.Module) else model_or_loaded.model
    pad = _pad_id(model_or_loaded, pad_id)
    device = next(model.parameters()).device
    world, rank = _dist_info()
    torch.manual_seed(config.seed)
    start = time.perf_counter()

    flow_w = None
    if config.method == "flow":
        if flow_weights is None:
            flow_weights = flow_weights_for(model, examples, pad, config.batch_size, config.flow_tau or None)
        flow_w = flow_weights
    if config.method == "lora":
        model = apply_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets)
    theta0 = snapshot(model) if config.method in ("l2", "wise-ft") else None
    ref_model = frozen_copy(model) if config.objective == "asft" else None

    params = trainable_parameters(model)
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    ddp = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model)
    forward_model = ddp if ddp is not None else model
    loss_fn = obj.OBJECTIVES[config.objective]
    loss_opts = config.loss_options()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16_autocast
                else contextlib.nullcontext())

    stream = _ExampleStream(len(examples), config.seed)
    per_step = config.batch_size * config.grad_accum * world
    marks = checkpoint_steps(config.steps, config.eval_every)
    history: list[dict] = []
    log: list[dict] = []
    interval: list[dict] = []

    def emit(step: int, failed: str | None = None) -> None:
        tokens = sum(r["n_tokens"] for r in interval)
        base = {
            "step": step,
            "epoch": step * per_step / len(examples),
            "method": config.method,
            "lr": config.lr,
            "seed": config.seed,
            "status": "failed" if failed else "ok",
            "failure": failed or "",
            "train_loss": (sum(r["loss"] for r in interval) / len(interval)) if interval else math.nan,
            "train_nll": (sum(r["sum_nll"] for r in interval) / tokens) if tokens else math.nan,
            "mean_weight": (sum(r["sum_weight"] for r in interval) / tokens) if tokens else math.nan,
            "current_lr": optimizer.param_groups[0]["lr"],
        }
        base["effective_lr"] = base["current_lr"] * base["mean_weight"] if tokens else math.nan
        if config.objective == "talr":
            taus = [r["tau"] for r in interval if math.isfinite(r.get("tau", math.nan))]
            base["tau_mean"] = sum(taus) / len(taus) if taus else math.nan
        if config.objective == "asft":
            base["mean_kl_to_base"] = (sum(r["sum_kl"] for r in interval) / tokens) if tokens else math.nan
        alphas = config.wise_alphas if config.method == "wise-ft" else (1.0,)
        theta1 = snapshot(model) if config.method == "wise-ft" else None
        for alpha in alphas:
            row = dict(base, wise_alpha=float(alpha))
            if not failed:
                if theta1 is not None:
                    wise_interpolate(model, theta0, theta1, alpha)
                if evaluator is not None:
                    was_training = model.training
                    model.eval()
                    with torch.no_grad():
                        row.update(evaluator(model, step))
                    model.train(was_training)
            history.append(row)
            if on_checkpoint is not None:
                on_checkpoint(row, model)
        if theta1 is not None:
            wise_interpolate(model, theta0, theta1, 1.0)
        interval.clear()

    emit(0)
    status, failure, failed_step = "ok", None, None
    model.train()
    bar = tqdm(range(1, config.steps + 1), desc=progress_desc or f"{config.method} lr={config.lr:g}",
               disable=not progress or rank != 0, leave=False)
    for step in bar:
        ids = stream.take(per_step)
        micro = []
        for m in range(config.grad_accum):
            lo = (m * world + rank) * config.batch_size
            chunk = [examples[i] for i in ids[lo:lo + config.batch_size]]
            batch = collate(chunk, pad)
            if flow_w is not None:
                batch["example_weights"] = torch.tensor([flow_w[e.example_id] for e in chunk])
            micro.append(batch)
        n_local = sum(obj.count_supervised(b["labels"]) for b in micro)
        n_global = torch.tensor(float(n_local), device=device)
        if world > 1:
            torch.distributed.all_reduce(n_global)
        optimizer.zero_grad(set_to_none=True)
        stats = {"loss": 0.0, "n_tokens": 0, "sum_nll": 0.0, "sum_weight": 0.0, "sum_kl": 0.0}
        taus = []
        for m, batch in enumerate(micro):
            batch = _to_device(batch, device)
            ew = batch.pop("example_weights", None)
            sync = contextlib.nullcontext() if (ddp is None or m == len(micro) - 1) else ddp.no_sync()
            with sync:
                with autocast:
                    out = forward_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                logits, labels = logits_and_labels(out, batch["labels"])  # compact: logits only where read
                ref = _reference_logits(ref_model, batch, autocast, like=out)
                loss, info = loss_fn(logits, labels, n_global, example_weights=ew, ref_logits=ref, **loss_opts)
                (loss * world).backward()
            stats["loss"] += float(loss.detach())
            for k in ("n_tokens", "sum_nll", "sum_weight", "sum_kl"):
                stats[k] += info.get(k, 0.0)
            if "tau" in info:
                taus.append(info["tau"])
        if not math.isfinite(stats["loss"]):
            status, failed_step = "failed", step
            failure = f"non-finite training loss ({stats['loss']}) at step {step}; run stopped"
            break
        if config.method == "l2":
            stats["l2_penalty"] = add_l2_to_init_grad(model, theta0, config.l2_coeff)
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        finite_taus = [t for t in taus if math.isfinite(t)]
        stats["tau"] = sum(finite_taus) / len(finite_taus) if finite_taus else math.nan
        stats["step"] = step
        log.append(stats)
        interval.append(stats)
        if step in marks:
            emit(step)
    if status == "failed":
        next_mark = next(s for s in marks if s >= failed_step)
        emit(next_mark, failed=failure)
    bar.close()
    model.eval()
    return TrainResult(model=model, history=history, log=log, status=status, failure=failure,
                       failed_step=failed_step, seconds=time.perf_counter() - start)
