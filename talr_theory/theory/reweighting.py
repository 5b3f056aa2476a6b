"""When does a per-token reweighting beat plain gradient descent at equal domain gain? (linearised model)

Setting: the kernel-softmax model of ``steps.py``. A method with token weights w moves the logits
along the fixed direction g_w (``steps.step_direction``); in the *linearised* model the weights are
frozen at θ0, so after any number of steps the logits have moved by h = λ·g_w for some total λ ≥ 0
(one step of size λ or many small ones: the displacement is the same). Along that ray

* domain gain   Δ*(λ) = mean_i [log q_λ(y_i|c_i) − log q_0(y_i|c_i)] = a·λ − b·λ²/2 + O(λ³),
      a = mean_i (e_{y_i} − q_i)·g(c_i),   b = mean_i Var_{q_i}(g(c_i));
* general cost  ΔL(P1)(λ) = Σ_c ρ_c [log E_{q_c} e^{λ g_c} − λ E_{P1_c} g_c] = G·λ + Q·λ²/2 + O(λ³),
      G = Σ_c ρ_c (q_c − P1_c)·g_c          (misfit of P1 along the direction; 0 when P1 = q),
      Q = Σ_c ρ_c Var_{q_c}(g_c) = gᵀ F g   (the Fisher metric of the model on P1's contexts).

Reverting the gain series (sympy, :func:`equal_gain_cost`) gives the cost of buying a gain D:

    C(D) = (G/a)·D + (Q/a² + G·b/a³)·D²/2 + O(D³).

The reweighting beats plain descent at gain D iff C_w(D) < C_1(D). When P1 is modeled exactly
(G = 0) this is Q_w/a_w² < Q_1/a_1²: the Fisher length of the reweighted direction per unit of
domain gain it buys must be shorter. When P1 is mis-modeled the first-order term dominates for small
D: G_w/a_w < G_1/a_1. Weights that pile the update on easy tokens the model already predicts (a
small gain per step, a direction the general contexts share) make a_w small while the Fisher length
stays, so the ratio grows — the failure mode the default exact-tier scenario shows.

The token objectives of the training core have numpy float64 twins here (:func:`method_update`):
SFT, DFT, TALR (weights from p), EAFT (weights from the top-K entropy of the logits), truncate-hard
(weights 1[p ≥ θ]) and ASFT (DFT's weights plus β times the KL pull towards the base distribution,
whose logit gradient is q − q0). At θ0 the model is its own base, so ASFT's ray is DFT's.

The weights' dependence on the model (TALR recomputes them every step) is outside the linearised
model; :func:`linearised_coefficients` evaluates them at θ0. How often the predicted sign matches
full multi-step runs is measured by the ``talr_map`` stage, not assumed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.scenario import Scenario
from talr_theory.theory.steps import TALR_W_MIN, step_direction, target_probs, token_weights

# The reference defaults of the training core (training/config.py), repeated here so this numpy
# module does not import torch; tests check they agree.
EAFT_TOP_K, EAFT_ALPHA, ASFT_BETA, TRUNCATE_THETA = 20, 1.0, 0.1, 0.2
METHODS = ("sft", "dft", "talr", "eaft", "asft", "truncate-hard")


def topk_entropy_np(logits: np.ndarray, k: int = EAFT_TOP_K) -> np.ndarray:
    """Entropy (nats) of the softmax renormalized over the K largest logits of each row (K capped at V)."""
    logits = np.asarray(logits, dtype=np.float64)
    kk = min(int(k), logits.shape[-1])
    top = np.sort(logits, axis=-1)[..., logits.shape[-1] - kk:]
    logq = log_softmax(top)
    return -np.sum(np.exp(logq) * logq, axis=-1)


def eaft_weights_np(logits: np.ndarray, k: int = EAFT_TOP_K, alpha: float = EAFT_ALPHA) -> np.ndarray:
    """EAFT's token weights ``(H_K / ln K)^α`` (clamped to [0, 1] against rounding), as ``objectives.eaft_weights``."""
    kk = min(int(k), np.shape(logits)[-1])
    if kk < 2:
        raise ValueError(f"EAFT needs K >= 2 logits (got K={k})")
    return np.clip(topk_entropy_np(logits, kk) / np.log(kk), 0.0, 1.0) ** float(alpha)


