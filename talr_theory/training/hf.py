"""Drop-in token losses (CE, TALR, DFT, FLOW, EAFT, ASFT, truncate-hard) for the HF ``Trainer`` and TRL's ``SFTTrainer``.

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
it to ``TokenLoss("flow")``. The same two helpers work for the token losses too. ASFT's KL anchor
needs the base model's logits on every batch: the two helpers keep a frozen copy of the model as it
was at construction (or ``TokenLoss(ref_model=...)``) and run it without gradient.

``make_sft_trainer`` builds TRL's ``SFTTrainer`` (TRL >= 1.0, checked against 1.16; the ``trl``
extra) with the same loss, overriding ``compute_loss`` as TRL asks of custom losses; see there for
what that changes against TRL's default chunked NLL.
"""

from __future__ import annotations

import torch

from talr_theory.tokens.entropy import predictive_entropy
from talr_theory.training import objectives as obj

EXAMPLE_WEIGHT_COLUMN = "example_weight"  # one float per dataset row (FLOW)
EXAMPLE_WEIGHTS_KEY = "example_weights"  # the collated [B] tensor in the batch


class TokenLoss:
    """``compute_loss_func``-compatible callable: ``loss = TokenLoss('talr')(outputs, labels, num_items_in_batch)``.

    ``method`` is sft (= ce), talr, dft, flow, eaft, asft or truncate-hard; the options are those of
    ``TrainConfig`` (same names, same defaults, same validation). ``last_info`` keeps the info dict of
    the latest call (tokens, Σ NLL, mean weight, τ, Σ KL) for logging. For ``"flow"`` the per-example
    weights come from the ``example_weights`` argument or, inside ``make_trainer``/``make_sft_trainer``,
    from the batch. ``"asft"`` needs the base model's logits on the same batch: ``make_trainer`` /
    ``make_sft_trainer`` compute them with ``ref_model`` (a frozen copy of the model, taken when the
    first trainer is built with this ``TokenLoss``, when not given); a bare
    ``Trainer(compute_loss_func=TokenLoss("asft"))`` cannot and says so.
    """

    def __init__(self, method: str = "talr", tau: str | float = "median", w_min: float = obj.TALR_W_MIN,
                 eaft_k: int = obj.EAFT_TOP_K, eaft_alpha: float = obj.EAFT_ALPHA, asft_beta: float = obj.ASFT_BETA,
                 truncate_theta: float = obj.TRUNCATE_THETA, ref_model=None):
        from talr_theory.training.config import TrainConfig

        names = {"sft": "sft", "ce": "sft", "talr": "talr", "dft": "dft", "flow": "flow", "eaft": "eaft",
                 "asft": "asft", "truncate-hard": "truncate-hard"}
        if method not in names:
            raise ValueError(f"TokenLoss: method {method!r} not supported here; expected one of {', '.join(names)}")
        try:
            config = TrainConfig(method=names[method], tau=str(tau), w_min=w_min, eaft_k=eaft_k,
                                 eaft_alpha=eaft_alpha, asft_beta=asft_beta,
                                 truncate_theta=truncate_theta).validate()
        except ValueError as err:
            raise ValueError(f"TokenLoss: {err}") from None
        self.method = config.objective
        self.fn = obj.OBJECTIVES[self.method]
        self.opts = config.loss_options()
        self.ref_model = ref_model
        self.last_info: dict = {}
        self.batch_example_weights: torch.Tensor | None = None  # set per micro-batch by the trainers below
        self.batch_ref_logits: torch.Tensor | None = None  # ASFT: set per micro-batch by the trainers below

    def __call__(self, outputs, labels, num_items_in_batch=None, example_weights=None, ref_logits=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if example_weights is None:
            example_weights = self.batch_example_weights
        if ref_logits is None:
            ref_logits = self.batch_ref_logits
        if self.method == "flow" and example_weights is None:
            raise ValueError(
                f"TokenLoss('flow') needs per-example weights: add a {EXAMPLE_WEIGHT_COLUMN!r} dataset column "
                f"(flow_weight_column), wrap the collator in WeightCollator and build the trainer with "
                f"make_trainer / make_sft_trainer")
        if self.method == "asft" and ref_logits is None:
            raise ValueError("TokenLoss('asft') needs the base model's logits on each batch: build the trainer with "
                             "make_trainer / make_sft_trainer (they run the frozen base), or pass ref_logits")
        loss, info = self.fn(logits, labels, num_items_in_batch, example_weights=example_weights,
                             ref_logits=ref_logits, **self.opts)
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


def _reference_logits(loss: TokenLoss, model, inputs: dict) -> torch.Tensor:
    """ASFT's anchor: the frozen reference model's logits on this micro-batch's model inputs, without gradient."""
    ref = loss.ref_model
    device = next(model.parameters()).device
    if next(ref.parameters()).device != device:
        ref.to(device)
    model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache")}
    with torch.no_grad():
        return ref(**model_inputs, use_cache=False).logits


class _ExampleWeightsMixin:
    """``compute_loss`` that hands the ``TokenLoss`` what it needs beyond the logits for one call.

    FLOW: ``example_weights`` moved from the batch (the model never sees them). ASFT: the frozen
    reference model's logits on the same inputs.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop(EXAMPLE_WEIGHTS_KEY, None)
        loss_fn = self.compute_loss_func
        if weights is not None and not isinstance(loss_fn, TokenLoss):
            raise ValueError("the batch carries example_weights but compute_loss_func is not a TokenLoss")
        if isinstance(loss_fn, TokenLoss):
            loss_fn.batch_example_weights = weights
            if loss_fn.method == "asft":
                loss_fn.batch_ref_logits = _reference_logits(loss_fn, model, inputs)
        try:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        finally:
            if isinstance(loss_fn, TokenLoss):
                loss_fn.batch_example_weights = None
                loss_fn.batch_ref_logits = None


def _attach_reference(loss: TokenLoss, model) -> None:
    """ASFT without an explicit ``ref_model``: freeze a copy of the model as it is now (before training)."""
    if loss.method == "asft" and loss.ref_model is None:
        if model is None:
            raise ValueError("TokenLoss('asft') needs model=... (or TokenLoss(ref_model=...)) to anchor to")
        from talr_theory.training.params import frozen_copy

        loss.ref_model = frozen_copy(model)


def make_trainer(loss: TokenLoss, **kwargs):
    """``transformers.Trainer(compute_loss_func=loss, **kwargs)`` that also carries FLOW's weights and ASFT's base."""
    from transformers import Trainer

    cls = type("TokenLossTrainer", (_ExampleWeightsMixin, Trainer), {})
    trainer = cls(compute_loss_func=loss, **kwargs)
    _attach_reference(loss, trainer.model)
    return trainer


class _SFTTokenLossMixin:
    """SFTTrainer's ``compute_loss`` replaced (as TRL asks of custom losses): one forward with full logits.

    TRL's default path (``loss_type="nll"``) computes the NLL in chunks through a fused LM head and
    never builds the [B, T, V] logits; every token-weighted loss here needs them (weights from p,
    entropy, the KL to the base), so this forward builds them, the loss is the ``TokenLoss``, and
    TRL's logged ``entropy`` / ``mean_token_accuracy`` are computed from the same logits (no second
    forward). The loss is divided by ``num_items_in_batch`` and multiplied by the number of processes
    under ``average_tokens_across_devices``, exactly as TRL's own loss.
    """

    loss_is_scaled_for_ga = True  # TokenLoss divides by the whole accumulated batch's token count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_fn = self.compute_loss_func
        inputs = dict(inputs)
        loss_fn.batch_example_weights = inputs.pop(EXAMPLE_WEIGHTS_KEY, None)
        labels = inputs.pop("labels")
        try:
            if loss_fn.method == "asft":
                loss_fn.batch_ref_logits = _reference_logits(loss_fn, model, inputs)
            outputs = model(**{k: v for k, v in inputs.items() if k != "use_cache"}, use_cache=False)
            loss = loss_fn(outputs, labels, num_items_in_batch=num_items_in_batch)
        finally:
            loss_fn.batch_example_weights = None
            loss_fn.batch_ref_logits = None
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        self._log_token_metrics(outputs.logits.detach(), labels, inputs.get("attention_mask"))
        return (loss, outputs) if return_outputs else loss

    def _log_token_metrics(self, logits: torch.Tensor, labels: torch.Tensor, attention_mask=None) -> None:
        """TRL's per-step metrics (entropy, token accuracy, tokens seen), on this process's batch."""
        metrics = getattr(self, "_metrics", None)
        if metrics is None:
            return
        with torch.no_grad():
            shift_logits, shift_labels = obj.shift_for_causal_lm(logits, labels)
            mask = shift_labels.ne(obj.IGNORE_INDEX)
            n = int(mask.sum())
            entropy = predictive_entropy(shift_logits)[mask]
            correct = shift_logits.argmax(-1).eq(shift_labels)[mask]
        mode = "train" if self.model.training else "eval"
        metrics[mode]["entropy"].append(float(entropy.sum()) / n if n else 0.0)
        metrics[mode]["mean_token_accuracy"].append(float(correct.sum()) / n if n else 0.0)
        if mode == "train" and attention_mask is not None and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens += int(attention_mask.sum())
            metrics[mode]["num_tokens"] = [self._total_train_tokens]


def _check_sft_args(args) -> None:
    """Settings of TRL's SFTConfig that a TokenLoss would silently override: refused, naming the setting."""
    if getattr(args, "loss_type", "nll") != "nll":
        raise ValueError(f"make_sft_trainer: SFTConfig(loss_type={args.loss_type!r}) would be replaced by the "
                         f"TokenLoss; leave loss_type at its default 'nll' (TRL's 'dft' is TokenLoss('dft'))")
    if getattr(args, "label_smoothing_factor", 0.0) > 0:
        raise ValueError(f"make_sft_trainer: label_smoothing_factor={args.label_smoothing_factor} is not applied by "
                         f"the TokenLoss; set it to 0")


