"""Predictive entropy of a causal LM's next-token distribution: full vocabulary and EAFT's top-K estimate.

One home for these quantities: the token scanner reports them and the EAFT objective
(``training.objectives.eaft_loss``) weights tokens by the normalized top-K entropy.
"""

from __future__ import annotations

import math

import torch

from talr_theory.theory.reweighting import EAFT_TOP_K


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 at least (bf16 logits would round small probabilities away); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the full-vocabulary predictive distribution of each position: ``-Σ_v q_v log q_v``."""
    logq = torch.log_softmax(_upcast(logits), dim=-1)
    return -(logq.exp() * logq).sum(dim=-1)


def topk_entropy(logits: torch.Tensor, k: int = EAFT_TOP_K) -> torch.Tensor:
    """Entropy (nats) of the softmax renormalized over the K largest logits of each position (EAFT's estimate).

    K is capped at the vocabulary size, so on a vocabulary of K tokens it is the full entropy.
    """
    top = torch.topk(_upcast(logits), min(int(k), logits.shape[-1]), dim=-1).values
    return predictive_entropy(top)


def normalized_topk_entropy(logits: torch.Tensor, k: int = EAFT_TOP_K) -> torch.Tensor:
    """Top-K entropy divided by its maximum ``ln K`` (K capped at the vocabulary), clamped to [0, 1] against rounding."""
    kk = min(int(k), logits.shape[-1])
    if kk < 2:
        raise ValueError(f"EAFT needs K >= 2 logits (got K={k}, vocabulary {logits.shape[-1]})")
    return (topk_entropy(logits, kk) / math.log(kk)).clamp(0.0, 1.0)
