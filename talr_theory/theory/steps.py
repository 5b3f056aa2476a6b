"""Gradient-step tilts: one SGD step on weighted token cross-entropy, as a logit change everywhere.

Model family: a *kernel softmax* over a finite set of contexts. Context c has logits z_c (V,);
training position i sits at context c_i with target y_i and weight w_i. The weighted loss
(1/N) Σ_i w_i · (−log q(y_i | c_i)) has logit-gradient (1/N) w_i (q(·|c_i) − e_{y_i}) at c_i,
and an SGD step of size λ changes the logits at *every* context c by

    h_c = λ · g_c,    g_c = (1/N) Σ_i w_i K(c, c_i) (e_{y_i} − q(·|c_i))              (theory.md C1)

where K is the (empirical neural tangent) kernel between contexts. Two cases are exact, not
just first order, because the logits are linear in the parameters:

* tabular softmax — one free logit vector per context: K = identity. A domain step changes only
  the domain contexts; general contexts that are not trained on do not move (no leakage);
* linear softmax on context features φ_c (z_c = W φ_c): K(c, c') = φ_c·φ_{c'}; every context
  with a feature overlap moves (leakage). An explicit PSD kernel matrix is the same model.

Per-token weights make SFT, TALR and DFT the same step (Algorithm 1 of the paper, normalized by
the number of supervised tokens N, weights treated as constants — the stop-gradient):

    SFT  w_i = 1;    DFT  w_i = p_i;    TALR  w_i = max(p_i^(1/τ), w_min)

TALR's τ→∞ limit is SFT and τ = 1, w_min = 0 is DFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talr_theory.theory.codelength import log_softmax

# TALR's weight floor: the one default used by every implementation (numpy here, torch in
# training.objectives, the synthetic lab and the tiers).
TALR_W_MIN = 0.01
# The data-dependent temperature rules, one name each everywhere: "median" = median of the token
# losses, "median-seq" = median over sequences of each sequence's mean token loss.
TAU_RULES = ("median", "median-seq")


def talr_weights(p: np.ndarray, tau: float, w_min: float = 0.0) -> np.ndarray:
    """TALR weights max(p^(1/τ), w_min), computed in log-space as exp(log p / τ)."""
    if not tau > 0:
        raise ValueError(f"talr_weights: temperature tau must be > 0, got {tau}")
    p = np.asarray(p, dtype=np.float64)
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("talr_weights: probabilities must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        w = np.exp(np.log(p) / tau) if np.isfinite(tau) else np.ones_like(p)
    return np.maximum(w, w_min)


def median_tau(token_loss: np.ndarray, example_of: np.ndarray | None = None, rule: str = "token") -> float:
    """τ = median loss of the batch: over tokens (``rule='token'``, the default) or over examples'
    mean token losses (``rule='sequence'``) — the paper is ambiguous about which."""
    token_loss = np.asarray(token_loss, dtype=np.float64)
    if rule == "token":
        tau = float(np.median(token_loss))
    elif rule == "sequence":
        if example_of is None:
            raise ValueError("median_tau: rule='sequence' needs example_of (example index per token)")
        example_of = np.asarray(example_of)
        tau = float(np.median([token_loss[example_of == e].mean() for e in np.unique(example_of)]))
    else:
        raise ValueError(f"median_tau: rule must be 'token' or 'sequence', got {rule!r}")
    # A batch of perfectly predicted tokens has median loss 0; keep τ positive (weights all → floor/1).
    return max(tau, 1e-12)


def token_weights(method: str, p: np.ndarray, tau: float | str = "median", w_min: float = TALR_W_MIN,
                  example_of: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
    """Per-token weights for ``method`` in {sft, dft, talr}; returns (weights, τ used or None)."""
    p = np.asarray(p, dtype=np.float64)
    if method == "sft":
        return np.ones_like(p), None
    if method == "dft":
        return p.copy(), None
    if method == "talr":
        if isinstance(tau, str):
            rule = {"median": "token", "median-seq": "sequence"}.get(tau)
            if rule is None:
                raise ValueError(f"token_weights: tau must be a positive number or one of {TAU_RULES}, "
                                 f"got {tau!r}")
            with np.errstate(divide="ignore"):
                tau_value = median_tau(-np.log(p), example_of, rule)
        else:
            tau_value = float(tau)
        return talr_weights(p, tau_value, w_min), tau_value
    raise ValueError(f"token_weights: method must be 'sft', 'dft' or 'talr', got {method!r}")


@dataclass
class KernelSoftmax:
    """Logits at C contexts that move together through a PSD kernel K (C, C) under SGD."""

    logits: np.ndarray  # (C, V) base logits
    kernel: np.ndarray  # (C, C)

    def __post_init__(self):
        self.logits = np.asarray(self.logits, dtype=np.float64)
        self.kernel = np.asarray(self.kernel, dtype=np.float64)
        C = self.logits.shape[0]
        if self.logits.ndim != 2 or self.kernel.shape != (C, C):
            raise ValueError(f"KernelSoftmax: logits must be (C, V) and kernel (C, C); got "
                             f"{self.logits.shape} and {self.kernel.shape}")

    @classmethod
    def tabular(cls, logits: np.ndarray) -> KernelSoftmax:
        """One free logit vector per context: no leakage between contexts."""
        logits = np.asarray(logits, dtype=np.float64)
        return cls(logits, np.eye(logits.shape[0]))

    @classmethod
    def linear(cls, weight: np.ndarray, features: np.ndarray) -> KernelSoftmax:
        """Linear softmax z_c = W φ_c (W: (V, F), features: (C, F)); K = Φ Φᵀ."""
        weight = np.asarray(weight, dtype=np.float64)
        features = np.asarray(features, dtype=np.float64)
        return cls(features @ weight.T, features @ features.T)

    @property
    def vocab(self) -> int:
        return self.logits.shape[1]


def step_direction(kernel_cols: np.ndarray, logits_at_positions: np.ndarray, targets: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """g = (1/N) Σ_i w_i K(·, c_i) (e_{y_i} − q(·|c_i)) for every row of ``kernel_cols`` (C', N).

    ``logits_at_positions`` (N, V) are the current logits at the training positions.
    """
    targets = np.asarray(targets)
    N, V = logits_at_positions.shape
    if kernel_cols.shape[1] != N or targets.shape != (N,) or np.shape(weights) != (N,):
        raise ValueError(f"step_direction: kernel columns {kernel_cols.shape}, targets {targets.shape}, "
                         f"weights {np.shape(weights)} do not match {N} training positions")
    q = np.exp(log_softmax(logits_at_positions))
    u = -q
    u[np.arange(N), targets] += 1.0
    return kernel_cols @ (np.asarray(weights, dtype=np.float64)[:, None] * u) / N


def gradient_step(model: KernelSoftmax, positions: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                  lam: float, logits: np.ndarray | None = None) -> np.ndarray:
    """The logits at every context after one SGD step of size λ (exact for this model family)."""
    z = model.logits if logits is None else logits
    g = step_direction(model.kernel[:, positions], z[positions], targets, weights)
    return z + lam * g


def target_probs(logits_at_positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """p_i = q(y_i | c_i) at the training positions (float64, via log-softmax)."""
    logq = log_softmax(logits_at_positions)
    return np.exp(logq[np.arange(len(targets)), targets])


def effective_s(p: np.ndarray, weights: np.ndarray, example_of: np.ndarray) -> float:
    """s_w = mean over examples of Σ_i w_i (1 − p_i): the weighted hard-token count (theory.md C3).

    For SFT (w = 1) it is the expected number of "missing probability" units per example, close to
    the count of hard tokens when hard tokens have p ≈ 0 and easy ones p ≈ 1.
    """
    p = np.asarray(p, dtype=np.float64)
    contrib = np.asarray(weights, dtype=np.float64) * (1.0 - p)
    example_of = np.asarray(example_of)
    return float(np.mean([contrib[example_of == e].sum() for e in np.unique(example_of)]))
