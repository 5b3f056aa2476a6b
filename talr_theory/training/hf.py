"""Drop-in TALR (and DFT/CE) for the Hugging Face ``Trainer``, and for TRL's ``SFTTrainer`` when installed.

``Trainer(..., compute_loss_func=TokenLoss("talr", tau="median", w_min=0.01))`` is all it takes.
transformers (5.x; checked against 5.24's ``Trainer``) calls ``compute_loss_func(outputs, labels,
num_items_in_batch=N)`` where N is the number of supervised tokens of the whole accumulated batch,
counted on ``labels[..., 1:]`` for causal LMs and summed over processes when
``average_tokens_across_devices`` is on (the default). The Trainer then multiplies the loss by the
number of processes (DDP averages gradients) and does not divide it again by the accumulation
steps, because a ``compute_loss_func`` is taken to be normalized already. Our losses divide by N,
so gradient accumulation and multi-GPU runs give the full-batch token-mean gradient; TALR's median τ
remains per micro-batch (per process), as in ``training.core``.

FLOW needs per-example weights in the batch, which ``compute_loss_func`` does not see; use
``training.core.train`` for FLOW. ``make_sft_trainer`` builds TRL's ``SFTTrainer`` with the same loss;
TRL is optional (not a dependency of this package) and that path is not exercised by our tests.
"""

from __future__ import annotations

from talr_theory.training import objectives as obj


class TokenLoss:
    """``compute_loss_func``-compatible callable: ``loss = TokenLoss('talr')(outputs, labels, num_items_in_batch)``.

    ``last_info`` keeps the info dict of the latest call (tokens, Σ NLL, mean TALR weight, τ) for logging.
    """

    def __init__(self, method: str = "talr", tau: str | float = "median", w_min: float = obj.TALR_W_MIN):
        names = {"sft": "ce", "ce": "ce", "talr": "talr", "dft": "dft"}
        if method not in names:
            raise ValueError(f"TokenLoss: method {method!r} not supported here; expected sft, talr or dft "
                             f"(FLOW needs per-example weights: use training.core.train)")
        if not (0.0 <= w_min <= 1.0):
            raise ValueError(f"TokenLoss: w_min={w_min} must be in [0, 1]")
        if isinstance(tau, str) and tau not in obj.TAU_RULES:
            tau = float(tau)
        if not isinstance(tau, str) and not tau > 0:
            raise ValueError(f"TokenLoss: tau={tau} must be > 0, 'median' or 'median-seq'")
        self.fn = obj.OBJECTIVES[names[method]]
        self.opts = {"tau": tau, "w_min": w_min} if names[method] == "talr" else {}
        self.last_info: dict = {}

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss, info = self.fn(logits, labels, num_items_in_batch, **self.opts)
        self.last_info = info
        return loss


def make_sft_trainer(loss: TokenLoss, **kwargs):
    """TRL's ``SFTTrainer(compute_loss_func=loss, **kwargs)``; raises ImportError with advice if TRL is absent."""
    try:
        from trl import SFTTrainer
    except ImportError as err:
        raise ImportError("TRL is not installed (it is optional): `pip install trl`, or use "
                          "transformers.Trainer(compute_loss_func=TokenLoss(...))") from err
    return SFTTrainer(compute_loss_func=loss, **kwargs)
