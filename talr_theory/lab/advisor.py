"""Safe learning-rate advice: the largest LR expected to keep ΔL(P1) ≤ ε at a requested domain gain.

Method. A short pilot trains at a few learning rates and records trajectories (Δ*, ΔL(P1)). Each
is read at the requested gain G (no extrapolation in Δ*). Theorem 3.1 bounds the degradation at
fixed G by an affine function of λ (k1·G + k2·G^β·λ), and Theorem 3.2 states the safe step as a
power of the tolerance (λ_max ∝ ε^a). Measured curves ΔL(G, λ) are convex in λ — flat for small
steps, then rising fast — which an affine fit through three points misses badly when it is
extrapolated (we measured this in the synthetic lab). So the advisor fits the power law

    ΔL(G, λ) ≈ c·λ^p            (log-log least squares over the pilot LRs)

and solves c·λ^p = ε: λ_rec = (ε/c)^(1/p), i.e. λ_max ∝ ε^(1/p) — Theorem 3.2's form at this gain.
The band is the 10-90 % range of λ_rec over a bootstrap of the pilot LRs (resamples with a single
distinct LR are skipped). A pilot cannot vouch for step sizes beyond its largest LR: a larger
answer is capped there (status "capped", the uncapped value is reported). A smaller answer than the
smallest pilot LR is flagged "extrapolated (below the pilot)". If the pilot's degradation does not
grow with the LR (p ≤ 0), the status is "unbounded" and the largest pilot LR is returned.

Theorem 3.2 also enters through s: the advisor reports the measured s of the domain data (TOKENS
scanner) next to the answer; the proportionality constant of λ_max ∝ ε/√s is unknown, so the
recommendation itself always comes from the pilot.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from talr_theory.theory.envelope import interpolate_at_common_delta


def _fit_power(lam: np.ndarray, dl: np.ndarray) -> tuple[float, float]:
    """(log c, p) of ΔL = c·λ^p by least squares in log-log (ΔL must be positive)."""
    p, logc = np.polyfit(np.log(lam), np.log(dl), 1)
    return float(logc), float(p)


def _solve(logc: float, p: float, eps: float) -> float:
    if p <= 1e-6:  # no (or rounding-level) growth with the LR
        return math.inf
    return math.exp((math.log(eps) - logc) / p)


def advise_from_trajectories(traj: pd.DataFrame, epsilon: float, gain: float | None = None,
                             n_boot: int = 1000, seed: int = 0) -> dict:
    """The advice from pilot trajectories (columns lr, step, delta_star, delta_L)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0 (a tolerance on ΔL(P1) in nats), got {epsilon}")
    for col in ("lr", "step", "delta_star", "delta_L"):
        if col not in traj.columns:
            raise KeyError(f"pilot trajectories lack column '{col}'")
    trajs = []
    for lr, g in traj.groupby("lr"):
        g = g.sort_values("step")
        trajs.append((float(lr), g["delta_star"].to_numpy(float), g["delta_L"].to_numpy(float)))
    reach = {lr: float(ds.max()) for lr, ds, _ in trajs}
    if gain is None:
        gain = 0.5 * min(reach.values())
    if gain <= 0:
        raise ValueError("the pilot runs did not improve the domain (Δ* ≤ 0): raise the pilot LRs or steps")
    at = interpolate_at_common_delta(trajs, [gain])
    at = at[at["delta_L"] > 0]
    reached = sorted(at["lam"].unique())
    if len(reached) < 2:
        raise ValueError(f"only {len(reached)} pilot LR(s) reached the requested gain {gain:.3g} nats with a "
                         f"positive ΔL(P1) (max gains per LR: {reach}); lower --gain or run longer pilots")
    lam = at["lam"].to_numpy(float)
    dl = at["delta_L"].to_numpy(float)
    logc, p = _fit_power(lam, dl)
    raw = _solve(logc, p, epsilon)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(lam), size=len(lam))
        if np.unique(lam[idx]).size < 2:
            continue
        boots.append(min(_solve(*_fit_power(lam[idx], dl[idx]), epsilon), max(reached)))
    lo, hi = (float(x) for x in np.quantile(boots, [0.1, 0.9])) if boots else (raw, raw)
    top, bottom = max(reached), min(reached)
    fit_text = (f"ΔL(P1) at gain {gain:.3g} ≈ {math.exp(logc):.3g}·λ^{p:.2f} (pilot LRs "
                f"{', '.join(f'{x:g}' for x in reached)})")
    if math.isinf(raw):
        rec, status = top, "unbounded"
        explanation = f"{fit_text}: ΔL(P1) does not grow with the LR here; the largest pilot LR is returned"
    elif raw > top:
        rec, status = top, "capped"
        explanation = (f"{fit_text}: solving for ε = {epsilon:g} gives λ = {raw:.3g}, beyond the largest pilot LR; "
                       f"capped at {top:g} (run a pilot at larger LRs to go further)")
    else:
        rec = raw
        status = "ok" if raw >= bottom else "extrapolated (below the pilot)"
        explanation = f"{fit_text}: solving for ε = {epsilon:g} gives λ = {raw:.3g}"
    return {"recommended_lr": rec, "uncapped_lr": raw, "band": [lo, hi],
            "band_level": "10-90% bootstrap over pilot LRs (capped at the largest pilot LR)",
            "epsilon": epsilon, "gain": gain, "log_c": logc, "power_p": p, "status": status,
            "explanation": explanation, "pilot_lrs": sorted(reach), "pilot_max_gain": reach,
            "pilot_points": at[["lam", "delta_L"]].to_dict("records")}


