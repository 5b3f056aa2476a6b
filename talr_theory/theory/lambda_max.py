"""Theorem 3.2 as a measurement: how the safe step size λ_max scales with the tolerance ε and with s.

The paper states λ_max ∝ ε / √s (s = expected number of low-probability target tokens per
domain example). Our working formalization (theory.md C2) says which exponent of ε to expect
depends on how well the model fits the general data P1:

* first-order regime (P1 mis-modeled and the step leaks into general contexts, A² ≫ Bε):
  ΔL(P1) ≈ A·λ, so λ_max ≈ ε / A — linear in ε, the paper's form;
* second-order regime (P1 exactly modeled, A = 0): ΔL(P1) ≈ (B/8)·λ², so λ_max ≈ √(8ε/B).

λ_max itself is found by the one line scan of every tier (``theory.line_scan``).

``fit_lambda_max_scaling`` regresses log λ_max on log ε (and log s when s varies) with bootstrap
confidence intervals over groups (a group = one random instance, all its ε values resampled
together). It is used by every tier (exact, synthetic, LLM); the comparison with the paper's
exponents is made only by ``tiers.protocol.exponent_verdicts``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from talr_theory.stats import fit_power_law
from talr_theory.theory.steps import TALR_W_MIN

# ----------------------------------------------------------------------------------------------
# Exponents of λ_max in ε and s


def fit_lambda_max_scaling(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0, s_column: str = "s") -> dict:
    """Regress log λ_max on log ε and log s (bootstrap CIs over ``group``).

    ``df`` needs columns ``lambda_max, epsilon, s, group`` (``s_column`` may name another column,
    e.g. TALR's effective s). Rows with non-finite or non-positive λ_max (no safe-step limit, e.g.
    a leak-free model) are left out and counted in ``n_dropped``. When s takes a single value only
    the ε exponent is fitted and the s fields are None.

    Returns eps_exponent, eps_exponent_ci, s_exponent, s_exponent_ci, s_column, log_prefactor, r2,
    n_points, n_groups, n_dropped.
    """
    needed = ("lambda_max", "epsilon", s_column, "group")
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"fit_lambda_max_scaling: frame lacks column(s) {missing}; expected {list(needed)}")
    lam = df["lambda_max"].to_numpy(dtype=np.float64)
    eps = df["epsilon"].to_numpy(dtype=np.float64)
    s = df[s_column].to_numpy(dtype=np.float64)
    ok = np.isfinite(lam) & (lam > 0) & np.isfinite(eps) & (eps > 0) & np.isfinite(s) & (s > 0)
    n_dropped = int((~ok).sum())
    if ok.sum() < 3:
        raise ValueError(f"fit_lambda_max_scaling: only {int(ok.sum())} usable rows (positive finite "
                         f"lambda_max, epsilon, {s_column}); need at least 3")
    lam, eps, s = lam[ok], eps[ok], s[ok]
    groups = df["group"].to_numpy()[ok]
    if np.unique(eps).size < 2:
        raise ValueError("fit_lambda_max_scaling: epsilon must take at least two values")
    vary_s = np.unique(s).size >= 2
    regressors = {"epsilon": eps, "s": s} if vary_s else {"epsilon": eps}
    _, group_codes = np.unique(groups.astype(str), return_inverse=True)
    fit = fit_power_law(lam, regressors, groups=group_codes, n_boot=n_boot, seed=seed)
    eps_exp, eps_ci = fit.exponent("epsilon"), fit.ci("epsilon")
    out = {
        "eps_exponent": eps_exp,
        "eps_exponent_ci": list(eps_ci),
        "s_exponent": fit.exponent("s") if vary_s else None,
        "s_exponent_ci": list(fit.ci("s")) if vary_s else None,
        "s_column": s_column,
        "log_prefactor": fit.log_prefactor,
        "r2": fit.r2,
        "n_points": fit.n,
        "n_groups": int(np.unique(group_codes).size),
        "n_dropped": n_dropped,
    }
    return out


# ----------------------------------------------------------------------------------------------
# The exact-tier experiment: λ_max(ε) by root-finding on the exact ΔL(P1) of one gradient step.

def lambda_max_experiment(
    seeds,
    s_values=(1, 2, 4, 8),
    eps_values=(1e-6, 1e-5, 1e-4, 1e-3),
    methods=("sft", "talr"),
    p1: str = "exact",
    config=None,
    tau="median",
    w_min: float = TALR_W_MIN,
    threshold: float = 0.05,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (instance, s, method, ε): exact and predicted λ_max of a single SGD step.

    For each seed a scenario (``talr_theory.theory.scenario``) is built once; for each s the first
    s positions of every example get hard targets; the step direction g on the general contexts is
    the kernel-softmax gradient step with the method's token weights (computed at the start, as
    TALR does per batch). ΔL(P1)(λ) is then exact, and λ_max(ε) is its ε-crossing found by
    bracketing (``tilt.lambda_max_exact``); ``lambda_pred`` is the root of the quadratic TV bound.

    Columns: group, seed, p1, method, s, s_measured (targets with p < threshold per example),
    effective_s (Σ w(1−p) per example), tau, epsilon, lambda_max, lambda_pred,
    lambda_pred_hoeffding, A, B, G.
    """
    from tqdm.auto import tqdm

    from talr_theory.theory.scenario import ScenarioConfig, make_scenario
    from talr_theory.theory.steps import effective_s, step_direction, target_probs, token_weights
    from talr_theory.theory.tilt import (
        delta_L_exact,
        lambda_max_exact,
        lambda_max_quadratic,
        quadratic_coefficients,
    )

    config = ScenarioConfig() if config is None else config
    rows = []
    jobs = [(seed, s, method) for seed in seeds for s in s_values for method in methods]
    for seed, s, method in tqdm(jobs, desc=f"lambda_max ({p1} P1)", disable=not progress, leave=False):
        sc = make_scenario(seed, config)
        targets = sc.targets(s)
        z_dom = sc.model.logits[sc.domain_idx]
        p_tok = target_probs(z_dom, targets)
        w, tau_used = token_weights(method, p_tok, tau=tau, w_min=w_min, example_of=sc.example_of)
        g = step_direction(sc.model.kernel[np.ix_(sc.general_idx, sc.domain_idx)], z_dom, targets, w)
        z_gen = sc.model.logits[sc.general_idx]
        p_gen = sc.p_general(p1)
        coef = quadratic_coefficients(sc.rho, p_gen, z_gen, g)
        hard_per_example = float(np.mean(np.bincount(sc.example_of, weights=(p_tok < threshold))))

        def delta_fn(lam, p_gen=p_gen, z_gen=z_gen, g=g, rho=sc.rho):
            return delta_L_exact(rho, p_gen, z_gen, lam * g)

        for eps in eps_values:
            pred = lambda_max_quadratic(coef["A"], coef["B"], eps)
            rows.append({
                "group": seed, "seed": seed, "p1": p1, "method": method, "s": s,
                "s_measured": hard_per_example,
                "effective_s": effective_s(p_tok, w, sc.example_of),
                "tau": tau_used, "epsilon": eps,
                "lambda_max": lambda_max_exact(delta_fn, eps, lam_start=pred if np.isfinite(pred) else 1.0),
                "lambda_pred": pred,
                "lambda_pred_hoeffding": lambda_max_quadratic(coef["G"], coef["B"], eps),
                **coef,
            })
    return pd.DataFrame(rows)
