"""Drop-in TALR, DFT, CE and FLOW for the Hugging Face ``Trainer`` and for TRL's ``SFTTrainer``.

``Trainer(..., compute_loss_func=TokenLoss("talr", tau="median", w_min=0.01))`` is all it takes for
the token losses. transformers (5.x; checked against 5.24's ``Trainer``) calls
``compute_loss_func(outputs, labels, num_items_in_batch=N)`` where N is the number of supervised
tokens of the whole accumulated batch, counted on ``labels[..., 1:]`` for causal LMs and summed over
processes when ``average_tokens_across_devices`` is on (the default). The Trainer then multiplies
the loss by the number of processes (DDP averages gradients) and does not divide it again by the
accumulation steps, because a ``compute_loss_func`` is taken to be normalized already. Our losses
divide by N, so gradient accumulation and multi-GPU runs give the full-batch token-mean gradient;
TALR's median τ remains per micro-batch (per process), as in ``training.core``.

FLOW weights every token of an example by that example's static weight, so the weight has to travel
with the batch: put it in a dataset column ``example_weight`` (``flow_weight_column`` computes it from
the base model), wrap the collator with ``WeightCollator`` (it turns the column into
``batch["example_weights"]``), and build the trainer with ``make_trainer`` / ``make_sft_trainer``:
their ``compute_loss`` takes ``example_weights`` out of the batch (the model never sees it) and hands
it to ``TokenLoss("flow")``. The same two helpers work for the token losses too.

``make_sft_trainer`` builds TRL's ``SFTTrainer`` (TRL >= 1.0; the ``trl`` extra) with the same loss.
"""

from __future__ import annotations

import torch

from talr_theory.training import objectives as obj

EXAMPLE_WEIGHT_COLUMN = "example_weight"  # one float per dataset row (FLOW)
EXAMPLE_WEIGHTS_KEY = "example_weights"  # the collated [B] tensor in the batch


class TokenLoss:
    """``compute_loss_func``-compatible callable: ``loss = TokenLoss('talr')(outputs, labels, num_items_in_batch)``.

    ``last_info`` keeps the info dict of the latest call (tokens, Σ NLL, mean weight, τ) for logging.
    For ``"flow"`` the per-example weights come from the ``example_weights`` argument or, inside
    ``make_trainer``/``make_sft_trainer``, from the batch (set by their ``compute_loss``).
    """

    def __init__(self, method: str = "talr", tau: str | float = "median", w_min: float = obj.TALR_W_MIN):
        names = {"sft": "ce", "ce": "ce", "talr": "talr", "dft": "dft", "flow": "flow"}
        if method not in names:
            raise ValueError(f"TokenLoss: method {method!r} not supported here; expected sft, talr, dft or flow")
        if not (0.0 <= w_min <= 1.0):
            raise ValueError(f"TokenLoss: w_min={w_min} must be in [0, 1]")
        if isinstance(tau, str) and tau not in obj.TAU_RULES:
            tau = float(tau)
        if not isinstance(tau, str) and not tau > 0:
            raise ValueError(f"TokenLoss: tau={tau} must be > 0, 'median' or 'median-seq'")
        self.method = names[method]
        self.fn = obj.OBJECTIVES[self.method]
        self.opts = {"tau": tau, "w_min": w_min} if self.method == "talr" else {}
        self.last_info: dict = {}
        self.batch_example_weights: torch.Tensor | None = None  # set per micro-batch by the trainers below

    def __call__(self, outputs, labels, num_items_in_batch=None, example_weights=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if example_weights is None:
            example_weights = self.batch_example_weights
        if self.method == "flow" and example_weights is None:
            raise ValueError(
                f"TokenLoss('flow') needs per-example weights: add a {EXAMPLE_WEIGHT_COLUMN!r} dataset column "
                f"(flow_weight_column), wrap the collator in WeightCollator and build the trainer with "
                f"make_trainer / make_sft_trainer")
        loss, info = self.fn(logits, labels, num_items_in_batch, example_weights=example_weights, **self.opts)
        self.last_info = info
        return loss


class WeightCollator:
    """Wrap any collator: take ``example_weight`` out of each feature, collate the rest, add ``example_weights``.

    Features without the column pass through unchanged (no ``example_weights`` in the batch); a batch
    where only some features have it is an error, never a silent default.
    """

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        features = [dict(f) for f in features]
        has = [EXAMPLE_WEIGHT_COLUMN in f for f in features]
        if any(has) and not all(has):
            raise ValueError(f"WeightCollator: {has.count(False)} of {len(features)} features lack "
                             f"{EXAMPLE_WEIGHT_COLUMN!r}")
        weights = [float(f.pop(EXAMPLE_WEIGHT_COLUMN)) for f in features] if all(has) else None
        batch = self.collator(features)
        if weights is not None:
            batch[EXAMPLE_WEIGHTS_KEY] = torch.tensor(weights, dtype=torch.float32)
        return batch


def flow_weight_column(model, examples: list, pad_id: int = 0, batch_size: int = 8,
                       tau: float | None = None) -> tuple[list[float], float]:
    """FLOW's static weights for ``examples`` (``EncodedExample``s, in order) from the base ``model``.

    The same computation as ``training.core.train`` for method "flow": per-example mean NLL under the
    model (``evaluation.per_example_nll``) through ``objectives.flow_example_weights``. Returns (weights, τ).
    """
    from talr_theory.training.evaluation import per_example_nll

    base = per_example_nll(model, examples, pad_id=pad_id, batch_size=batch_size)
    weights, t = obj.flow_example_weights(base["mean_nll"].to_numpy().copy(), tau=tau)
    return weights.tolist(), t


class _ExampleWeightsMixin:
    """``compute_loss`` that moves ``example_weights`` from the batch to the ``TokenLoss`` for one call."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop(EXAMPLE_WEIGHTS_KEY, None)
        loss_fn = self.compute_loss_func
        if weights is not None and not isinstance(loss_fn, TokenLoss):
            raise ValueError("the batch carries example_weights but compute_loss_func is not a TokenLoss")
        if isinstance(loss_fn, TokenLoss):
            loss_fn.batch_example_weights = weights
        try:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        finally:
            if isinstance(loss_fn, TokenLoss):
                loss_fn.batch_example_weights = None


def make_trainer(loss: TokenLoss, **kwargs):
    """``transformers.Trainer(compute_loss_func=loss, **kwargs)`` that also carries FLOW's per-example weights."""
    from transformers import Trainer

    cls = type("TokenLossTrainer", (_ExampleWeightsMixin, Trainer), {})
    return cls(compute_loss_func=loss, **kwargs)


def make_sft_trainer(loss: TokenLoss, **kwargs):
    """TRL's ``SFTTrainer`` training with ``loss`` (and FLOW weights from the batch); needs the ``trl`` extra.

    TRL's own ``loss_type="dft"`` and our ``TokenLoss("dft")`` compute the same loss (tests check it);
    TRL warns that ``compute_loss_func`` is deprecated in favour of subclassing, which this is, but the
    loss still enters through ``compute_loss_func`` so TRL's token normalization and DDP scaling apply.
    """
    try:
        from trl import SFTTrainer
    except ImportError as err:
        raise ImportError("TRL is not installed (it is optional): `pip install 'talr-theory[trl]'`, or use "
                          "make_trainer / transformers.Trainer(compute_loss_func=TokenLoss(...))") from err
    cls = type("TokenLossSFTTrainer", (_ExampleWeightsMixin, SFTTrainer), {})
    return cls(compute_loss_func=loss, **kwargs)
