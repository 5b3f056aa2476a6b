"""The exact tier of theorem checks, end to end: identities, single-step bounds, Thm 3.1, Thm 3.2.

``run_exact_tier(quick, seed)`` returns the JSON summary shared by all tiers (see README):
``identity_max_abs_error``, ``single_step``, ``theorem_3_1``, ``theorem_3_2``,
``theorem_3_2_talr`` and ``notes``, plus extra blocks for the mis-modeled-P1 scenario and the
resolved configuration. ``compute_exact_tier`` also returns the tidy tables behind the numbers
(for the notebook and ``talr-theory bounds --out``).

The default Theorem 3.2 experiment uses general data modeled exactly (P1 = q, the literal reading
of "already well modeled"); the mis-modeled scenario is run next to it so both regimes of
theory.md C2 are visible. Nothing here is tuned to the paper's exponents: the grids of ε, s and λ
are fixed below and the fitted exponents are reported with their bootstrap intervals whatever
they are.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from talr_theory.theory.codelength import identity_errors
from talr_theory.theory.envelope import (
    DEFAULT_BETAS,
    fit_best_beta,
    fit_envelope,
    holdout_validity,
    interpolate_at_common_delta,
    lambda_excess_exponents,
)
from talr_theory.theory.lambda_max import fit_lambda_max_scaling, lambda_max_experiment
from talr_theory.theory.scenario import ScenarioConfig, make_scenario
from talr_theory.theory.tilt import check_single_step, summarize_single_step
from talr_theory.theory.trajectories import run_trajectory, trajectories_frame, with_p1


@dataclass(frozen=True)
class ExactTierConfig:
    quick: bool = False
    seed: int = 0
    n_identity: int = 1000
    n_single_step: int = 3000
    single_step_lams: tuple[float, ...] = (1e-3, 1e-2, 0.1, 1.0, 10.0)
    single_step_eps: tuple[float, ...] = (1e-4, 1e-2)
    n_lambda_instances: int = 24
    s_values: tuple[int, ...] = (1, 2, 4, 8)
    eps_values: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    talr_tau: str = "median"
    talr_w_min: float = 0.01
    traj_s: int = 4
    traj_lams: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
    traj_target_gain: float = 0.5
    traj_grid: tuple[float, ...] = tuple(np.round(np.linspace(0.05, 0.5, 10), 10))
    compare_lams: tuple[float, ...] = (16.0, 64.0)
    compare_methods: tuple[str, ...] = ("sft", "talr", "dft")
    compare_max_steps: int = 20000
    n_boot: int = 1000
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)


def exact_tier_config(quick: bool, seed: int) -> ExactTierConfig:
    if quick:
        return ExactTierConfig(quick=True, seed=seed, n_identity=150, n_single_step=300,
                               n_lambda_instances=6, n_boot=300, compare_lams=(64.0,),
                               compare_methods=("sft", "talr"))
    return ExactTierConfig(quick=False, seed=seed)


def _sft_trajectories(cfg: ExactTierConfig) -> list:
    sc = make_scenario(cfg.seed, cfg.scenario)
    return [run_trajectory(sc, cfg.traj_s, lam, cfg.traj_target_gain, method="sft",
                           tau=cfg.talr_tau, w_min=cfg.talr_w_min) for lam in cfg.traj_lams]


def _theorem_3_1(cfg: ExactTierConfig, p1: str, runs: list) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    trajs = [with_p1(t, p1) for t in runs]
    steps = trajectories_frame(trajs, seed=cfg.seed, p1=p1)
    points = interpolate_at_common_delta([(t.lam, t.delta_star, t.delta_L) for t in trajs], cfg.traj_grid)
    fit2 = fit_envelope(points["delta_star"], points["delta_L"], points["lam"], beta=2.0)
    best = fit_best_beta(points["delta_star"], points["delta_L"], points["lam"])
    lams = sorted(cfg.traj_lams)
    # Interpolation check: hold out every other interior λ (fit keeps both ends).
    test_interp = [lam for i, lam in enumerate(lams) if i % 2 == 1 and i != len(lams) - 1]
    fit_interp = [lam for lam in lams if lam not in test_interp]
    hold = holdout_validity(points, fit_interp, test_interp, beta=2.0)
    # Extrapolation check: fit on all but the largest λ, test on the largest.
    extra = holdout_validity(points, lams[:-1], lams[-1:], beta=2.0)
    excess = lambda_excess_exponents(points, n_boot=cfg.n_boot, seed=cfg.seed)
    piv = points.pivot_table(index="delta_star", columns="lam", values="delta_L")
    top = piv.dropna().iloc[-1] if len(piv.dropna()) else None
    k2_share = fit2.k2 * points["delta_star"] ** 2 * points["lam"] / fit2.bound(points["delta_star"], points["lam"])
    block = {
        "k1": fit2.k1, "k2": fit2.k2, "beta": 2.0,
        "total_slack": fit2.total_slack,
        "beta_best": best.beta, "k1_best_beta": best.k1, "k2_best_beta": best.k2,
        "beta_best_at_scan_edge": bool(best.beta in (min(DEFAULT_BETAS), max(DEFAULT_BETAS))),
        "beta_excess": excess["beta_excess"], "beta_excess_ci": excess["beta_excess_ci"],
        "lam_exponent_excess": excess["lam_exponent"], "lam_exponent_excess_ci": excess["lam_exponent_ci"],
        "small_lam_share_at_max_delta": (float(top.iloc[0] / top.iloc[-1]) if top is not None and top.iloc[-1] > 0
                                         else None),
        "total_slack_best_beta": best.total_slack,
        "holdout_violation_rate": hold["holdout_violation_rate"],
        "holdout_fit_lams": hold["fit_lams"], "holdout_test_lams": hold["test_lams"],
        "holdout_max_violation_ratio": hold["max_violation_ratio"],
        "extrapolation_violation_rate": extra["holdout_violation_rate"],
        "extrapolation_test_lams": extra["test_lams"],
        "extrapolation_max_violation_ratio": extra["max_violation_ratio"],
        "k2_term_share_max": float(np.nanmax(k2_share)) if len(k2_share) else float("nan"),
        "n_points": int(len(points)),
        "all_targets_reached": bool(all(t.reached for t in trajs)),
        "steps_per_lam": {str(t.lam): t.steps for t in trajs},
        "p1": p1, "s": cfg.traj_s, "method": "sft",
    }
    points = points.assign(p1=p1, bound_beta2=fit2.bound(points["delta_star"], points["lam"]),
                           bound_best=best.bound(points["delta_star"], points["lam"]))
    return block, steps, points


def _methods_at_equal_gain(cfg: ExactTierConfig) -> tuple[dict, pd.DataFrame]:
    """ΔL(P1) of SFT, TALR and DFT trajectories read at the same domain gains Δ* (the fair comparison).

    λ_max compares methods at equal step size, but TALR's weights also slow domain learning; what
    matters for the paper's trade-off is the general degradation paid for a given domain gain.
    """
    sc = make_scenario(cfg.seed, cfg.scenario)
    rows = []
    for method in cfg.compare_methods:
        for lam in cfg.compare_lams:
            run = run_trajectory(sc, cfg.traj_s, lam, cfg.traj_target_gain, method=method,
                                 tau=cfg.talr_tau, w_min=cfg.talr_w_min, max_steps=cfg.compare_max_steps)
            for p1 in ("exact", "mismodeled"):
                t = with_p1(run, p1)
                pts = interpolate_at_common_delta([(t.lam, t.delta_star, t.delta_L)], cfg.traj_grid)
                rows.append(pts.assign(p1=p1, method=method, steps=t.steps, reached=t.reached,
                                       easy_share=t.easy_mass / max(t.easy_mass + t.hard_mass, 1e-300)))
    frame = pd.concat(rows, ignore_index=True)
    block = {"lams": list(cfg.compare_lams), "s": cfg.traj_s, "target_gain": cfg.traj_target_gain}
    for p1 in ("exact", "mismodeled"):
        sub = frame[frame["p1"] == p1]
        piv = sub.pivot_table(index=["lam", "delta_star"], columns="method", values="delta_L")
        entry = {}
        for method in ("talr", "dft"):
            if method in piv.columns:
                both = piv[["sft", method]].dropna()
                ok = both["sft"] > 0
                entry[f"{method}_over_sft_median"] = (float(np.median(both.loc[ok, method] / both.loc[ok, "sft"]))
                                                      if ok.any() else None)
        top = sub[sub["delta_star"] == sub["delta_star"].max()]
        entry["delta_L_at_max_gain"] = {m: float(g["delta_L"].mean()) for m, g in top.groupby("method")}
        entry["max_gain"] = float(sub["delta_star"].max()) if len(sub) else None
        entry["steps"] = {f"{m}@{lam:g}": int(g["steps"].iloc[0]) for (m, lam), g in sub.groupby(["method", "lam"])}
        entry["easy_update_share"] = {f"{m}@{lam:g}": float(g["easy_share"].iloc[0])
                                      for (m, lam), g in sub.groupby(["method", "lam"])}
        entry["unreached"] = sorted({f"{m}@{lam:g}" for (m, lam), g in sub.groupby(["method", "lam"])
                                     if not bool(g["reached"].iloc[0])})
        block[p1] = entry
    return block, frame


def _theorem_3_2(frame: pd.DataFrame, method: str, n_boot: int, seed: int) -> dict:
    sub = frame[frame["method"] == method]
    block = fit_lambda_max_scaling(sub, n_boot=n_boot, seed=seed)
    block["method"] = method
    block["p1"] = str(sub["p1"].iloc[0])
    block["effective_s"] = {str(s): float(v) for s, v in sub.groupby("s")["effective_s"].mean().items()}
    block["s_measured"] = {str(s): float(v) for s, v in sub.groupby("s")["s_measured"].mean().items()}
    # How often the first-order term is negative (the step *improves* P1 at small λ).
    per_instance = sub.drop_duplicates(["group", "s"])
    block["fraction_first_order_negative"] = float(np.mean(per_instance["G"] < 0))
    ratio = (sub["lambda_pred"] / sub["lambda_max"]).to_numpy()
    block["pred_over_exact_median"] = float(np.nanmedian(ratio))
    if method == "talr":
        block["tau_median"] = float(sub["tau"].median())
    return block


def _talr_vs_sft(frame: pd.DataFrame) -> float:
    piv = frame.pivot_table(index=["group", "s", "epsilon"], columns="method", values="lambda_max")
    ratio = (piv["talr"] / piv["sft"]).replace([np.inf, -np.inf], np.nan).dropna()
    return float(np.median(ratio)) if len(ratio) else float("nan")


def _leak_geometry(default: pd.DataFrame, indep: pd.DataFrame, tab: pd.DataFrame, cfg: ExactTierConfig,
                   seed: int) -> dict:
    """SFT s exponent with P1 exact for two leakage geometries, and the leak-free tabular check."""
    out = {}
    for name, frame in (("default", default[default["method"] == "sft"]), ("independent", indep)):
        fit = fit_lambda_max_scaling(frame, n_boot=cfg.n_boot, seed=seed)
        out[name] = {k: fit[k] for k in ("eps_exponent", "eps_exponent_ci", "s_exponent", "s_exponent_ci", "regime")}
    out["default"]["kernel"] = f"(1-leak)·I + leak·ΨΨᵀ + {cfg.scenario.common:g}·11ᵀ (shared positive direction)"
    out["independent"]["kernel"] = "(1-leak)·I + leak·ΨΨᵀ (independent random directions only)"
    out["tabular_all_lambda_max_infinite"] = bool(np.isinf(tab["lambda_max"]).all())
    return out


def _notes(out: dict) -> list[str]:
    notes = []
    ss = out["single_step"]
    notes.append(f"ΔL identities: the four forms (code length, KL difference, token tree, tilt) agree to "
                 f"{out['identity_max_abs_error']:.1e} nats on {out['n_identity_instances']} random trees.")
    notes.append(f"Single-step bounds (Jensen ≤ exact ≤ Hoeffding ≤ TV, predicted λ_max ≤ exact λ_max): "
                 f"{ss['lower_bound_violations']} lower and {ss['upper_bound_violations']} upper violations on "
                 f"{ss['n_checks']} checks ({ss['n_instances']} random instances). The quadratic TV bound's safe "
                 f"step is {100 * ss['median_relative_gap']:.0f}% below the exact one at the median "
                 f"(worst {100 * ss['max_relative_gap']:.0f}%): valid but conservative.")
    t1 = out["theorem_3_1"]
    edge = " (the edge of the scanned range)" if t1["beta_best_at_scan_edge"] else ""
    beta_text = ("matches the paper's β = 2" if abs(t1["beta_best"] - 2.0) < 0.05 else "differs from the paper's β = 2")
    notes.append(f"Theorem 3.1 (P1 {t1['p1']}, SFT, s={t1['s']}): the tightest envelope with β=2 has k1={t1['k1']:.3g}, "
                 f"k2={t1['k2']:.3g}; the least-slack β is {t1['beta_best']:.1f}{edge}, which {beta_text}.")
    if t1["beta_excess"] is not None:
        lo, hi = t1["beta_excess_ci"]
        llo, lhi = t1["lam_exponent_excess_ci"]
        if lo <= 2.0 <= hi and lo <= 1.0 <= hi:
            agree = "too noisy to tell the paper's Δ*² from Δ*¹"
        elif lo <= 2.0 <= hi:
            agree = "consistent with the paper's Δ*²"
        else:
            agree = "unlike the paper's Δ*²"
        lam_agree = "consistent with" if llo <= 1.0 <= lhi else "unlike"
        notes.append(f"Theorem 3.1, λ-dependent part measured directly (ΔL minus the smallest-λ curve at the same "
                     f"Δ*): it grows like Δ*^{t1['beta_excess']:.2f} (95% CI {lo:.2f}..{hi:.2f}) — {agree} — and "
                     f"like (λ−λ_min)^{t1['lam_exponent_excess']:.2f} (CI {llo:.2f}..{lhi:.2f}), {lam_agree} "
                     f"the linear-in-λ form.")
    share = t1["small_lam_share_at_max_delta"]
    if share is not None:
        notes.append(f"Theorem 3.1: at the largest common Δ*, the smallest step size still has {100 * share:.0f}% of "
                     f"the largest step's degradation — most of ΔL(P1) here is the λ-free gradient-flow part "
                     f"(the path itself moves general contexts through leakage), carried by k1·Δ* in the envelope; "
                     f"it is convex in Δ*, which the form k1·Δ* cannot follow, so the least-slack β also absorbs "
                     f"that curvature.")
    notes.append(f"Theorem 3.1 out of sample: fitted on λ={t1['holdout_fit_lams']}, the β=2 bound is violated "
                 f"on {100 * t1['holdout_violation_rate']:.0f}% of held-out points at λ={t1['holdout_test_lams']} "
                 f"(interpolation) and on {100 * t1['extrapolation_violation_rate']:.0f}% at the largest "
                 f"λ={t1['extrapolation_test_lams']} (extrapolation).")
    for key, label in (("theorem_3_2", "SFT"), ("theorem_3_2_talr", "TALR")):
        b = out[key]
        s_part = f" The {b['s_explanation']}" if b.get("s_explanation") else ""
        notes.append(f"Theorem 3.2, {label}, default experiment (P1 {b['p1']}): regime {b['regime']}. "
                     f"{b['regime_explanation']}{s_part}")
    for key, label in (("theorem_3_2_mismodeled", "SFT"), ("theorem_3_2_talr_mismodeled", "TALR")):
        b = out[key]
        s_part = f" The {b['s_explanation']}" if b.get("s_explanation") else ""
        neg = b["fraction_first_order_negative"]
        neg_text = (f" In {100 * neg:.0f}% of (instance, s) cases the first-order term is negative: the step "
                    f"first *improves* P1 (it lowers the model's excess mass on tokens P1 never uses), so small "
                    f"tolerances are never hit until larger λ." if neg > 0 else "")
        notes.append(f"Theorem 3.2, {label}, mis-modeled P1 (the model gives domain tokens mass that general data "
                     f"never use): regime {b['regime']}. {b['regime_explanation']}{s_part}{neg_text}")
    geo = out["leak_geometry"]
    ind, dflt = geo["independent"], geo["default"]
    notes.append(f"Leakage geometry (theory.md C3), SFT with P1 exact: with independent leakage directions only the s "
                 f"exponent is {ind['s_exponent']:.3f} (CI {ind['s_exponent_ci'][0]:.3f}..{ind['s_exponent_ci'][1]:.3f}); "
                 f"adding a shared positive kernel direction (the default) makes it {dflt['s_exponent']:.3f} — "
                 f"independent hard-token errors add like √s, aligned ones like s. In the tabular (leak-free) model "
                 + ("no tolerance is ever exceeded (λ_max = ∞), as C1 predicts."
                    if geo["tabular_all_lambda_max_infinite"] else "some λ_max were finite — unexpected, check."))
    eff = out["theorem_3_2_talr"]["effective_s"]
    eff_sft = out["theorem_3_2"]["effective_s"]
    notes.append("TALR's effective hard-token count s_w = Σ w(1−p) per example is "
                 + ", ".join(f"{eff[k]:.2f} (SFT {eff_sft[k]:.2f}) at s={k}" for k in eff)
                 + f"; its exact λ_max is {out['talr_over_sft_lambda_max_median']:.1f}× SFT's at the median. "
                 "Caveat: λ_max compares safe step sizes, not domain progress per step — TALR's smaller "
                 "weights also slow domain learning, so the fair comparison is at equal domain gain (Theorem 3.1, "
                 "synthetic and LLM tiers).")
    eq = out["methods_at_equal_gain"]
    for p1 in ("exact", "mismodeled"):
        e = eq[p1]
        r = e.get("talr_over_sft_median")
        if r is None:
            continue
        share = e["easy_update_share"]
        share_text = ", ".join(f"{k} {100 * v:.0f}%" for k, v in share.items())
        verdict = ("TALR pays less general degradation than SFT for the same domain gain — the paper's claim"
                   if r < 1 else
                   "TALR pays MORE general degradation than SFT for the same domain gain here, against the paper's "
                   "motivation. Likely cause (share measured below): with hard tokens floored at w_min, TALR needs many more steps and "
                   "spends most of its cumulative update Σ w(1−p) on the easy tokens, sharpening them further, and "
                   "in this model those updates leak into general contexts too")
        verdict += (f" (share of the cumulative update on easy tokens: {share_text}). One scenario (seed "
                    f"{out['seed']}), with many easy tokens and a shared leakage direction — the tiers with real "
                    f"transformers decide whether this carries over")
        unreached = f" (not reaching the target: {', '.join(e['unreached'])})" if e["unreached"] else ""
        dft = e.get("dft_over_sft_median")
        dft_text = f"; DFT/SFT = {dft:.2f}" if dft is not None else ""
        notes.append(f"Equal domain gain, P1 {p1} (λ={eq['lams']}, s={eq['s']}): ΔL(P1)_TALR / ΔL(P1)_SFT = {r:.2f} "
                     f"at the median over common Δ*{dft_text}{unreached}. {verdict}.")
    notes.append("Paper vs here: the paper states λ_max ∝ ε/√s and ΔL ≤ k1Δ* + k2Δ*²λ without its constants or "
                 "proofs; here the exponents are measured on exact models and reported with 95% bootstrap "
                 "intervals over random instances. Disagreements above are results, not fitting failures.")
    return notes


def compute_exact_tier(quick: bool = False, seed: int = 0, progress: bool = True) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Run every exact-tier check; returns (JSON summary, tidy tables)."""
    from tqdm.auto import tqdm

    cfg = exact_tier_config(quick, seed)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    stages = tqdm(total=5, desc="exact tier", disable=not progress, leave=False)

    id_err = identity_errors(rng, cfg.n_identity)
    stages.update()
    single = check_single_step(rng, cfg.n_single_step, lams=cfg.single_step_lams, eps_values=cfg.single_step_eps)
    stages.update()
    runs = _sft_trajectories(cfg)
    t31, steps_exact, points_exact = _theorem_3_1(cfg, "exact", runs)
    t31_mis, steps_mis, points_mis = _theorem_3_1(cfg, "mismodeled", runs)
    equal_gain, equal_gain_frame = _methods_at_equal_gain(cfg)
    stages.update()
    seeds = [seed * 1000 + k for k in range(cfg.n_lambda_instances)]
    common = dict(s_values=cfg.s_values, eps_values=cfg.eps_values, methods=("sft", "talr"),
                  config=cfg.scenario, tau=cfg.talr_tau, w_min=cfg.talr_w_min)
    lam_exact = lambda_max_experiment(seeds, p1="exact", **common)
    stages.update()
    lam_mis = lambda_max_experiment(seeds, p1="mismodeled", **common)
    # Leakage geometry (theory.md C3): the same experiment with independent directions only
    # (no shared positive kernel component), and the tabular model (no leakage at all).
    geo_common = dict(common, methods=("sft",))
    geo_common["config"] = replace(cfg.scenario, common=0.0)
    lam_indep = lambda_max_experiment(seeds, p1="exact", **geo_common).assign(geometry="independent")
    geo_common["config"] = replace(cfg.scenario, common=0.0, leak=0.0)
    lam_tab = lambda_max_experiment(seeds[:1], p1="exact", **geo_common).assign(geometry="tabular")
    stages.update()
    stages.close()

    out = {
        "tier": "exact",
        "quick": quick,
        "seed": seed,
        "identity_max_abs_error": float(id_err.max()),
        "n_identity_instances": int(len(id_err)),
        "single_step": summarize_single_step(single, cfg.single_step_eps),
        "theorem_3_1": t31,
        "theorem_3_1_mismodeled": t31_mis,
        "methods_at_equal_gain": equal_gain,
        "theorem_3_2": _theorem_3_2(lam_exact, "sft", cfg.n_boot, seed),
        "theorem_3_2_talr": _theorem_3_2(lam_exact, "talr", cfg.n_boot, seed),
        "theorem_3_2_mismodeled": _theorem_3_2(lam_mis, "sft", cfg.n_boot, seed),
        "theorem_3_2_talr_mismodeled": _theorem_3_2(lam_mis, "talr", cfg.n_boot, seed),
        "talr_over_sft_lambda_max_median": _talr_vs_sft(lam_exact),
        "leak_geometry": _leak_geometry(lam_exact, lam_indep, lam_tab, cfg, seed),
    }
    out["theorem_3_2_talr"]["effective_s_mean"] = float(np.mean(list(out["theorem_3_2_talr"]["effective_s"].values())))
    out["notes"] = _notes(out)
    cfg_dict = asdict(cfg)
    out["config"] = cfg_dict
    out["elapsed_s"] = time.perf_counter() - t0
    frames = {
        "single_step": single,
        "trajectories": pd.concat([steps_exact, steps_mis], ignore_index=True),
        "envelope_points": pd.concat([points_exact, points_mis], ignore_index=True),
        "methods_at_equal_gain": equal_gain_frame,
        "lambda_max": pd.concat([lam_exact.assign(geometry="default"), lam_mis.assign(geometry="default"),
                                 lam_indep], ignore_index=True),
        "identity_errors": pd.DataFrame({"instance": np.arange(len(id_err)), "max_abs_error": id_err}),
    }
    return out, frames


