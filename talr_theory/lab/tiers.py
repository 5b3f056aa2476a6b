"""The synthetic-lab and real-LLM tiers of ``talr-theory bounds``: the shared JSON blocks, from measurements.

``run_synthetic_tier(quick, seed)`` and ``run_llm_tier(quick, seed, model)`` return the same blocks
as the exact tier (``single_step``, ``theorem_3_1``, ``theorem_3_2``, ``theorem_3_2_talr``,
``notes``) plus ``setup`` and ``timings``. Every number is measured in the call (or read back from
the crash-safe results folder of an interrupted call with the same configuration).

Synthetic tier (exact ΔL(P1)): the tiny Llama pretrained on the Markov source, domains with
controlled s. Real-LLM tier (ΔL(P1) = KL(q0 || qθ) on base-model samples, Monte Carlo over
contexts, exact over the vocabulary): controlled-s probes for Theorem 3.2 and medcalc-synth
trajectories for Theorem 3.1.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from talr_theory.lab.empirical import (
    LineModel,
    envelope_summary,
    lambda_max_curve,
    methods_at_equal_gain,
    objective_gradient,
    run_trajectory,
    step_direction,
)
from talr_theory.results import ResultsTable
from talr_theory.theory.lambda_max import fit_lambda_max_scaling
from talr_theory.theory.tilt import tilt_bounds


@dataclass
class SyntheticTierConfig:
    """What the synthetic tier measures (``quick`` picks a smaller grid)."""

    s_values: tuple[int, ...] = (1, 2, 3, 4, 6)
    epsilons: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    n_groups: int = 3            # random domain batches (bootstrap units) per s
    n_train: int = 32
    n_eval: int = 64
    optimizers_talr: tuple[str, ...] = ("sgd", "adamw")
    traj_s_values: tuple[int, ...] = (1, 2, 4)
    traj_lrs: tuple[float, ...] = (0.005, 0.01, 0.02, 0.04, 0.08)
    traj_steps_at_max_lr: int = 16
    traj_evals: int = 16
    # TALR floors the hard tokens' weight at w_min, so at SFT's learning rates it barely gains on the
    # domain; its trajectories use LRs scaled by this factor so both methods reach comparable Δ*.
    talr_lr_scale: float = 20.0
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> SyntheticTierConfig:
        return cls(s_values=(1, 2, 4), epsilons=(1e-3, 1e-2, 1e-1), n_groups=2, n_train=24, n_eval=32,
                   optimizers_talr=("sgd",), traj_s_values=(2,), traj_lrs=(0.01, 0.02, 0.04, 0.08),
                   traj_steps_at_max_lr=10, traj_evals=10, seed=seed)


@dataclass
class TierResult:
    blocks: dict
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)


def _ensure_rows(table: ResultsTable | None, done: pd.DataFrame | None, key: dict, compute) -> list[dict]:
    """Rows for one unit of work: read back from ``done`` (the table loaded once) when there, else computed and stored.

    A unit's rows are appended only after the whole unit is computed, so a unit is either complete
    in the table or absent (a crash mid-unit recomputes just that unit).
    """
    if table is not None and done is not None:
        if len(done):
            sel = np.ones(len(done), dtype=bool)
            for k, v in key.items():
                if k not in done.columns:
                    sel[:] = False
                    break
                sel &= (done[k] == v).to_numpy()
            if sel.any():
                return done[sel].to_dict("records")
    rows = compute()
    if table is not None:
        for r in rows:
            table.append({**r, **key})
    return rows


def _single_step_bounds(tables: dict, model0_logits: torch.Tensor, model, rtol: float = 1e-9) -> dict:
    """Exact ΔL of a real transformer step and its Jensen / Hoeffding bounds over all contexts."""
    with torch.no_grad():
        logits = model(input_ids=tables["seqs"]).logits[:, :-1].to(torch.float64)
    logits = logits.reshape(-1, logits.shape[-1]).numpy()
    base = model0_logits.numpy()
    b = tilt_bounds(tables["rho"], tables["p"], base, logits - base)
    tol = rtol * (1.0 + abs(b["exact"]))
    return {**b, "lower_violation": bool(b["jensen_lower"] > b["exact"] + tol),
            "upper_violation": bool(b["exact"] > b["hoeffding_upper"] + tol),
            "relative_gap": (b["hoeffding_upper"] - b["exact"]) / abs(b["exact"]) if b["exact"] else float("nan")}


def synthetic_tier(quick: bool = True, seed: int = 0, config: SyntheticTierConfig | None = None,
                   results_dir: str | Path | None = None, progress: bool = True) -> TierResult:
    """Run the synthetic-lab checks; frames: lambda_max (one-step), trajectories, envelope points."""

    from talr_theory.lab.synthetic import torch_threads

    cfg = config or (SyntheticTierConfig.quick(seed) if quick else SyntheticTierConfig(seed=seed))
    with torch_threads(1):
        return _synthetic_tier(cfg, seed, results_dir, progress)


def _synthetic_tier(cfg: SyntheticTierConfig, seed: int, results_dir, progress: bool) -> TierResult:
    from talr_theory.lab.domains import DomainConfig, domain_nll, make_domain_examples
    from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source, model, info = load_pretrained(progress=progress)
    timings["load_or_pretrain"] = time.perf_counter() - t0
    general = ExactGeneralEvaluator(source, model)
    tables = general.context_tables(model)
    tables = {"rho": tables["rho"].numpy(), "p": tables["p"].numpy(), "seqs": general.seqs}
    with torch.no_grad():
        base_logits = model(input_ids=general.seqs).logits[:, :-1].to(torch.float64)
    base_logits = base_logits.reshape(-1, base_logits.shape[-1])
    root = Path(results_dir) if results_dir else None
    lm_table = ResultsTable(root / "synthetic_lambda_max", ["method", "optimizer", "s", "group", "epsilon"]) if root else None
    tr_table = ResultsTable(root / "synthetic_trajectories", ["method", "lr", "s", "step"]) if root else None
    lm_done = lm_table.load() if lm_table else None
    tr_done = tr_table.load() if tr_table else None

    # --- Theorem 3.2: one step, λ_max(ε) per (s, group, method, optimizer) -------------------------
    t0 = time.perf_counter()
    units = [(s, g, m, o) for s in cfg.s_values for g in range(cfg.n_groups)
             for m, opts in (("sft", ("sgd", "adamw")), ("talr", cfg.optimizers_talr)) for o in opts]
    lm_rows = []
    for s, g, method, opt in tqdm(units, desc="synthetic λ_max", disable=not progress):
        examples = make_domain_examples(source, DomainConfig(s=s), cfg.n_train, seed=cfg.seed * 1000 + 17 * g + s)

        def compute(examples=examples, method=method, opt=opt):
            grads, stats = objective_gradient(model, examples, method)
            line = LineModel(model, step_direction(grads, opt))
            rows = lambda_max_curve(line, general.delta_L, cfg.epsilons, rtol=1e-4,
                                    lam_start=1e-3 if opt == "sgd" else 1e-5)
            out = []
            for r in rows:
                bounds = (_single_step_bounds(tables, base_logits, line.at(r["lambda_max"]))
                          if math.isfinite(r["lambda_max"]) else {})
                out.append({**r, "measured_s": stats["n_hard_0.2"], "sum_1mp": stats["sum_1mp"],
                            "effective_s": stats["sum_w_1mp"], "effective_s_l2": stats["l2_w_1mp"],
                            "mean_weight": stats["mean_w"], "tau": stats["tau"],
                            **{f"bound_{k}": v for k, v in bounds.items()}})
            return out

        for r in _ensure_rows(lm_table, lm_done, {"method": method, "optimizer": opt, "s": s, "group": g}, compute):
            lm_rows.append({**r, "method": method, "optimizer": opt, "s": s, "group": g})
    lam_df = pd.DataFrame(lm_rows)
    lam_df["group_id"] = lam_df["s"].astype(str) + "/" + lam_df["group"].astype(str)
    timings["theorem_3_2_one_step"] = time.perf_counter() - t0

    def fit(sub: pd.DataFrame, s_column: str) -> dict:
        frame = sub.rename(columns={"group": "g"}).assign(group=sub["group_id"])
        return fit_lambda_max_scaling(frame, n_boot=500, seed=seed, s_column=s_column)

    sel = lam_df["method"].eq("sft") & lam_df["optimizer"].eq("sgd")
    t32 = fit(lam_df[sel], "measured_s")
    t32["optimizer"] = "sgd"
    t32["s_definition"] = "measured s: targets with p < 0.2 under the pretrained model, mean per example"
    t32["adamw"] = fit(lam_df[lam_df["method"].eq("sft") & lam_df["optimizer"].eq("adamw")], "measured_s")
    talr_sel = lam_df["method"].eq("talr") & lam_df["optimizer"].eq("sgd")
    t32_talr = fit(lam_df[talr_sel], "effective_s")
    t32_talr["effective_s"] = {str(k): float(v) for k, v in
                               lam_df[talr_sel].groupby("s")["effective_s"].mean().items()}
    t32_talr["effective_s_definition"] = "s_w = Σ_i w_i (1 - p_i) per example, TALR weights at θ0"
    t32_talr["sft_sum_1mp"] = {str(k): float(v) for k, v in
                               lam_df[sel].groupby("s")["sum_1mp"].mean().items()}
    ratio = (lam_df[talr_sel].set_index(["s", "group", "epsilon"])["lambda_max"]
             / lam_df[sel].set_index(["s", "group", "epsilon"])["lambda_max"])
    t32_talr["lambda_max_ratio_talr_over_sft"] = {str(k): float(v) for k, v in ratio.groupby(level="s").median().items()}
    if "adamw" in cfg.optimizers_talr:
        t32_talr["adamw"] = fit(lam_df[lam_df["method"].eq("talr") & lam_df["optimizer"].eq("adamw")], "effective_s")

    bound_cols = lam_df.dropna(subset=["bound_exact"]) if "bound_exact" in lam_df else lam_df.iloc[:0]
    single = {
        "n_instances": int(len(bound_cols)),
        "lower_bound_violations": int(bound_cols["bound_lower_violation"].astype(bool).sum()) if len(bound_cols) else 0,
        "upper_bound_violations": int(bound_cols["bound_upper_violation"].astype(bool).sum()) if len(bound_cols) else 0,
        "max_relative_gap": float(bound_cols["bound_relative_gap"].max()) if len(bound_cols) else float("nan"),
        "median_relative_gap": float(bound_cols["bound_relative_gap"].median()) if len(bound_cols) else float("nan"),
        "max_tilt_identity_error": float((bound_cols["bound_exact"] - bound_cols["bound_tilt_form"]).abs().max())
        if len(bound_cols) else float("nan"),
        "gap_definition": "(Hoeffding upper bound - exact ΔL) / exact ΔL for the real transformer step at "
                          "λ = λ_max(ε); the tilt h_c is the exact logit change at every context of P1",
    }

    # --- Theorem 3.1: trajectories at several learning rates ---------------------------------------
    t0 = time.perf_counter()
    eval_sets = {s: make_domain_examples(source, DomainConfig(s=s), cfg.n_eval, seed=cfg.seed * 1000 + 999 + s,
                                         prefix="eval") for s in cfg.traj_s_values}
    traj_rows = []
    tunits = [(s, m, lr * (cfg.talr_lr_scale if m == "talr" else 1.0)) for s in cfg.traj_s_values
              for m in ("sft", "talr") for lr in cfg.traj_lrs]
    for s, method, lr in tqdm(tunits, desc="synthetic trajectories", disable=not progress):
        train_ex = make_domain_examples(source, DomainConfig(s=s), cfg.n_train, seed=cfg.seed * 1000 + s)
        scale = cfg.talr_lr_scale if method == "talr" else 1.0
        steps = int(math.ceil(cfg.traj_steps_at_max_lr * max(cfg.traj_lrs) * scale / lr))
        every = max(1, steps // cfg.traj_evals)

        def compute(train_ex=train_ex, method=method, lr=lr, steps=steps, every=every, s=s):
            frame = run_trajectory(model, train_ex, method, lr, steps, every, general.delta_L,
                                   lambda m, ev=eval_sets[s]: domain_nll(m, ev), seed=cfg.seed)
            keep = ["step", "delta_star", "delta_L", "mean_weight", "train_nll", "status"]
            return frame[[c for c in keep if c in frame.columns]].to_dict("records")

        rows = _ensure_rows(tr_table, tr_done, {"method": method, "lr": lr, "s": s}, compute)
        traj_rows += [{**r, "method": method, "lr": lr, "s": s} for r in rows]
    traj_df = pd.DataFrame(traj_rows)
    timings["theorem_3_1_trajectories"] = time.perf_counter() - t0

    envelopes, points = {}, []
    for (s, method), sub in traj_df.groupby(["s", "method"]):
        res = envelope_summary(sub, method=method)
        envelopes[f"{method}_s{s}"] = res["block"]
        points.append(res["points"].assign(s=s, method=method))
    env_points = pd.concat(points, ignore_index=True)
    main_s = 2 if 2 in cfg.traj_s_values else cfg.traj_s_values[0]
    t31 = dict(envelopes[f"sft_s{main_s}"])
    t31["by_method_and_s"] = envelopes
    t31["methods_at_equal_gain"] = methods_at_equal_gain(traj_df[traj_df["s"] == main_s])

    # λ_max at a fixed domain gain: from the interpolated envelope points (ΔL at Δ* vs λ).
    fixed = fixed_gain_lambda_max(env_points, cfg.epsilons)
    if len(fixed) and fixed["epsilon"].nunique() >= 2 and len(fixed.dropna()) >= 3:
        sub = fixed[fixed["method"].eq("sft")].dropna()
        try:
            t32["fixed_gain"] = fit_lambda_max_scaling(sub.assign(group=sub["s"].astype(str)), n_boot=500,
                                                       seed=seed, s_column="s")
            t32["fixed_gain"]["delta_star"] = float(sub["delta_star"].iloc[0])
        except ValueError as err:
            t32["fixed_gain"] = {"error": str(err)}

    blocks = {
        "tier": "synthetic",
        "setup": {"source": asdict(source.config), "pretrained": info, "config": asdict(cfg),
                  "delta_L_units": "nats per sequence, exact sum over the P1 support",
                  "delta_star_units": "nats per domain example (held-out), summed over response tokens"},
        "single_step": single,
        "theorem_3_1": t31,
        "theorem_3_2": t32,
        "theorem_3_2_talr": t32_talr,
        "timings": timings,
    }
    blocks["notes"] = plain_notes(blocks)
    return TierResult(blocks, {"lambda_max": lam_df, "trajectories": traj_df, "envelope_points": env_points,
                               "fixed_gain": fixed})


def fixed_gain_lambda_max(env_points: pd.DataFrame, epsilons) -> pd.DataFrame:
    """λ_max(ε) at the largest common Δ*: where ΔL(λ) at that Δ* crosses ε (log-log interpolation).

    Only the measured λ range is used (no extrapolation): ε outside the measured ΔL range gives NaN.
    """
    rows = []
    for (s, method), sub in env_points.groupby(["s", "method"]):
        top = sub[sub["delta_star"] == sub["delta_star"].max()].sort_values("lam")
        lam, dl = top["lam"].to_numpy(), top["delta_L"].to_numpy()
        for eps in epsilons:
            val = float("nan")
            for i in range(len(lam) - 1):
                if dl[i] <= eps < dl[i + 1] and dl[i] > 0:
                    f = (math.log(eps) - math.log(dl[i])) / (math.log(dl[i + 1]) - math.log(dl[i]))
                    val = math.exp(math.log(lam[i]) + f * (math.log(lam[i + 1]) - math.log(lam[i])))
                    break
            rows.append({"s": s, "method": method, "epsilon": eps, "lambda_max": val,
                         "delta_star": float(top["delta_star"].iloc[0]) if len(top) else float("nan")})
    return pd.DataFrame(rows)


def _fmt_ci(block: dict, key: str) -> str:
    ci = block.get(f"{key}_ci")
    value = block.get(key)
    if value is None:
        return "n/a"
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


def plain_notes(blocks: dict) -> list[str]:
    """Plain-language statements of where the measurements agree or disagree with the paper."""
    notes = []
    tier = blocks.get("tier", "?")
    t31 = blocks.get("theorem_3_1") or {}
    if t31:
        notes.append(
            f"[{tier}] Theorem 3.1: the tightest envelope ΔL ≤ k1·Δ* + k2·Δ*²·λ has k1={t31['k1']:.3g}, "
            f"k2={t31['k2']:.3g}; held-out learning rates violate it at rate {t31['holdout_violation_rate']:.2f} "
            f"(0 = the form generalizes). The best-fitting β is {t31['beta_best']:.1f} (paper: 2).")
        slope = t31.get("loglog_slope_dL_vs_lr_at_fixed_gain")
        if slope is not None and math.isfinite(slope):
            verdict = ("agrees with the paper: at a fixed domain gain a larger step size costs more general "
                       "performance" if slope > 0.05 else
                       "disagrees with the paper's claim that smaller steps preserve more at fixed gain")
            notes.append(f"[{tier}] At fixed Δ*, log ΔL(P1) grows with log λ with median slope {slope:.2f}: {verdict}.")
    eq = t31.get("methods_at_equal_gain") or {}
    if len(eq.get("best", {})) >= 2:
        parts = [f"{m}: ΔL(P1)={v['delta_L']:.3g} at LR {v['lr']:g}" for m, v in sorted(eq["best"].items())]
        winner = min(eq["best"], key=lambda m: eq["best"][m]["delta_L"])
        if winner == "talr":
            verdict = "agrees with the paper (TALR preserves more general performance at equal gain)"
        elif tier == "synthetic":
            verdict = ("disagrees with the paper's TALR claim here: TALR floors the hard (concept) tokens' weight "
                       "at w_min, so it needs much larger steps to reach the same gain, and those larger steps "
                       "also move the easy tokens' contexts")
        else:
            verdict = "does not reproduce the paper's TALR advantage at this scale"
        notes.append(f"[{tier}] At equal domain gain Δ*={eq['gain']:.3g}, the least degradation per method over the "
                     f"LRs tried: {'; '.join(parts)} — {verdict}.")
    t32 = blocks.get("theorem_3_2") or {}
    for name in ("theorem_3_2", "theorem_3_2_talr"):
        b = blocks.get(name) or {}
        if b.get("n_groups") is not None and b["n_groups"] < 4:
            notes.append(f"[{tier}] {name}: only {b['n_groups']} bootstrap groups (random batches × s values), "
                         "so its confidence intervals are not meaningful; run the default scale.")
    if t32:
        notes.append(f"[{tier}] Theorem 3.2 (SFT, SGD, one step): ε exponent {_fmt_ci(t32, 'eps_exponent')} "
                     f"(paper: 1), s exponent {_fmt_ci(t32, 's_exponent')} (paper: -0.5); regime: {t32['regime']}.")
        if t32.get("s_explanation"):
            notes.append(f"[{tier}] {t32['s_explanation']}")
        ad = t32.get("adamw")
        if isinstance(ad, dict) and "eps_exponent" in ad:
            notes.append(f"[{tier}] With AdamW's first step (sign-like, per-parameter normalized) the exponents "
                         f"are ε {_fmt_ci(ad, 'eps_exponent')}, s {_fmt_ci(ad, 's_exponent')}: Adam normalizes "
                         "gradient magnitudes, so the number of hard tokens no longer sets the step length in "
                         "the same way (theory.md C3).")
    tt = blocks.get("theorem_3_2_talr") or {}
    if tt and tt.get("lambda_max_ratio_talr_over_sft"):
        ratios = ", ".join(f"s={k}: {v:.2f}x" for k, v in tt["lambda_max_ratio_talr_over_sft"].items())
        notes.append(f"[{tier}] TALR's safe step relative to SFT's (median over ε and batches): {ratios}; "
                     "TALR's effective s (Σ w(1-p)) is "
                     + ", ".join(f"{v:.2f} (s={k})" for k, v in tt.get("effective_s", {}).items())
                     + ". A ratio above 1 agrees with the paper's motivation for TALR.")
    single = blocks.get("single_step") or {}
    if single.get("n_instances"):
        notes.append(f"[{tier}] Single real transformer steps obey the tilt bounds exactly: "
                     f"{single['lower_bound_violations']} lower and {single['upper_bound_violations']} upper "
                     f"violations in {single['n_instances']} checks (median relative gap of the Hoeffding "
                     f"bound {single.get('median_relative_gap', float('nan')):.2g}).")
    return notes


def run_synthetic_tier(quick: bool = True, seed: int = 0, results_dir: str | Path | None = None,
                       progress: bool = True) -> dict:
    """The shared JSON blocks of the synthetic-lab tier (see :func:`synthetic_tier`)."""
    return synthetic_tier(quick=quick, seed=seed, results_dir=results_dir, progress=progress).blocks


def run_llm_tier(quick: bool = True, seed: int = 0, model: str = "smollm2-135m", results_dir=None,
                 progress: bool = True, loaded=None) -> dict:
    """The shared JSON blocks of the real-LLM tier (see :mod:`talr_theory.lab.llm_tier`)."""
    from talr_theory.lab.llm_tier import llm_tier

    return llm_tier(quick=quick, seed=seed, model=model, results_dir=results_dir, progress=progress,
                    loaded=loaded).blocks