def make_sft_trainer(loss: TokenLoss, **kwargs):
    """TRL's ``SFTTrainer`` training with ``loss`` (and FLOW/ASFT extras from the batch); needs the ``trl`` extra.

    At TRL's defaults this works as is; what it changes is said once at construction (a UserWarning):
    the loss is computed from full logits in one forward instead of TRL's chunked NLL (more memory:
    B·T·V floats per micro-batch). ``loss_type`` other than ``"nll"`` and label smoothing are refused
    (ValueError naming the setting) because the TokenLoss would silently replace them.
    """
    import warnings

    try:
        from trl import SFTTrainer
    except ImportError as err:
        raise ImportError("TRL is not installed (it is optional): `pip install 'talr-theory[trl]'`, or use "
                          "make_trainer / transformers.Trainer(compute_loss_func=TokenLoss(...))") from err
    if kwargs.get("args") is not None:
        _check_sft_args(kwargs["args"])
    cls = type("TokenLossSFTTrainer", (_SFTTokenLossMixin, SFTTrainer), {})
    trainer = cls(**kwargs)
    _check_sft_args(trainer.args)
    # Set after construction: the loss enters through our compute_loss, not TRL's deprecated compute_loss_func
    # path; the attribute still tells transformers' Trainer to count num_items_in_batch for it.
    trainer.compute_loss_func = loss
    _attach_reference(loss, trainer.model)
    warnings.warn(f"make_sft_trainer: TokenLoss({loss.method!r}) replaces SFTTrainer's default chunked NLL "
                  f"(loss_type='nll', fused LM head, no full logits) with one forward that builds the full "
                  f"[batch, length, vocabulary] logits; TRL's entropy and token-accuracy metrics come from them",
                  UserWarning, stacklevel=2)
    return trainer