def kl_to_base_np(logq: np.ndarray, logq0: np.ndarray) -> np.ndarray:
    """Per-row ``KL(q0 || q) = Σ_v q0 (log q0 − log q)`` from log-probabilities (ASFT's anchor)."""
    logq, logq0 = np.asarray(logq, dtype=np.float64), np.asarray(logq0, dtype=np.float64)
    return np.sum(np.exp(logq0) * (logq0 - logq), axis=-1)


def method_update(method: str, logq: np.ndarray, targets: np.ndarray, logq0: np.ndarray | None = None,
                  tau="median", w_min: float = TALR_W_MIN, example_of: np.ndarray | None = None,
                  eaft_k: int = EAFT_TOP_K, eaft_alpha: float = EAFT_ALPHA, asft_beta: float = ASFT_BETA,
                  truncate_theta: float = TRUNCATE_THETA) -> tuple[np.ndarray, np.ndarray]:
    """(token weights w (N,), logit update u (N, V)) of one method at the training positions.

    ``logq`` (N, V) are the current log-probabilities, ``logq0`` the base model's (ASFT only). ``u`` is
    minus N times the gradient of the method's loss with respect to the logits:
    ``u_i = w_i (e_{y_i} − q_i)``, plus ``β (q0_i − q_i)`` for ASFT, so ``z ← z + λ K u / N`` is its SGD
    step in the kernel model (``steps.step_direction`` for the weighted part).
    """
    logq = np.asarray(logq, dtype=np.float64)
    targets = np.asarray(targets)
    rows = np.arange(len(targets))
    p = np.exp(logq[rows, targets])
    if method in ("sft", "dft", "talr"):
        w, _ = token_weights(method, p, tau=tau, w_min=w_min, example_of=example_of)
    elif method == "eaft":
        w = eaft_weights_np(logq, eaft_k, eaft_alpha)  # log-probs are logits up to a per-row shift
    elif method == "asft":
        w = p.copy()
    elif method == "truncate-hard":
        w = (p >= truncate_theta).astype(np.float64)
    else:
        raise ValueError(f"method_update: method must be one of {', '.join(METHODS)}, got {method!r}")
    q = np.exp(logq)
    u = -q * w[:, None]
    u[rows, targets] += w
    if method == "asft":
        if logq0 is None:
            raise ValueError("method_update: ASFT needs the base model's log-probabilities logq0")
        u += float(asft_beta) * (np.exp(np.asarray(logq0, dtype=np.float64)) - q)
    return w, u


@lru_cache(maxsize=1)
def equal_gain_cost():
    """The equal-gain cost C(D) to second order in D, derived by reverting the gain series with sympy.

    Returns (C(D) expression, symbols dict with a, b, G, Q, D, lambda, and the reverted λ(D)).
    """
    import sympy as sp  # here, not at the top: importing sympy costs a second that reading results never needs

    a, Q = sp.symbols("a Q", positive=True)
    b, G = sp.symbols("b G", real=True)
    lam, D = sp.symbols("lambda D", real=True)
    gain = a * lam - b * lam**2 / 2
    cost = G * lam + Q * lam**2 / 2
    # Revert D = a λ − b λ²/2 for λ(D) = c1 D + c2 D² + O(D³): match coefficients order by order.
    c1, c2 = sp.symbols("c1 c2", real=True)
    lam_of_D = c1 * D + c2 * D**2
    residual = sp.expand(gain.subs(lam, lam_of_D) - D)
    sol = sp.solve([residual.coeff(D, 1), residual.coeff(D, 2)], [c1, c2], dict=True)[0]
    lam_of_D = lam_of_D.subs(sol)
    series = sp.series(cost.subs(lam, lam_of_D), D, 0, 3).removeO()
    C = sp.expand(sp.simplify(series))
    return C, {"a": a, "b": b, "G": G, "Q": Q, "D": D, "lambda": lam, "lambda_of_D": lam_of_D}


