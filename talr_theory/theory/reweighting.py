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

The weights' dependence on the model (TALR recomputes them every step) is outside the linearised
model; :func:`linearised_coefficients` evaluates them at θ0. How often the predicted sign matches
full multi-step runs is measured by the ``talr_map`` stage, not assumed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.scenario import Scenario
from talr_theory.theory.steps import step_direction, target_probs, token_weights


@lru_cache(maxsize=1)
def equal_gain_cost():
    """The equal-gain cost C(D) to second order in D, derived by reverting the gain series with sympy.

    Returns (C(D) expression, symbols dict with a, b, G, Q, D, lambda, and the reverted λ(D)).
    """
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
    p = target_probs(z_dom, targets)
    w, _ = token_weights(method, p, tau=tau, w_min=w_min, example_of=sc.example_of)
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