def predict(advice: dict, lr: float) -> float:
    """The fitted ΔL(P1) at the advice's gain for learning rate ``lr``."""
    return math.exp(advice["log_c"]) * lr ** advice["power_p"]


def observed_at_gain(traj: pd.DataFrame, gain: float) -> float:
    """ΔL(P1) of one trajectory at the moment it first reaches ``gain`` (NaN if it never does)."""
    g = traj.sort_values("step")
    at = interpolate_at_common_delta([(1.0, g["delta_star"].to_numpy(float), g["delta_L"].to_numpy(float))], [gain])
    return float(at["delta_L"].iloc[0]) if len(at) else float("nan")


def validate_in_synthetic(quick: bool = True, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Predicted vs observed ΔL(P1) at recommended and at held-out LRs in the synthetic lab (exact ΔL).

    Pilot: SFT trajectories at three (quick) or five LRs (domain s=2). For each ε the advisor recommends an LR; a new
    run at that LR (never part of the pilot) is trained to the same gain and its exact ΔL(P1) is
    read. Extra rows test the fitted line at held-out LRs between and beyond the pilot's.
    """
    from talr_theory.lab.domains import DomainConfig, domain_nll, make_domain_examples
    from talr_theory.lab.empirical import run_trajectory
    from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads

    with torch_threads(1):
        source, model, _ = load_pretrained(progress=progress)
        general = ExactGeneralEvaluator(source, model)
        train_ex = make_domain_examples(source, DomainConfig(s=2), 24, seed=seed * 1000 + 555)
        eval_ex = make_domain_examples(source, DomainConfig(s=2), 32, seed=seed * 1000 + 556, prefix="eval")
        pilot_lrs = (0.01, 0.03, 0.09) if quick else (0.005, 0.01, 0.02, 0.04, 0.08)
        base_steps = 6 if quick else 10

        def run(lr: float) -> pd.DataFrame:
            steps = int(math.ceil(base_steps * 0.08 / lr))
            return run_trajectory(model, train_ex, "sft", lr, steps, max(1, steps // 12), general.delta_L,
                                  lambda m: domain_nll(m, eval_ex), seed=seed).assign(lr=lr)

        pilot = pd.concat([run(lr) for lr in pilot_lrs], ignore_index=True)
        # a modest gain: early in training, where the step size matters most for what leaks into P1
        gain = 0.1 * pilot.groupby("lr")["delta_star"].max().min()
        rows = []
        at = interpolate_at_common_delta(
            [(lr, g.sort_values("step")["delta_star"].to_numpy(), g.sort_values("step")["delta_L"].to_numpy())
             for lr, g in pilot.groupby("lr")], [gain])
        # tolerances spanning the pilot's range: geometric steps between the degradation at the
        # smallest and at the largest pilot LR
        dl_sorted = at.sort_values("lam")["delta_L"].to_numpy()
        lo_dl, hi_dl = float(dl_sorted[0]), float(dl_sorted[-1])
        fracs = (0.3, 0.7) if quick else (0.15, 0.35, 0.55, 0.75, 0.9)
        eps_values = [lo_dl * (hi_dl / lo_dl) ** f for f in fracs] if hi_dl > lo_dl > 0 else [2 * max(lo_dl, 1e-6)]
        for eps in eps_values:
            adv = advise_from_trajectories(pilot, eps, gain, seed=seed)
            lr = adv["recommended_lr"]
            obs = observed_at_gain(run(lr), gain)
            rows.append({"kind": "recommended", "epsilon": eps, "gain": gain, "lr": lr,
                         "band_lo": adv["band"][0], "band_hi": adv["band"][1], "status": adv["status"],
                         "predicted_delta_L": predict(adv, lr), "observed_delta_L": obs})
        adv = advise_from_trajectories(pilot, eps_values[0], gain, seed=seed)
        for lr in ((0.02, 0.06) if quick else (0.015, 0.03, 0.06)):
            obs = observed_at_gain(run(lr), gain)
            rows.append({"kind": "held-out LR", "epsilon": float("nan"), "gain": gain, "lr": lr, "status": "ok",
                         "predicted_delta_L": predict(adv, lr), "observed_delta_L": obs})
    table = pd.DataFrame(rows)
    table["abs_error"] = (table["observed_delta_L"] - table["predicted_delta_L"]).abs()
    table["rel_error"] = table["abs_error"] / table["observed_delta_L"].abs()
    # "yes"/"no" for recommended LRs; empty for held-out LRs (no tolerance was requested there)
    within = table["observed_delta_L"] <= table["epsilon"] * (1 + 1e-9)
    checked = (table["kind"] == "recommended") & table["observed_delta_L"].notna()
    table["within_epsilon"] = np.where(checked, np.where(within, "yes", "no"), "")
    return table


def advise_model(model: str, data: str, epsilon: float, gain: float | None = None, format: str = "label",
                 method: str = "sft", pilot_lrs=(1e-5, 3e-5, 1e-4), pilot_steps: int = 4, batch_size: int = 4,
                 n_train: int = 16, n_eval: int = 8, n_samples: int = 8, sample_len: int = 32,
                 max_length: int = 256, seed: int = 0, progress: bool = True, loaded=None) -> dict:
    """Full advice on a real model: measured s, pilot trajectories (training core, AdamW), fitted LR.

    ΔL(P1) is KL(q0 || qθ) on base-model samples (nats per sample); the gain is in nats per held-out
    domain example. Returns the advice dict plus ``s`` (scanner statistics) and ``pilot`` rows.
    """
    import copy

    from tqdm.auto import tqdm

    from talr_theory.data.encode import encode_examples
    from talr_theory.data.sft import load_sft
    from talr_theory.lab.probes import SampleKL
    from talr_theory.models import load_model, pad_token_id
    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.stats import s_statistics
    from talr_theory.training.core import TrainConfig, train
    from talr_theory.training.evaluation import CheckpointEvaluator

    if len(pilot_lrs) < 2:
        raise ValueError("the advisor needs at least two pilot learning rates")
    loaded = loaded or load_model(model)
    pad = pad_token_id(loaded.tokenizer)
    train_enc = encode_examples(load_sft(data, format=format, split="train", limit=n_train, seed=seed),
                                loaded.tokenizer, max_length=max_length)
    eval_enc = encode_examples(load_sft(data, format=format, split="eval", limit=n_eval, seed=seed),
                               loaded.tokenizer, max_length=max_length)
    if not train_enc.examples or not eval_enc.examples:
        raise ValueError(f"data {data!r}: no train or no eval examples after encoding")
    table = scan_tokens(loaded, train_enc.examples, progress=progress)
    s_stats = {f"{k:g}": v for k, v in s_statistics(table, n_boot=300, seed=seed).items()}
    kl = SampleKL(loaded, n_samples, sample_len, seed=seed + 1)
    ce = CheckpointEvaluator(eval_enc.examples, pad_id=pad, batch_size=8)
    ce.set_baseline(loaded.model)
    rows = []
    for lr in tqdm(pilot_lrs, desc="advisor pilot", disable=not progress):
        work = copy.deepcopy(loaded.model)
        cfg = TrainConfig(method=method, lr=float(lr), optimizer="adamw", steps=pilot_steps,
                          batch_size=batch_size, eval_every=1, seed=seed)
        res = train(work, train_enc.examples, cfg, pad_id=pad, progress=False,
                    evaluator=lambda m, step: {"delta_star": ce(m, step)["delta_star"], "delta_L": kl(m)})
        rows += [{"lr": float(lr), "step": r["step"], "delta_star": r.get("delta_star"), "delta_L": r.get("delta_L"),
                  "status": r.get("status")} for r in res.history]
        del work
    pilot = pd.DataFrame(rows)
    pilot = pilot[pilot["status"].eq("ok")].dropna(subset=["delta_star", "delta_L"])
    advice = advise_from_trajectories(pilot, epsilon, gain, seed=seed)
    s02 = s_stats.get("0.2", {}).get("mean")
    advice.update({"model": loaded.spec, "data": data, "format": format, "method": method, "s": s_stats,
                   "units": {"delta_L": "KL(q0||qθ) nats per base-model sample",
                             "gain": "nats per held-out domain example"},
                   "theorem_3_2_note": (f"measured s(0.2) = {s02:.2f} hard tokens per example; by the paper's "
                                        "λ_max ∝ ε/√s, data with 4x as many hard tokens would halve the safe LR"
                                        if s02 is not None else None),
                   "pilot": pilot.to_dict("records")})
    return advice
