"""Token trees and autoregressive models over a small vocabulary: code lengths and ΔL(P).

A causal LM over sequences z = (z_1..z_d) of a vocabulary of V tokens is a tree: node = prefix,
edge = next token, edge weight = the model's conditional probability q(z_l | z_<l). We store one
row of log-probabilities per prefix, depth by depth: ``logq[l]`` has shape (V**l, V), and the
prefix (z_1..z_l) is the base-V integer z_1·V^(l-1) + ... + z_l. Everything is float64 log-space.

ΔL(P) — the change of expected code length of P's sequences from model q1 to model q2 — has
three textbook forms (Prop. 3.1 of the paper) plus the tilt form of theory.md C1; all four are
computed here from independent routes so their agreement is a real check of the bookkeeping:

1. expected code-length difference  E_P[-log q2(z)] - E_P[-log q1(z)]           (joint sums)
2. KL difference                    KL(P||q2) - KL(P||q1)                         (joint sums)
3. token-tree sum                   -Σ_l Σ_j p_{l,j} log(q2_{l,j} / q1_{l,j})     (node masses)
4. tilt form                        Σ_c ρ(c) [log E_{q1(·|c)} e^{h_c} - E_{P(·|c)} h_c],  h_c = z2_c - z1_c
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax as _scipy_log_softmax
from scipy.special import logsumexp, softmax


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax in float64.

    scipy's ``log_softmax`` rather than ``x - logsumexp(x)``: the same float64 result, and about 4×
    less overhead per call on the small rows the exact tier evaluates ~10⁵ times per run.
    """
    return _scipy_log_softmax(np.asarray(logits, dtype=np.float64), axis=axis)


@dataclass
class TreeModel:
    """An autoregressive model of length-``depth`` sequences: one logit row per prefix.

    ``logits[l]`` has shape (V**l, V) for l = 0..depth-1; the model's conditional is
    softmax(logits[l][prefix]).
    """

    logits: list[np.ndarray]

    def __post_init__(self):
        self.logits = [np.asarray(x, dtype=np.float64) for x in self.logits]
        if not self.logits:
            raise ValueError("TreeModel needs depth >= 1")
        V = self.logits[0].shape[-1]
        for l, x in enumerate(self.logits):
            if x.shape != (V**l, V):
                raise ValueError(f"TreeModel: logits[{l}] must have shape {(V**l, V)}, got {x.shape}")

    @property
    def vocab(self) -> int:
        return self.logits[0].shape[-1]

    @property
    def depth(self) -> int:
        return len(self.logits)

    @classmethod
    def random(cls, rng: np.random.Generator, vocab: int, depth: int, scale: float = 2.0) -> TreeModel:
        return cls([rng.normal(0.0, scale, size=(vocab**l, vocab)) for l in range(depth)])

    def tilted(self, h: list[np.ndarray]) -> TreeModel:
        """The model after adding the logit change h (same shapes) — an exact exponential tilt."""
        return TreeModel([z + dz for z, dz in zip(self.logits, h)])

    def log_conditionals(self) -> list[np.ndarray]:
        return [log_softmax(z) for z in self.logits]

    def log_joint(self) -> np.ndarray:
        """log q(z) for every full sequence, as a flat array of length V**depth (base-V index)."""
        V = self.vocab
        logp = np.zeros(1)
        for logq in self.log_conditionals():
            # Extend every prefix by every next token: (V**l,) -> (V**l, V) -> flat (V**(l+1),)
            logp = (logp[:, None] + logq).reshape(-1)
        assert logp.shape == (V**self.depth,)
        return logp

    def joint(self) -> np.ndarray:
        return np.exp(self.log_joint())


def random_distribution(rng: np.random.Generator, size: int, concentration: float = 1.0,
                        zero_fraction: float = 0.0) -> np.ndarray:
    """A random distribution over ``size`` outcomes (Dirichlet), optionally with exact zeros."""
    p = rng.dirichlet(np.full(size, concentration))
    if zero_fraction > 0:
        keep = rng.random(size) >= zero_fraction
        keep[rng.integers(size)] = True  # never all zero
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    return p