def run_exact_tier(quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """The exact-tier JSON summary (see ``compute_exact_tier`` for the tables too)."""
    return compute_exact_tier(quick, seed, progress)[0]


def _fmt_ci(ci) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def format_summary(out: dict) -> str:
    """A readable multi-line summary of ``run_exact_tier``'s result."""
    ss, t1 = out["single_step"], out["theorem_3_1"]
    lines = [
        f"talr-theory bounds — exact tier ({'quick' if out['quick'] else 'full'}, seed {out['seed']}, "
        f"{out['elapsed_s']:.1f} s)",
        f"  ΔL identities: max |difference| = {out['identity_max_abs_error']:.2e} nats "
        f"({out['n_identity_instances']} random token trees)",
        f"  single step: {ss['n_instances']} instances, {ss['n_checks']} checks, lower-bound violations "
        f"{ss['lower_bound_violations']}, upper-bound violations {ss['upper_bound_violations']}, "
        f"λ_max gap max {ss['max_relative_gap']:.3f} / median {ss['median_relative_gap']:.3f}",
        f"  Theorem 3.1 (P1 {t1['p1']}): k1={t1['k1']:.4g}, k2={t1['k2']:.4g} (β=2); best β={t1['beta_best']:.1f}; "
        f"held-out violation rate {t1['holdout_violation_rate']:.2f}, extrapolation {t1['extrapolation_violation_rate']:.2f}",
    ]
    for key in ("theorem_3_2", "theorem_3_2_talr", "theorem_3_2_mismodeled", "theorem_3_2_talr_mismodeled"):
        b = out[key]
        s_exp = "n/a" if b["s_exponent"] is None else f"{b['s_exponent']:.3f}"
        lines.append(f"  {key} ({b['method']}, P1 {b['p1']}): ε exponent {b['eps_exponent']:.3f} "
                     f"{_fmt_ci(b['eps_exponent_ci'])}, s exponent {s_exp} {_fmt_ci(b['s_exponent_ci'])} "
                     f"→ {b['regime']}   (paper: ε^1, s^-0.5)")
    lines.append("  notes:")
    lines.extend(f"   - {n}" for n in out["notes"])
    return "\n".join(lines)


def scenario_step_curve(seed: int = 0, s: int = 4, p1: str = "exact", method: str = "sft", lams=None,
                        config: ScenarioConfig | None = None, tau="median", w_min: float = 0.01) -> pd.DataFrame:
    """Exact ΔL(P1) and its bounds along λ for one gradient step of a scenario (tidy, for figures).

    Columns: lam, quantity (exact, jensen_lower, hoeffding_upper, tv_upper, quadratic_upper), delta_L,
    p1, method, s. ``quadratic_upper`` is A·λ + (B/8)·λ², the form behind the predicted λ_max (it
    equals the TV bound for a step h = λ·g).
    """
    from talr_theory.theory.steps import step_direction, target_probs, token_weights
    from talr_theory.theory.tilt import bound_curve, quadratic_coefficients

    sc = make_scenario(seed, ScenarioConfig() if config is None else config)
    lams = np.logspace(-2, 3, 41) if lams is None else np.asarray(lams, dtype=np.float64)
    targets = sc.targets(s)
    z_dom = sc.model.logits[sc.domain_idx]
    w, _ = token_weights(method, target_probs(z_dom, targets), tau=tau, w_min=w_min, example_of=sc.example_of)
    g = step_direction(sc.model.kernel[np.ix_(sc.general_idx, sc.domain_idx)], z_dom, targets, w)
    z_gen, p_gen = sc.model.logits[sc.general_idx], sc.p_general(p1)
    curve = bound_curve(sc.rho, p_gen, z_gen, g, lams)
    coef = quadratic_coefficients(sc.rho, p_gen, z_gen, g)
    quad = pd.DataFrame({"lam": lams, "quantity": "quadratic_upper",
                         "delta_L": coef["A"] * lams + coef["B"] / 8 * lams**2})
    return pd.concat([curve, quad], ignore_index=True).assign(p1=p1, method=method, s=s)