def second_order_cost_derivatives(vocab: int = 3):
    """Symbolic check of G and Q: d/dλ and d²/dλ² at λ=0 of Σ_y P(y)(log q(y) − log q_λ(y)), q_λ = softmax(z+λg).

    Returns (first derivative, second derivative, (q−P)·g, Var_q(g)) as expressions in z, g, P; the
    tests check that the pairs agree on random values.
    """
    import sympy as sp

    z = sp.symbols(f"z0:{vocab}", real=True)
    g = sp.symbols(f"g0:{vocab}", real=True)
    P = sp.symbols(f"P0:{vocab}", nonnegative=True)
    lam = sp.Symbol("lambda", real=True)
    lse = sp.log(sum(sp.exp(zi + lam * gi) for zi, gi in zip(z, g)))
    lse0 = sp.log(sum(sp.exp(zi) for zi in z))
    cost = sum(Pi * ((zi - lse0) - (zi + lam * gi - lse)) for Pi, zi, gi in zip(P, z, g))
    d1 = sp.diff(cost, lam).subs(lam, 0)
    d2 = sp.diff(cost, lam, 2).subs(lam, 0)
    q = [sp.exp(zi) / sum(sp.exp(zj) for zj in z) for zi in z]
    mean = sum(qi * gi for qi, gi in zip(q, g))
    first = sum((qi - Pi) * gi for qi, Pi, gi in zip(q, P, g))
    var = sum(qi * gi**2 for qi, gi in zip(q, g)) - mean**2
    # d1 equals `first` only when Σ P = 1; the caller substitutes a normalized P.
    return d1, d2, first, var, {"z": z, "g": g, "P": P}


def cost_at_gain(coef: dict, D) -> np.ndarray:
    """C(D) from the coefficients (keys a, b, G, Q), via the sympy expression (lambdified once)."""
    return _cost_fn()(coef["a"], coef["b"], coef["G"], coef["Q"], np.asarray(D, dtype=np.float64))


@lru_cache(maxsize=1)
def _cost_fn():
    import sympy as sp

    C, sym = equal_gain_cost()
    return sp.lambdify((sym["a"], sym["b"], sym["G"], sym["Q"], sym["D"]), C, "numpy")


def ray_coefficients(kernel_gd: np.ndarray, kernel_dd: np.ndarray, z_dom: np.ndarray, targets: np.ndarray,
                     weights: np.ndarray, z_gen: np.ndarray, p_gen: np.ndarray, rho: np.ndarray) -> dict:
    """a, b, G, Q (module docstring) for the ray of the weighted step direction at θ0.

    ``kernel_gd`` (C_gen, N) and ``kernel_dd`` (N, N) are the kernel columns of the training positions.
    """
    rows = np.arange(len(targets))
    g_dom = step_direction(kernel_dd, z_dom, targets, weights)
    g_gen = step_direction(kernel_gd, z_dom, targets, weights)
    q_dom = np.exp(log_softmax(z_dom))
    mean_dom = np.sum(q_dom * g_dom, axis=1)
    a = float(np.mean(g_dom[rows, targets] - mean_dom))
    b = float(np.mean(np.sum(q_dom * g_dom**2, axis=1) - mean_dom**2))
    q_gen = np.exp(log_softmax(z_gen))
    mean_gen = np.sum(q_gen * g_gen, axis=1)
    G = float(np.sum(rho * np.sum((q_gen - p_gen) * g_gen, axis=1)))
    Q = float(np.sum(rho * (np.sum(q_gen * g_gen**2, axis=1) - mean_gen**2)))
    return {"a": a, "b": b, "G": G, "Q": Q}


def linearised_coefficients(sc: Scenario, targets: np.ndarray, method: str, p1: str = "exact", tau="median",
                            w_min: float = 0.01) -> dict:
    """:func:`ray_coefficients` for a scenario, a target layout and a method's weights at θ0."""
    z = sc.model.logits
    z_dom = z[sc.domain_idx]
    if method in ("sft", "dft", "talr"):
        w, _ = token_weights(method, target_probs(z_dom, targets), tau=tau, w_min=w_min, example_of=sc.example_of)
    else:  # at θ0 the model is its own base: ASFT's KL pull is zero and its ray is DFT's
        w, _ = method_update(method, log_softmax(z_dom), targets, log_softmax(z_dom), example_of=sc.example_of)
    K = sc.model.kernel
    return ray_coefficients(K[np.ix_(sc.general_idx, sc.domain_idx)], K[np.ix_(sc.domain_idx, sc.domain_idx)],
                            z_dom, targets, w, z[sc.general_idx], sc.p_general(p1), sc.rho)


def predicted_ratio(coef_w: dict, coef_1: dict, D: float) -> float:
    """C_w(D) / C_1(D): below one predicts that the reweighting wins at gain D (NaN if C_1 ≤ 0).

    A ray whose initial gain rate a is not positive never buys the gain in the linearised model:
    its cost is infinite (it loses); the same holds for the reference.
    """
    if not coef_1["a"] > 0:
        return float("nan")
    if not coef_w["a"] > 0:
        return float("inf")
    c1 = float(cost_at_gain(coef_1, D))
    cw = float(cost_at_gain(coef_w, D))
    return cw / c1 if c1 > 0 else float("nan")
