"""The single-step tilt: exact ΔL(P) for any logit change, its Jensen/Hoeffding/TV bounds, λ_max.

Setting (theory.md C1–C2). A finite set of contexts c, each with base logits z_c over V tokens
(model q(·|c) = softmax(z_c)), a data distribution that visits context c with weight ρ(c) and
continues it with P(·|c). A fine-tuning step changes the logits by h_c; because
softmax(z + h) ∝ softmax(z)·e^h this is *exactly* an exponential tilt, and

    ΔL(P) = Σ_c ρ(c) [ log E_{q(·|c)} e^{h_c} − E_{P(·|c)} h_c ].

With r_c = max h_c − min h_c and TV_c = TV(P(·|c), q(·|c)):

    Σρ (E_q − E_P) h  ≤  ΔL(P)  ≤  Σρ [(E_q − E_P) h + r²/8]  ≤  Σρ [TV·r + r²/8]
    (Jensen)                        (Hoeffding's lemma)            ((E_q−E_P)h ≤ TV·r)

For a step h = λ·g: ΔL ≤ A·λ + (B/8)·λ² with A = Σρ TV_c R_c, B = Σρ R_c², R_c = range(g_c), so
the predicted safe step for tolerance ε is the positive root of (B/8)λ² + Aλ = ε. Because
ΔL(λ) is convex in λ with ΔL(0) = 0 (a log-partition function minus a linear term), the set of
safe steps {λ ≥ 0: ΔL(λ) ≤ ε} is an interval [0, λ_exact]; the predicted root is always inside it.

Arrays: ``rho`` (C,), ``p`` (C, V) rows summing to 1, ``logits`` (C, V), ``h``/``g`` (C, V).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from talr_theory.theory.codelength import log_softmax, random_distribution
from talr_theory.theory.line_scan import lambda_max_on_line


def _check(rho, p, logits, h):
    rho = np.asarray(rho, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    if not (p.shape == logits.shape == h.shape and p.ndim == 2 and rho.shape == (p.shape[0],)):
        raise ValueError(f"tilt: expected rho (C,), p/logits/h (C, V); got {rho.shape}, {p.shape}, "
                         f"{logits.shape}, {h.shape}")
    return rho, p, logits, h


def delta_L_exact(rho, p, logits, h) -> float:
    """Exact ΔL(P) = Σρ Σ P·(log q1 − log q2), computed from the two log-softmaxes directly.

    This route does not use the tilt identity, so comparing it with the bounds is a real check.
    """
    rho, p, logits, h = _check(rho, p, logits, h)
    diff = log_softmax(logits) - log_softmax(logits + h)
    return float(np.sum(rho * np.sum(np.where(p > 0, p * diff, 0.0), axis=1)))


def per_context_terms(rho, p, logits, h) -> dict[str, np.ndarray]:
    """Per-context pieces of the bounds: first-order term (E_q − E_P)h, range r, TV, log-MGF."""
    rho, p, logits, h = _check(rho, p, logits, h)
    logq = log_softmax(logits)
    q = np.exp(logq)
    first = np.sum((q - p) * h, axis=1)
    r = h.max(axis=1) - h.min(axis=1)
    tv = 0.5 * np.sum(np.abs(q - p), axis=1)
    log_mgf = logsumexp(logq + h, axis=1)
    return {"first": first, "range": r, "tv": tv, "log_mgf": log_mgf, "E_p_h": np.sum(p * h, axis=1)}


def tilt_bounds(rho, p, logits, h) -> dict[str, float]:
    """Exact ΔL and its three bounds for one logit change h (see the module docstring)."""
    rho, p, logits, h = _check(rho, p, logits, h)
    t = per_context_terms(rho, p, logits, h)
    return {
        "exact": delta_L_exact(rho, p, logits, h),
        "tilt_form": float(np.sum(rho * (t["log_mgf"] - t["E_p_h"]))),
        "jensen_lower": float(np.sum(rho * t["first"])),
        "hoeffding_upper": float(np.sum(rho * (t["first"] + t["range"] ** 2 / 8.0))),
        "tv_upper": float(np.sum(rho * (t["tv"] * t["range"] + t["range"] ** 2 / 8.0))),
    }


def quadratic_coefficients(rho, p, logits, g) -> dict[str, float]:
    """For h = λ·g: A = Σρ TV·R (first-order, mis-modeling × leakage), B = Σρ R², G = Σρ (E_q−E_P) g."""
    rho, p, logits, g = _check(rho, p, logits, g)
    t = per_context_terms(rho, p, logits, g)
    return {"A": float(np.sum(rho * t["tv"] * t["range"])),
            "B": float(np.sum(rho * t["range"] ** 2)),
            "G": float(np.sum(rho * t["first"]))}


def lambda_max_quadratic(A: float, B: float, eps: float) -> float:
    """Positive root of (B/8)λ² + Aλ = ε (A may be negative, as for the Hoeffding form with G).

    Written without cancellation: for A ≥ 0 the root is 2ε / (A + √(A² + Bε/2)).
    Returns inf when the bound never reaches ε (B = 0 and A ≤ 0).
    """
    if eps <= 0:
        raise ValueError(f"lambda_max_quadratic: tolerance eps must be > 0, got {eps}")
    disc = np.sqrt(A * A + B * eps / 2.0)
    if A >= 0:
        return float(2.0 * eps / (A + disc)) if A + disc > 0 else float("inf")
    if B <= 0:
        return float("inf")
    return float((disc - A) * 4.0 / B)


def lambda_max_exact(delta_fn, eps: float, lam_start: float = 1.0, max_doublings: int = 80,
                     rtol: float = 1e-12) -> float:
    """The exact safe step: the λ > 0 where the convex curve ΔL(λ) crosses ε (inf if it never does).

    ``delta_fn(λ)`` must be the exact degradation after a step of size λ. The one line scan
    (``line_scan.lambda_max_on_line``) doubles λ from ``lam_start`` until ΔL > ε (halving first if
    ΔL(lam_start) ≥ ε) and Brent's method solves inside the last doubling. Convexity and
    ΔL(0) = 0 < ε make the crossing unique.
    """
    if eps <= 0:
        raise ValueError(f"lambda_max_exact: tolerance eps must be > 0, got {eps}")
    start = float(lam_start) if np.isfinite(lam_start) and lam_start > 0 else 1.0
    return lambda_max_on_line(delta_fn, eps, lam_start=start, factor=2.0, max_evals=max_doublings, rtol=rtol,
                              xtol=1e-300)


def cumulants(q: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
    """First three cumulants of g under q (mean, variance, third central moment)."""
    q = np.asarray(q, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    m = float(np.sum(q * g))
    c = g - m
    return m, float(np.sum(q * c**2)), float(np.sum(q * c**3))


# ----------------------------------------------------------------------------------------------
# Random instances for the property checks and the exact-tier summary.

def random_instance(rng: np.random.Generator, max_contexts: int = 6, max_vocab: int = 10) -> dict:
    """A random single-step problem: contexts, model logits, data P, tilt direction g.

    P is, with equal chance, the model itself (exactly modeled), a mixture of the model with a
    random distribution (mildly mis-modeled), or an unrelated random distribution with zeros.
    """
    C = int(rng.integers(1, max_contexts + 1))
    V = int(rng.integers(2, max_vocab + 1))
    logits = rng.normal(0.0, float(rng.uniform(0.1, 4.0)), size=(C, V))
    q = np.exp(log_softmax(logits))
    kind = int(rng.integers(3))
    if kind == 0:
        p = q.copy()
    elif kind == 1:
        mix = float(rng.uniform(0.0, 0.5))
        p = (1 - mix) * q + mix * np.stack([random_distribution(rng, V) for _ in range(C)])
    else:
        p = np.stack([random_distribution(rng, V, float(rng.uniform(0.2, 2.0)), 0.4) for _ in range(C)])
    rho = rng.dirichlet(np.ones(C))
    g = rng.normal(0.0, 1.0, size=(C, V)) * rng.uniform(0.1, 3.0, size=(C, 1))
    return {"rho": rho, "p": p, "logits": logits, "g": g, "kind": ("exact", "mixture", "random")[kind]}


def check_single_step(rng: np.random.Generator, n_instances: int = 1000, lams=(1e-3, 1e-2, 0.1, 1.0, 10.0),
                      eps_values=(1e-4, 1e-2)) -> pd.DataFrame:
    """Check the bounds and the predicted λ_max on random instances; one row per (instance, λ).

    Columns: instance, kind, lam, exact, tilt_form, jensen_lower, hoeffding_upper, tv_upper,
    lower_violation, upper_violation (Hoeffding or TV bound broken beyond rounding) and, on the
    rows of the first λ, the exact and predicted λ_max for each ε.
    The rounding tolerance is 1e-12·(1 + Σρ·max|h|): the bounds are tested, not the tolerance.
    """
    rows = []
    for k in range(n_instances):
        inst = random_instance(rng)
        rho, p, logits, g = inst["rho"], inst["p"], inst["logits"], inst["g"]
        coef = quadratic_coefficients(rho, p, logits, g)
        lam_rows = []
        for lam in lams:
            h = lam * g
            b = tilt_bounds(rho, p, logits, h)
            tol = 1e-12 * (1.0 + float(np.sum(rho * np.abs(h).max(axis=1))))
            lam_rows.append({
                "instance": k, "kind": inst["kind"], "lam": lam, **b,
                "lower_violation": bool(b["jensen_lower"] > b["exact"] + tol),
                "upper_violation": bool(b["exact"] > b["hoeffding_upper"] + tol
                                        or b["hoeffding_upper"] > b["tv_upper"] + tol),
                "tilt_identity_error": abs(b["exact"] - b["tilt_form"]),
            })
        def delta_fn(lam, rho=rho, p=p, logits=logits, g=g):
            return delta_L_exact(rho, p, logits, lam * g)
        for eps in eps_values:
            pred = lambda_max_quadratic(coef["A"], coef["B"], eps)
            pred_h = lambda_max_quadratic(coef["G"], coef["B"], eps)
            exact = lambda_max_exact(delta_fn, eps, lam_start=pred if np.isfinite(pred) else 1.0)
            lam_rows[0][f"lambda_max_exact_eps{eps:g}"] = exact
            lam_rows[0][f"lambda_max_pred_eps{eps:g}"] = pred
            lam_rows[0][f"lambda_max_hoeffding_eps{eps:g}"] = pred_h
        rows.extend(lam_rows)
    return pd.DataFrame(rows)


def summarize_single_step(frame: pd.DataFrame, eps_values=(1e-4, 1e-2)) -> dict:
    """The JSON ``single_step`` block from ``check_single_step`` rows.

    ``max_relative_gap`` is the largest 1 − λ_pred/λ_exact over instances and ε: how much smaller
    the safe step predicted by the quadratic (TV) bound is than the exact safe step (0 = tight).
    A predicted root above the exact one would be a bound violation and is counted as such.
    """
    first = frame.groupby("instance", sort=True).first()
    gaps, pred_viol, by_kind = [], 0, {}
    for eps in eps_values:
        ex = first[f"lambda_max_exact_eps{eps:g}"].to_numpy()
        pr = first[f"lambda_max_pred_eps{eps:g}"].to_numpy()
        ph = first[f"lambda_max_hoeffding_eps{eps:g}"].to_numpy()
        finite = np.isfinite(ex) & np.isfinite(pr)
        gaps.append(1.0 - pr[finite] / ex[finite])
        for kind in np.unique(first["kind"]):
            sel = finite & (first["kind"].to_numpy() == kind)
            by_kind.setdefault(str(kind), []).extend((1.0 - pr[sel] / ex[sel]).tolist())
        pred_viol += int(np.sum(pr[finite] > ex[finite] * (1 + 1e-9)))
        fin_h = np.isfinite(ex) & np.isfinite(ph)
        pred_viol += int(np.sum(ph[fin_h] > ex[fin_h] * (1 + 1e-9)))
    gap = np.concatenate(gaps) if gaps else np.array([np.nan])
    return {
        "n_instances": int(frame["instance"].nunique()),
        "n_checks": int(len(frame)),
        "lower_bound_violations": int(frame["lower_violation"].sum()),
        "upper_bound_violations": int(frame["upper_violation"].sum()) + pred_viol,
        "max_relative_gap": float(np.max(gap)),
        "median_relative_gap": float(np.median(gap)),
        "median_relative_gap_by_p_kind": {k: float(np.median(v)) for k, v in by_kind.items() if v},
        "max_tilt_identity_error": float(frame["tilt_identity_error"].max()),
        "gap_definition": "1 - lambda_pred/lambda_exact: lambda_pred = root of the quadratic TV bound "
                          "A*lam + (B/8)*lam^2 = eps, lambda_exact = root of the exact ΔL(lam) = eps",
    }


def bound_curve(rho, p, logits, g, lams) -> pd.DataFrame:
    """Exact ΔL and its bounds along λ for one direction g (tidy: one row per λ and quantity)."""
    rows = []
    for lam in np.asarray(lams, dtype=np.float64):
        b = tilt_bounds(rho, p, logits, lam * g)
        for name in ("exact", "jensen_lower", "hoeffding_upper", "tv_upper"):
            rows.append({"lam": float(lam), "quantity": name, "delta_L": b[name]})
    return pd.DataFrame(rows)