def _xlogy_terms(p: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """p·log q with the convention 0·log(anything) = 0 (P may have zeros where q is tiny)."""
    return np.where(p > 0, p * logq, 0.0)


def code_length(P: np.ndarray, model: TreeModel) -> float:
    """Expected code length E_{z~P}[-log q(z)] in nats (P is a joint over V**depth sequences)."""
    return float(-np.sum(_xlogy_terms(P, model.log_joint())))


def kl(P: np.ndarray, model: TreeModel) -> float:
    """KL(P || q) in nats, with 0·log 0 = 0."""
    logP = np.log(np.where(P > 0, P, 1.0))
    return float(np.sum(np.where(P > 0, P * (logP - model.log_joint()), 0.0)))


def node_masses(P: np.ndarray, vocab: int, depth: int) -> list[np.ndarray]:
    """p_{l,j}: the mass P puts on each tree edge at depth l, shape (V**l, V) like the logits."""
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (vocab**depth,):
        raise ValueError(f"node_masses: P must have shape {(vocab**depth,)}, got {P.shape}")
    out = []
    for l in range(depth):
        # Sum out the tokens after position l+1: (V**(l+1), V**(depth-l-1)) -> (V**(l+1),)
        mass = P.reshape(vocab ** (l + 1), vocab ** (depth - l - 1)).sum(axis=1)
        out.append(mass.reshape(vocab**l, vocab))
    return out


def delta_L_codelength(P: np.ndarray, q1: TreeModel, q2: TreeModel) -> float:
    """Form 1: E_P[L_q2] - E_P[L_q1]."""
    return float(np.sum(_xlogy_terms(P, q1.log_joint() - q2.log_joint())))


def delta_L_kl(P: np.ndarray, q1: TreeModel, q2: TreeModel) -> float:
    """Form 2: KL(P||q2) - KL(P||q1)."""
    return kl(P, q2) - kl(P, q1)


def delta_L_tree(P: np.ndarray, q1: TreeModel, q2: TreeModel) -> float:
    """Form 3: the token-tree sum -Σ_l Σ_j p_{l,j} log(q2_{l,j}/q1_{l,j})."""
    masses = node_masses(P, q1.vocab, q1.depth)
    total = 0.0
    for m, l1, l2 in zip(masses, q1.log_conditionals(), q2.log_conditionals()):
        total -= float(np.sum(_xlogy_terms(m, l2 - l1)))
    return total


def delta_L_tilt_form(P: np.ndarray, q1: TreeModel, q2: TreeModel) -> float:
    """Form 4 (theory.md C1): Σ_c ρ(c)[log E_{q1(·|c)} e^{h_c} - E_{P(·|c)} h_c] with h = logit change.

    ρ(c) is the mass P puts on prefix c and P(·|c) its next-token conditional; ρ(c)·P(·|c) is the
    edge mass, so the second term is Σ (edge mass)·h. Prefixes P never visits contribute nothing.
    """
    masses = node_masses(P, q1.vocab, q1.depth)
    total = 0.0
    for m, z1, z2, l1 in zip(masses, q1.logits, q2.logits, q1.log_conditionals()):
        h = z2 - z1
        rho = m.sum(axis=1)
        log_mgf = logsumexp(l1 + h, axis=1)  # log E_{q1(.|c)} e^{h_c}
        total += float(np.sum(rho * log_mgf) - np.sum(m * h))
    return total


def delta_L_all_forms(P: np.ndarray, q1: TreeModel, q2: TreeModel) -> dict[str, float]:
    return {
        "codelength": delta_L_codelength(P, q1, q2),
        "kl": delta_L_kl(P, q1, q2),
        "tree": delta_L_tree(P, q1, q2),
        "tilt": delta_L_tilt_form(P, q1, q2),
    }


def identity_errors(rng: np.random.Generator, n_instances: int = 200, max_vocab: int = 5,
                    max_depth: int = 4) -> np.ndarray:
    """Max pairwise disagreement of the four ΔL forms on random trees, one value per instance.

    Instances mix: P = a random joint (sometimes with exact zeros), P = a third random tree model,
    and P = q1 itself (the "exactly modeled" case, where ΔL = KL(q1||q2) ≥ 0).
    """
    errs = np.empty(n_instances)
    for k in range(n_instances):
        V = int(rng.integers(2, max_vocab + 1))
        d = int(rng.integers(1, max_depth + 1))
        q1 = TreeModel.random(rng, V, d, scale=float(rng.uniform(0.1, 4.0)))
        q2 = q1.tilted([rng.normal(0, float(rng.uniform(0.01, 3.0)), size=z.shape) for z in q1.logits])
        kind = k % 3
        if kind == 0:
            P = random_distribution(rng, V**d, concentration=float(rng.uniform(0.2, 2.0)),
                                    zero_fraction=float(rng.uniform(0, 0.5)))
        elif kind == 1:
            P = TreeModel.random(rng, V, d).joint()
        else:
            P = q1.joint()
        forms = np.array(list(delta_L_all_forms(P, q1, q2).values()))
        errs[k] = float(forms.max() - forms.min())
    return errs


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)
