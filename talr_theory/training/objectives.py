"""Token-level training objectives: CE, TALR, DFT, FLOW, EAFT, ASFT and hard-token truncation.

One function per loss; docs/objectives.md states each formula and the reference it matches.

Every loss has the signature ``(logits, labels, num_items_in_batch, **opts) -> (loss, info)``:

- ``logits``  [B, T, V] from a causal LM, ``labels`` [B, T] with -100 on positions that are not
  supervised (prompt, padding). As in Hugging Face causal LMs, the logits at position t predict the
  label at t+1, so both are shifted here.
- ``num_items_in_batch`` is the number of supervised (shifted) tokens in the WHOLE optimizer step:
  summed over gradient-accumulation micro-batches and over processes. Each loss returns
  ``sum_i w_i * loss_i / num_items_in_batch``, so summing the per-micro-batch losses (and, under DDP,
  multiplying by the world size because DDP averages gradients) gives exactly the gradient of the
  full-batch mean. ``None`` means "this micro-batch is the whole batch" (local count).
- ``info`` holds detached sums (not means) so callers can aggregate across micro-batches exactly.

ASFT also takes ``ref_logits`` [B, T, V]: the frozen base model's logits on the same batch, computed
without gradient by the caller (``training.core`` and the ``training.hf`` drop-ins do it).

Token weights are computed from the per-token cross-entropy itself (``p_i = exp(-loss_i)``), never
from a second softmax pass, and they are detached (the paper's stop-gradient). A micro-batch with no
supervised token still returns a zero loss that is connected to the graph, so every parameter gets
a (zero) gradient and DDP does not hang waiting for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from talr_theory.tokens.entropy import normalized_topk_entropy
from talr_theory.training.config import (
    ASFT_BETA,
    EAFT_ALPHA,
    EAFT_TOP_K,
    TALR_W_MIN,
    TAU_RULES,
    TRUNCATE_THETA,
)

IGNORE_INDEX = -100


def shift_for_causal_lm(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align logits at position t with the label at t+1 (the Hugging Face causal-LM convention)."""
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"expected logits [B, T, V] and labels [B, T]; got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    return logits[:, :-1, :], labels[:, 1:]


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 at least (bf16 logits would round the easy tokens' tiny losses to zero); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood [B, T-1] (zero where unsupervised) and the mask of supervised tokens.

    Computed in float32 (bf16 logits would round the easy tokens' tiny losses to zero).
    """
    shift_logits, shift_labels = shift_for_causal_lm(logits, labels)
    mask = shift_labels.ne(IGNORE_INDEX)
    nll = F.cross_entropy(
        _upcast(shift_logits).reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return nll, mask


def count_supervised(labels: torch.Tensor) -> int:
    """Supervised tokens after the causal shift (what ``num_items_in_batch`` must count)."""
    return int(labels[:, 1:].ne(IGNORE_INDEX).sum())


def _denominator(num_items_in_batch, mask: torch.Tensor) -> torch.Tensor | float:
    if num_items_in_batch is None:
        return max(int(mask.sum()), 1)
    if torch.is_tensor(num_items_in_batch):
        return num_items_in_batch.to(mask.device).float().clamp_min(1.0)
    return max(float(num_items_in_batch), 1.0)


def _connected_zero(nll: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # An empty selection still has to reach the parameters so backward() touches all of them.
    return nll.sum() * 0.0 + logits.sum() * 0.0


def _info(nll: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None, **extra) -> dict:
    n = int(mask.sum())
    sel = nll.detach()[mask]
    info = {
        "n_tokens": n,
        "sum_nll": float(sel.sum()) if n else 0.0,
        "sum_weight": float(weights.detach()[mask].sum()) if (weights is not None and n) else float(n),
    }
    info["mean_weight"] = info["sum_weight"] / n if n else float("nan")
    info.update(extra)
    return info


def _weighted_loss(nll, mask, weights, logits, num_items_in_batch) -> torch.Tensor:
    if not bool(mask.any()):
        return _connected_zero(nll, logits)
    per_token = nll if weights is None else nll * weights
    # nll is already zero on unsupervised positions (ignore_index), so the plain sum is the masked sum.
    return per_token.sum() / _denominator(num_items_in_batch, mask)


def ce_loss(logits, labels, num_items_in_batch=None, **_unused) -> tuple[torch.Tensor, dict]:
    """Standard SFT cross-entropy, normalized by the global supervised-token count."""
    nll, mask = token_nll(logits, labels)
    return _weighted_loss(nll, mask, None, logits, num_items_in_batch), _info(nll, mask, None)


def resolve_tau(nll: torch.Tensor, mask: torch.Tensor, tau: str | float) -> float:
    """The TALR temperature for this micro-batch.

    ``tau`` is a positive number (fixed), ``"median"`` (median of the supervised token losses) or
    ``"median-seq"`` (median over sequences of each sequence's mean token loss). The median is taken
    over the micro-batch the loss sees: under gradient accumulation or DDP each micro-batch (on each
    process) uses its own median, which is not the median of the full optimizer-step batch.
    A median of exactly zero (every token certain) is floored at 1e-8 so the weights stay defined.
    """
    if isinstance(tau, str):
        if tau not in TAU_RULES:
            tau = float(tau)  # e.g. "0.5" from a config file; raises ValueError if not a number
        elif not bool(mask.any()):
            return float("nan")
        elif tau == "median":
            return max(float(torch.quantile(nll.detach()[mask].double(), 0.5)), 1e-8)
        else:
            counts = mask.sum(dim=1)
            seq_means = (nll.detach().double() * mask).sum(dim=1)[counts > 0] / counts[counts > 0]
            return max(float(torch.quantile(seq_means, 0.5)), 1e-8)
    tau = float(tau)
    if not tau > 0:
        raise ValueError(f"TALR tau must be > 0 (or 'median'/'median-seq'); got {tau}")
    return tau


def talr_weights(token_loss: torch.Tensor, tau: float, w_min: float) -> torch.Tensor:
    """TALR weights ``max(exp(-loss/tau), w_min)`` = ``max(p^(1/tau), w_min)``, detached (stop-gradient).

    Computed from the per-token loss, so no second softmax pass over the vocabulary is needed.
    ``tau = inf`` gives weights of exactly 1 (standard SFT).
    """
    w = torch.exp(-token_loss.detach() / tau) if math.isfinite(tau) else torch.ones_like(token_loss)
    return w.clamp_min(w_min)


def talr_loss(logits, labels, num_items_in_batch=None, tau: str | float = "median", w_min: float = TALR_W_MIN,
              **_unused) -> tuple[torch.Tensor, dict]:
    """Token-Adaptive Loss Reweighting (Algorithm 1): ``(1/N) Σ_i max(sg(p_i^(1/τ)), w_min) · (-log p_i)``."""
    nll, mask = token_nll(logits, labels)
    t = resolve_tau(nll, mask, tau)
    # NaN tau means an empty micro-batch (median rule): the weights are then irrelevant.
    weights = torch.ones_like(nll) if math.isnan(t) else talr_weights(nll, t, w_min)
    floor_frac = float((weights.detach()[mask] <= w_min).float().mean()) if bool(mask.any()) else float("nan")
    info = _info(nll, mask, weights, tau=t, frac_at_floor=floor_frac)
    return _weighted_loss(nll, mask, weights, logits, num_items_in_batch), info


def dft_loss(logits, labels, num_items_in_batch=None, **_unused) -> tuple[torch.Tensor, dict]:
    """Dynamic Fine-Tuning: each token's loss weighted by its detached probability, ``sg(p_i)·(-log p_i)``.

    Written independently of ``talr_loss`` (log-softmax + gather instead of cross-entropy) so the
    test "TALR with τ=1, w_min=0 equals DFT" compares two separate code paths.
    """
    shift_logits, shift_labels = shift_for_causal_lm(logits, labels)
    mask = shift_labels.ne(IGNORE_INDEX)
    logp_all = torch.log_softmax(_upcast(shift_logits), dim=-1)
    logp = logp_all.gather(-1, shift_labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    nll = torch.where(mask, -logp, torch.zeros_like(logp))
    weights = torch.exp(-nll.detach())
    return _weighted_loss(nll, mask, weights, logits, num_items_in_batch), _info(nll, mask, weights)


def flow_example_weights(base_losses, tau: float | None = None) -> tuple[torch.Tensor, float]:
    """FLOW's static per-example weights ``exp(-loss0_e/τ)`` from the base model's per-example losses.

    ``loss0_e`` is the mean token NLL of example e under the pre-trained model; ``τ`` defaults to the
    median of those losses. Returns (weights, τ).
    """
    losses = torch.tensor(list(base_losses), dtype=torch.float64)
    if losses.numel() == 0:
        raise ValueError("flow_example_weights needs at least one base loss")
    if not bool(torch.isfinite(losses).all()):
        raise ValueError("flow_example_weights got non-finite base losses")
    t = float(torch.quantile(losses, 0.5)) if tau is None else float(tau)
    if not t > 0:
        raise ValueError(f"FLOW tau must be > 0; got {t} (median base loss is zero?)")
    return torch.exp(-losses / t), t


def flow_loss(logits, labels, num_items_in_batch=None, example_weights: torch.Tensor | None = None,
              **_unused) -> tuple[torch.Tensor, dict]:
    """FLOW: every token of example e carries the static weight ``example_weights[e]`` (shape [B])."""
    if example_weights is None:
        raise ValueError("flow_loss needs example_weights (one static weight per example, shape [B])")
    nll, mask = token_nll(logits, labels)
    ew = torch.as_tensor(example_weights, device=nll.device, dtype=nll.dtype).reshape(-1)
    if ew.shape[0] != nll.shape[0]:
        raise ValueError(f"flow_loss: {ew.shape[0]} example weights for a batch of {nll.shape[0]}")
    weights = ew[:, None].expand_as(nll)
    return _weighted_loss(nll, mask, weights, logits, num_items_in_batch), _info(nll, mask, weights)


def eaft_weights(shift_logits: torch.Tensor, k: int = EAFT_TOP_K, alpha: float = EAFT_ALPHA) -> torch.Tensor:
    """EAFT token weights ``(H_K / ln K)^α`` from the (shifted) logits, detached (stop-gradient)."""
    with torch.no_grad():
        return normalized_topk_entropy(shift_logits.detach(), k).pow(float(alpha))


def eaft_loss(logits, labels, num_items_in_batch=None, k: int = EAFT_TOP_K, alpha: float = EAFT_ALPHA,
              **_unused) -> tuple[torch.Tensor, dict]:
    """Entropy-Adaptive Fine-Tuning: ``(1/N) Σ_i sg((H_K,i / ln K)^α) · (-log p_i)``.

    Confident predictions (low top-K entropy) get small weights whether or not they are right, so a
    "confident conflict" (low p, low entropy) is down-weighted; uncertain positions keep weight ≈ 1.
    """
    nll, mask = token_nll(logits, labels)
    shift_logits, _ = shift_for_causal_lm(logits, labels)
    weights = eaft_weights(shift_logits, k, alpha).to(nll.dtype)
    return _weighted_loss(nll, mask, weights, logits, num_items_in_batch), _info(nll, mask, weights)


def kl_to_reference(shift_logits: torch.Tensor, shift_ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-position ``KL(q_ref || q_model) = Σ_v q_ref,v (log q_ref,v − log q_model,v)`` over the full vocabulary.

    The reference distribution is a constant (detached); the gradient flows through the model's log-probs.
    """
    if shift_ref_logits.shape != shift_logits.shape:
        raise ValueError(f"ref_logits {tuple(shift_ref_logits.shape)} do not match logits {tuple(shift_logits.shape)}")
    logp = torch.log_softmax(_upcast(shift_logits), dim=-1)
    logq = torch.log_softmax(_upcast(shift_ref_logits.detach()).to(logp.dtype), dim=-1)
    return (logq.exp() * (logq - logp)).sum(dim=-1)


def asft_loss(logits, labels, num_items_in_batch=None, ref_logits: torch.Tensor | None = None,
              beta: float = ASFT_BETA, **_unused) -> tuple[torch.Tensor, dict]:
    """Anchored SFT: DFT plus β times the KL from the frozen base, ``(1/N) Σ_i [sg(p_i)(-log p_i) + β KL_i]``.

    ``KL_i = KL(base || model)`` at supervised position i, over the full vocabulary (docs/objectives.md).
    """
    if ref_logits is None:
        raise ValueError("asft_loss needs ref_logits: the frozen base model's logits on the same batch")
    nll, mask = token_nll(logits, labels)
    shift_logits, _ = shift_for_causal_lm(logits, labels)
    shift_ref, _ = shift_for_causal_lm(ref_logits, labels)
    weights = torch.exp(-nll.detach())
    kl = torch.where(mask, kl_to_reference(shift_logits, shift_ref), torch.zeros_like(nll))
    loss = _weighted_loss(nll, mask, weights, logits, num_items_in_batch)
    if bool(mask.any()):
        loss = loss + float(beta) * kl.sum() / _denominator(num_items_in_batch, mask)
    n = int(mask.sum())
    return loss, _info(nll, mask, weights, sum_kl=float(kl.detach().sum()) if n else 0.0)


def truncate_hard_loss(logits, labels, num_items_in_batch=None, theta: float = TRUNCATE_THETA,
                       **_unused) -> tuple[torch.Tensor, dict]:
    """The paper's Fig. 3 truncation: ``(1/N) Σ_i 1[sg(p_i) >= θ] · (-log p_i)``, N counting every supervised token.

    ``p_i`` is the probability under the model being trained, at this step. Dividing by all N (not by
    the kept tokens) removes the hard tokens' gradient and leaves the easy tokens' exactly as in SFT.
    """
    nll, mask = token_nll(logits, labels)
    weights = (torch.exp(-nll.detach()) >= float(theta)).to(nll.dtype)
    n = int(mask.sum())
    dropped = float((weights.detach()[mask] == 0).sum()) if n else 0.0
    return (_weighted_loss(nll, mask, weights, logits, num_items_in_batch),
            _info(nll, mask, weights, n_truncated=dropped))


OBJECTIVES = {"ce": ce_loss, "talr": talr_loss, "dft": dft_loss, "flow": flow_loss, "eaft": eaft_loss,
              "asft": asft_loss, "truncate-hard": truncate_hard_loss}
