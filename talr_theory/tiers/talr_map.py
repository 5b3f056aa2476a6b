"""When does TALR beat SFT? The equal-gain degradation ratio over a grid of scenarios (exact tier).

For every cell of the grid — easy-token confidence (``easy_p``), TALR's floor ``w_min``, its τ rule
(median token loss, median sequence loss, or a fixed τ), the shared-leakage strength of the kernel
(``common``), and whether the hard targets are domain-only tokens or general tokens — and each P1
variant (exact / mis-modeled), SFT and each method of ``Config.methods`` (TALR, DFT) are run at the
same step size λ on the same scenario until the domain gain reaches ``target_gain``. Each seed is a
freshly drawn scenario; ten seeds per cell (``verdicts.MIN_UNITS``), intervals resample seeds.

A method with a registered claim (``talr_vs_sft``) gets two verdicts per cell:

* paper protocol (Table 2: same learning rate, same epochs): ΔL(P1) ratio method / SFT after the
  number of steps SFT needs to reach the target gain, at the same λ; the domain-gain difference at
  that step is reported beside it (the "comparable domain" half of the claim);
* stricter reading: ΔL(P1) difference method − SFT at equal domain gain (``cost_at_gain``: never a
  chord from step 0), mean over the gains both reach per seed — a difference, so runs whose ΔL(P1)
  is ≤ 0 are kept. The equal-gain ratio (geometric mean over (seed, gain) pairs) stays in the table
  and the heatmaps. DFT is measured and tabled, without a verdict (no registered claim).

Next to the measurement, the linearised condition of ``theory/reweighting.py`` predicts each cell's
sign from the weights at θ0; the fraction of cells where predicted and measured signs agree is
reported as a plain fact (it checks our condition, not the paper). The condition is about step
*directions* (the linearised path does not depend on how it is cut into steps), while at λ = 64 SFT
reaches the target gain in ~4 steps and pays the finite-step cost that TALR's smaller weights avoid
(Theorem 3.1's λ term). So each cell is measured in two regimes:

* ``equal_lr``  — every method at the same λ (the practical comparison; the cells' verdicts);
* ``near_flow`` — every run cut into at least ``flow_min_steps`` steps: a run that reached the gain in
  fewer steps at λ is rerun at λ·steps/``flow_min_steps`` (again if it still has too few; in practice
  only SFT). This isolates the
  direction from the step size, which is what the condition predicts; its agreement is the test of
  the condition, the equal-LR agreement is reported next to it.

The synthetic lab adds cells measured on a real (tiny) transformer with exact ΔL(P1), for both
domain variants of ``lab.domains``: ``easy=source`` (adversarial: the easy targets are P1's own
transitions) and ``easy=domain`` (the domain mostly agrees with the model: easy targets are domain
tokens the model learned in pretraining). Each seed draws new training examples; SFT, TALR (token
median τ, each ``w_min``) and DFT train full-batch with plain SGD, TALR and DFT at ``synthetic_lr_scale``
times SFT's LR (their weights shrink the step; at SFT's LR they barely move in the same number of
steps). ΔL is read at gains every run of the unit reaches. Here SFT often *improves* P1 (ΔL ≤ 0 in the
domain-token variant), where a ratio is undefined, so the synthetic cells use the difference
ΔL_method − ΔL_SFT at equal gain (mean over common gains per seed, bootstrap over seeds); the ratio
is reported next to it where it is defined. The pretrained model is one draw that nothing
resamples, so these verdicts are conditional on it and not counted (uninformative, said in the note).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from talr_theory.claims import CLAIMS, claim_verdict
from talr_theory.theory.reweighting import linearised_coefficients, predicted_ratio
from talr_theory.theory.scenario import ScenarioConfig, make_scenario
from talr_theory.theory.steps import TAU_RULES as STEP_TAU_RULES
from talr_theory.theory.trajectories import run_trajectory
from talr_theory.tiers.measures import cost_at_gain, paired_difference, paired_ratio
from talr_theory.tiers.protocol import (
    TierResult,
    collect_packed,
)
from talr_theory.verdicts import format_ci, judge

NAME = "talr_map"
GRID = True  # one claim per map cell: the report lists them as a table in this stage's section
TAU_RULES = (*STEP_TAU_RULES, "fixed")  # the shared rule names plus a fixed τ
HARD_KINDS = ("domain", "general")


@dataclass
class Config:
    # The methods compared with SFT, one tuple: a new method is one more name (one of
    # ``theory.reweighting.METHODS``); TALR runs once per (w_min, τ rule), the others once. Only methods
    # with a registered claim ``<method>_vs_sft`` get verdicts; the others are measured and tabled.
    methods: tuple[str, ...] = ("dft", "talr", "eaft", "asft")
    easy_p: tuple[float, ...] = (0.95, 0.995)
    w_min: tuple[float, ...] = (0.01, 0.1)
    tau_rules: tuple[str, ...] = ("median",)
    tau_fixed: float = 2.0
    common: tuple[float, ...] = (0.1,)
    hard: tuple[str, ...] = HARD_KINDS
    # Ten scenarios per cell: an interval over fewer seeds cannot cover (verdicts.MIN_UNITS); the grid
    # is narrower instead (one leakage strength, one τ rule) to keep the stage's time.
    n_seeds: int = 10
    s: int = 4
    lam: float = 64.0
    target_gain: float = 0.4
    n_gains: int = 8
    max_steps: int = 3000
    flow_min_steps: int = 25  # near-flow regime: runs shorter than this at λ are rerun with a smaller step
    n_boot: int = 1000
    # synthetic lab (tiny Llama, exact ΔL(P1)); empty synthetic_easy skips it
    synthetic_easy: tuple[str, ...] = ("source", "domain")
    synthetic_s: int = 2
    synthetic_seeds: int = 5
    # SFT's LR is small enough that its first checkpoint (one step) sits below the largest gain DFT and
    # TALR (w_min=0.01) reach in synthetic_steps steps at synthetic_lr_scale times that LR
    synthetic_lr: float = 0.00025
    synthetic_lr_scale: float = 200.0
    synthetic_steps: int = 16
    synthetic_sft_steps: int = 64  # SFT's small LR needs more steps to cover the gains the others reach
    synthetic_evals: int = 16  # every step: coarser checkpoints leave too few common gains for an interval
    synthetic_n_train: int = 24
    synthetic_n_eval: int = 32
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        # Ten scenarios per cell as at the default scale (verdicts.MIN_UNITS: an interval over fewer is withheld);
        # the grid is one cell per hard kind instead. The synthetic lab's cells rest on one pretrained draw
        # whatever the seeds, so it keeps 3.
        return cls(easy_p=(0.95,), w_min=(0.01,), tau_rules=("median",), common=(0.1,),
                   hard=HARD_KINDS, n_seeds=10, target_gain=0.3, n_gains=5, max_steps=1200, n_boot=300,
                   synthetic_easy=("domain",), synthetic_seeds=3, synthetic_steps=10, synthetic_evals=10,
                   synthetic_sft_steps=30, seed=seed)

    def validate(self) -> None:
        bad = [r for r in self.tau_rules if r not in TAU_RULES]
        if bad:
            raise ValueError(f"talr_map.Config.tau_rules: unknown {bad}; expected some of {TAU_RULES}")
        bad = [h for h in self.hard if h not in HARD_KINDS]
        if bad:
            raise ValueError(f"talr_map.Config.hard: unknown {bad}; expected some of {HARD_KINDS}")
        if self.n_seeds < 1 or self.lam <= 0 or self.target_gain <= 0 or self.flow_min_steps < 1:
            raise ValueError("talr_map.Config: need n_seeds >= 1, lam > 0, target_gain > 0 and flow_min_steps >= 1")

    @property
    def gains(self) -> np.ndarray:
        return np.round(np.linspace(self.target_gain / self.n_gains, self.target_gain, self.n_gains), 10)


def scenario_for(seed: int, easy_p: float, common: float, hard: str):
    """The exact-tier scenario of one map unit; ``hard='general'`` redraws hard targets among general tokens.

    General hard targets are a random general token other than the position's easy target: the model
    gives it ≈ (1 − easy_p)/(V − 1), as low as a domain token, but raising it moves mass the general
    data use too.
    """
    sc = make_scenario(seed, replace(ScenarioConfig(), easy_p=easy_p, common=common))
    if hard == "domain":
        return sc
    rng = np.random.default_rng([seed, 7919])
    Vg = sc.config.n_general_tokens
    draw = rng.integers(0, Vg - 1, size=len(sc.easy_targets))
    hard_targets = np.where(draw >= sc.easy_targets, draw + 1, draw)  # uniform over general tokens ≠ easy
    return replace(sc, hard_targets=hard_targets)


def _method_runs(cfg: Config) -> list[tuple[str, float | None, str | None]]:
    """SFT first (the others are read at its step count), then each method (TALR per floor and τ rule)."""
    runs: list[tuple[str, float | None, str | None]] = [("sft", None, None)]
    for m in cfg.methods:
        runs += [("talr", w, r) for w in cfg.w_min for r in cfg.tau_rules] if m == "talr" else [(m, None, None)]
    return runs


def _unit_rows(cfg: Config, seed: int, easy_p: float, common: float, hard: str) -> list[dict]:
    """All methods on one scenario: ΔL at each gain for both P1 variants, plus the linearised prediction."""
    sc = scenario_for(seed, easy_p, common, hard)
    targets = sc.targets(cfg.s)
    rows, sft_steps = [], None
    for method, w_min, rule in _method_runs(cfg):
        tau = cfg.tau_fixed if rule == "fixed" else (rule or "median")
        floor = w_min if w_min is not None else 0.0
        traj = run_trajectory(sc, cfg.s, cfg.lam, cfg.target_gain, method=method, tau=tau, w_min=floor,
                              max_steps=cfg.max_steps)
        sft_steps = traj.steps if method == "sft" else sft_steps
        rows += _same_steps_rows(traj, sft_steps, method, w_min, rule, cfg.lam)
        regimes = {"equal_lr": (cfg.lam, traj)}
        lam_f, flow = cfg.lam, traj
        for _ in range(4):  # cut the same path into ≥ flow_min_steps steps (a big first step overshoots: retry)
            if flow.steps >= cfg.flow_min_steps or not flow.reached:
                break
            lam_f *= flow.steps / cfg.flow_min_steps
            flow = run_trajectory(sc, cfg.s, lam_f, cfg.target_gain, method=method, tau=tau, w_min=floor,
                                  max_steps=cfg.max_steps)
        regimes["near_flow"] = (lam_f, flow)
        coefs = {p1: linearised_coefficients(sc, targets, method, p1, tau=tau, w_min=floor)
                 for p1 in ("exact", "mismodeled")}
        for regime, (lam, tr) in regimes.items():
            easy_share = tr.easy_mass / max(tr.easy_mass + tr.hard_mass, 1e-300)
            for p1, coef in coefs.items():
                frame = pd.DataFrame({"step": np.arange(len(tr.delta_star)), "delta_star": tr.delta_star,
                                      "delta_L": tr.delta_L_by_p1[p1], "run": 0})
                for r in cost_at_gain(frame, cfg.gains, by=["run"]).itertuples():
                    # w_min = -1 marks "no floor" (SFT, DFT): a NaN key would not match itself on resume
                    rows.append({"regime": regime, "method": method, "w_min": -1.0 if w_min is None else w_min,
                                 "tau_rule": rule or "", "p1": p1, "gain": float(r.delta_star),
                                 "delta_L": float(r.delta_L), "lam": lam, "steps": tr.steps, "reached": tr.reached,
                                 "easy_share": easy_share, **{f"coef_{k}": v for k, v in coef.items()}})
    return rows


def _same_steps_rows(traj, n: int, method: str, w_min: float | None, rule: str | None, lam: float) -> list[dict]:
    """ΔL(P1) and Δ* after ``n`` steps at λ (the paper's yardstick: same LR, same steps); NaN past the run's end.

    Stored in the ``same_steps`` regime with ``gain = -1`` (these rows are read at a step, not a gain).
    """
    nan = float("nan")
    ok = n < len(traj.delta_star)
    return [{"regime": "same_steps", "method": method, "w_min": -1.0 if w_min is None else w_min,
             "tau_rule": rule or "", "p1": p1, "gain": -1.0, "delta_L": float(dl[n]) if ok else nan,
             "delta_star_at": float(traj.delta_star[n]) if ok else nan, "lam": lam, "steps": n,
             "reached": traj.reached, "easy_share": nan} for p1, dl in traj.delta_L_by_p1.items()]


def _measure(cfg: Config, out, progress: bool) -> pd.DataFrame:
    units = [{"seed": cfg.seed * 1000 + k, "easy_p": e, "common": c, "hard": h}
             for k, e, c, h in itertools.product(range(cfg.n_seeds), cfg.easy_p, cfg.common, cfg.hard)]
    frame = collect_packed(out, NAME + "_runs", cfg, units, lambda seed, easy_p, common, hard:
                           _unit_rows(cfg, seed, easy_p, common, hard), progress, "TALR map (exact tier)")
    frame["tau_rule"] = frame["tau_rule"].fillna("")
    return frame


CELL_KEYS = ("easy_p", "common", "hard", "p1")


def cell_label(method: str, cell: dict) -> str:
    parts = [f"easy_p={cell['easy_p']:g}", f"common={cell['common']:g}", f"hard={cell['hard']}", f"P1={cell['p1']}"]
    if method == "talr":
        parts += [f"w_min={cell['w_min']:g}", f"tau={cell['tau_rule']}"]
    return ",".join(parts)


def _pair_predictions(pairs: pd.DataFrame) -> np.ndarray:
    """The linearised condition's C_w(D)/C_1(D) for each (seed, gain) pair (NaN where undefined)."""
    out = []
    for r in pairs.itertuples():
        cw = {"a": r.coef_a_w, "b": r.coef_b_w, "G": r.coef_G_w, "Q": r.coef_Q_w}
        c1 = {"a": r.coef_a_s, "b": r.coef_b_s, "G": r.coef_G_s, "Q": r.coef_Q_s}
        out.append(predicted_ratio(cw, c1, r.gain))
    return np.array(out, dtype=float)


def _predicted_summary(pairs: pd.DataFrame) -> tuple[float, float]:
    """(fraction of (seed, gain) pairs where the condition predicts a win, geometric mean of the predicted
    ratio over the pairs where it is finite and positive); NaN where nothing is defined."""
    pred = _pair_predictions(pairs)
    known = pred[~np.isnan(pred)]
    pos = pred[np.isfinite(pred) & (pred > 0)]
    return (float(np.mean(known < 1)) if known.size else float("nan"),
            float(np.exp(np.mean(np.log(pos)))) if pos.size else float("nan"))


def _side_of_one(ci: tuple[float, float], n_units: int) -> str:
    """Which side of one an equal-gain ratio's interval lies on: the heatmap's mark and the condition
    check's notion of a resolved cell (the rule of ``verdicts.judge`` with paper (0, 1), alternative 1;
    not a claim verdict)."""
    return judge(ci[0], ci[1], (0.0, 1.0), 1.0, n_units)


def _cell_verdicts(method: str, label: str, same: pd.DataFrame, diff, cfg: Config,
                   domain_label: str = "") -> tuple[list, dict]:
    """The claim ``<method>_vs_sft`` for one cell: same λ and steps (paper), equal gain (stricter); with
    ``domain_label`` (once per scenario cell: Δ* does not depend on P1) also its domain half,
    ``<method>_comparable_domain_gain``."""
    ratio = paired_ratio(same["delta_L_w"], same["delta_L_s"], same["seed"], n_boot=cfg.n_boot, seed=cfg.seed)
    gap = float((same["delta_star_at_w"] - same["delta_star_at_s"]).mean()) if len(same) else float("nan")
    extra = {"same_steps_ratio": ratio.estimate, "same_steps_ci_lo": ratio.ci[0], "same_steps_ci_hi": ratio.ci[1],
             "same_steps_gain_gap": gap, "diff": diff.estimate, "diff_ci_lo": diff.ci[0], "diff_ci_hi": diff.ci[1],
             "verdict_paper": "", "verdict_stricter": "", "same_steps_gain_ratio": float("nan")}
    claim_id = f"{method}_vs_sft"
    if claim_id not in CLAIMS:
        return [], extra
    paper = claim_verdict(
        claim_id, "paper", NAME, ratio.estimate, ratio.ci, n_units=ratio.n_units, qualifier=label,
        note=f"λ={cfg.lam:g} for both, after the steps SFT needs to reach Δ* = {cfg.target_gain:g}; there "
             f"{method.upper()}'s Δ* − SFT's = {gap:.3g} nats/token (mean over seeds: the domain side, not an "
             f"accuracy). {ratio.n_pairs} seeds, {ratio.n_dropped} dropped (run ended earlier, or ΔL ≤ 0: no "
             f"logarithm); each seed draws a new scenario.")
    stricter = claim_verdict(
        claim_id, "stricter", NAME, diff.estimate, diff.ci, n_units=diff.n_units, qualifier=label,
        note=f"One λ={cfg.lam:g} for every method (no LR frontier searched); ΔL(P1) difference in nats/token, mean "
             f"over the gains both runs reach per seed: {diff.n_pairs} (seed, gain) pairs, {diff.n_dropped} "
             f"unmeasured; s={cfg.s}; each seed draws a new scenario.")
    extra.update(verdict_paper=paper.verdict, verdict_stricter=stricter.verdict)
    out = [paper, stricter]
    if domain_label and f"{method}_comparable_domain_gain" in CLAIMS:
        dom = paired_ratio(same["delta_star_at_w"], same["delta_star_at_s"], same["seed"], n_boot=cfg.n_boot,
                           seed=cfg.seed)
        out.append(claim_verdict(
            f"{method}_comparable_domain_gain", "paper", NAME, dom.estimate, dom.ci, n_units=dom.n_units,
            qualifier=domain_label,
            note=f"λ={cfg.lam:g} for both, after the steps SFT needs to reach Δ* = {cfg.target_gain:g}; "
                 f"{dom.n_pairs} seeds, {dom.n_dropped} dropped (run ended earlier, or Δ* ≤ 0)."))
        extra["same_steps_gain_ratio"] = dom.estimate
    return out, extra


def ratio_cells(frame: pd.DataFrame, cfg: Config, regime: str = "equal_lr") -> tuple[pd.DataFrame, list]:
    """One row per (method, cell) of one regime: the equal-gain ratio, its CI and side of one, the
    predicted sign; in the equal-LR regime also the cell's claim verdicts (paper and stricter)."""
    same_all = frame[frame["regime"] == "same_steps"] if "regime" in frame.columns else frame.iloc[:0]
    if "regime" in frame.columns:
        frame = frame[frame["regime"] == regime]
    keys = ["seed", *CELL_KEYS, "gain"]
    sft = frame[frame["method"] == "sft"][keys + ["delta_L", "coef_a", "coef_b", "coef_G", "coef_Q"]]
    sft_same = same_all[same_all["method"] == "sft"][["seed", *CELL_KEYS, "delta_L", "delta_star_at"]]
    rows, verdicts = [], []
    others = frame[frame["method"] != "sft"]
    for (method, w_min, rule), sub in others.groupby(["method", "w_min", "tau_rule"], dropna=False, sort=True):
        pairs = sub.merge(sft, on=keys, suffixes=("_w", "_s"))
        mine = same_all[same_all["method"].eq(method) & same_all["w_min"].eq(w_min) & same_all["tau_rule"].eq(rule)]
        same = mine.merge(sft_same, on=["seed", *CELL_KEYS], suffixes=("_w", "_s"))
        for cell_vals, cell in pairs.groupby(list(CELL_KEYS), sort=True):
            info = dict(zip(CELL_KEYS, cell_vals))
            info.update(w_min=w_min, tau_rule=rule)
            win_frac, pred_ratio = _predicted_summary(cell)
            ratio = paired_ratio(cell["delta_L_w"], cell["delta_L_s"], cell["seed"], n_boot=cfg.n_boot,
                                 seed=cfg.seed)
            diff = paired_difference(cell["delta_L_w"], cell["delta_L_s"], cell["seed"], n_boot=cfg.n_boot,
                                     seed=cfg.seed)
            steps = sub[(sub["easy_p"] == info["easy_p"]) & (sub["common"] == info["common"])
                        & (sub["hard"] == info["hard"])]
            row = {"regime": regime, "method": method, **info, "ratio": ratio.estimate, "ci_lo": ratio.ci[0],
                   "ci_hi": ratio.ci[1], "n_pairs": ratio.n_pairs, "n_units": ratio.n_units,
                   "n_dropped": ratio.n_dropped, "verdict": _side_of_one(ratio.ci, ratio.n_units),
                   "predicted_win_fraction": win_frac, "predicted_ratio": pred_ratio,
                   "easy_share": float(steps["easy_share"].mean()),
                   "reached_fraction": float(steps.drop_duplicates("seed")["reached"].mean())}
            if regime == "equal_lr":
                in_cell = np.ones(len(same), dtype=bool)
                for k in CELL_KEYS:
                    in_cell &= (same[k] == info[k]).to_numpy()
                dom_label = ("" if info["p1"] != "exact" else
                             cell_label(method, info).replace(",P1=exact", ""))
                vs, extra = _cell_verdicts(method, cell_label(method, info), same[in_cell], diff, cfg, dom_label)
                verdicts += vs
                row.update(extra)
            rows.append(row)
    return pd.DataFrame(rows), verdicts


def _miss_summary(agree: dict) -> str:
    """Where the near-flow condition misses, by kind: mis-modeled P1 with leakage, near-ties, other."""
    miss = pd.DataFrame(agree["disagreeing_cells"])
    if not len(miss):
        return "No near-flow cell disagrees with the condition."
    drift = (miss["p1"] == "mismodeled") & (miss["common"] > 0)
    tie = ~drift & ((miss["ratio"] - 1).abs() < 0.01)
    return (f"Near-flow misses: {len(miss)} cells — {int(drift.sum())} with a mis-modeled P1 and shared leakage "
            f"(the first-order misfit term G dominates there and follows the model as it drifts from θ0), "
            f"{int(tie.sum())} measured near-ties (|ratio − 1| < 1%), {int((~drift & ~tie).sum())} other.")


def _near_tie_misses(agree: dict) -> int:
    miss = pd.DataFrame(agree["disagreeing_cells"])
    return int(((miss["predicted_ratio"] - 1).abs() < 0.05).sum()) if len(miss) else 0


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if np.isfinite(x) else "n/a"


def sign_agreement(cells: pd.DataFrame) -> dict:
    """How often the linearised condition's predicted sign matches the measured ratio's side of one."""
    ok = cells[np.isfinite(cells["ratio"]) & np.isfinite(cells["predicted_win_fraction"])]
    measured_win = ok["ratio"] < 1
    predicted_win = ok["predicted_win_fraction"] > 0.5
    agree = measured_win == predicted_win
    informative = ok["verdict"] != "uninformative"
    return {"n_cells": int(len(ok)), "agreement": float(agree.mean()) if len(ok) else float("nan"),
            "n_informative": int(informative.sum()),
            "agreement_informative": float(agree[informative].mean()) if informative.any() else float("nan"),
            "disagreeing_cells": ok.loc[~agree, ["method", *CELL_KEYS, "w_min", "tau_rule", "ratio",
                                                 "predicted_ratio"]].to_dict("records")}


def _synthetic_unit(cfg: Config, easy: str, seed: int, lab: dict) -> list[dict]:
    """SFT, TALR (each w_min) and DFT on one draw of training examples; ΔL at common gains."""
    from talr_theory.lab.domains import DomainConfig, domain_nll, make_agreeing_examples, make_domain_examples
    from talr_theory.lab.empirical import run_trajectory

    model, general, chain, source = lab[easy]
    dcfg = DomainConfig(s=cfg.synthetic_s, easy=easy)
    if easy == "domain":
        train_ex = make_agreeing_examples(chain, dcfg, cfg.synthetic_n_train, seed=seed * 1000 + 11)
        eval_ex = make_agreeing_examples(chain, dcfg, cfg.synthetic_n_eval, seed=seed * 1000 + 12, prefix="eval")
    else:
        train_ex = make_domain_examples(source, dcfg, cfg.synthetic_n_train, seed=seed * 1000 + 11)
        eval_ex = make_domain_examples(source, dcfg, cfg.synthetic_n_eval, seed=seed * 1000 + 12, prefix="eval")
    runs = [("sft", -1.0), ("dft", -1.0)] + [("talr", w) for w in cfg.w_min]
    trajs = []
    for method, w_min in runs:
        lr = cfg.synthetic_lr * (1.0 if method == "sft" else cfg.synthetic_lr_scale)
        steps = cfg.synthetic_sft_steps if method == "sft" else cfg.synthetic_steps
        extra = {"w_min": w_min, "tau": "median"} if method == "talr" else {}
        fr = run_trajectory(model, train_ex, method, lr, steps, max(1, cfg.synthetic_steps // cfg.synthetic_evals),
                            general.delta_L, lambda m: domain_nll(m, eval_ex), optimizer="sgd", seed=seed,
                            extra_config=extra)
        trajs.append(fr.assign(method=method, w_min=w_min, lr=lr)[["method", "w_min", "lr", "step", "delta_star",
                                                                  "delta_L"]])
    frame = pd.concat(trajs, ignore_index=True)
    # One geometric gain grid from the smallest positive first-checkpoint gain to the largest gain any run
    # reaches: each (method, SFT) pair is compared on the part of it that both runs bracket, so a method
    # that never gains (or gains fast) does not empty the comparison of the others.
    moved = frame[frame["step"] >= 1]
    first = moved.sort_values("step").groupby(["method", "w_min"])["delta_star"].first()
    lo, hi = float(first[first > 0].min()) if (first > 0).any() else math.nan, float(moved["delta_star"].max())
    if not (math.isfinite(lo) and hi > lo):
        return []
    gains = np.round(np.geomspace(lo, hi, 3 * cfg.n_gains), 12)
    at = cost_at_gain(frame, gains, by=["method", "w_min", "lr"])
    return [{"method": r.method, "w_min": float(r.w_min), "lr": float(r.lr), "gain": float(r.delta_star),
             "delta_L": float(r.delta_L)} for r in at.itertuples()]


def _measure_synthetic(cfg: Config, out, progress: bool) -> pd.DataFrame:
    from talr_theory.lab.domains import load_domain_pretrained
    from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads

    if not cfg.synthetic_easy:
        return pd.DataFrame()
    with torch_threads(1):
        lab = {}
        if "source" in cfg.synthetic_easy:
            source, model, _ = load_pretrained(progress=progress)
            lab["source"] = (model, ExactGeneralEvaluator(source, model), None, source)
        if "domain" in cfg.synthetic_easy:
            source, chain, model = load_domain_pretrained(progress=progress)
            lab["domain"] = (model, ExactGeneralEvaluator(source, model), chain, source)
        units = [{"easy": e, "seed": cfg.seed * 1000 + k}
                 for e, k in itertools.product(cfg.synthetic_easy, range(cfg.synthetic_seeds))]
        return collect_packed(out, NAME + "_synthetic", cfg, units,
                              lambda easy, seed: _synthetic_unit(cfg, easy, seed, lab), progress,
                              "TALR map (synthetic lab)")


# The synthetic lab's pretrained model is one draw, not resampled: its cells are conditional on it.
SYNTHETIC_PRETRAINED_DRAWS = 1


def synthetic_cells(frame: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, list]:
    """One row per (variant, method, w_min) of the synthetic lab; the claim's stricter reading per TALR row.

    The difference ΔL_method − ΔL_SFT at equal gain (any sign; SFT often improves P1 here) is the
    measure; each seed draws new training examples, but the pretrained model is one draw, so the
    verdicts are conditional on it and not counted (their independent units: the pretrained draws).
    """
    if not len(frame):
        return pd.DataFrame(), []
    keys = ["easy", "seed", "gain"]
    sft = frame[frame["method"] == "sft"][keys + ["delta_L"]]
    rows, verdicts = [], []
    for (easy, method, w_min), sub in frame[frame["method"] != "sft"].groupby(["easy", "method", "w_min"]):
        pairs = sub.merge(sft, on=keys, suffixes=("_w", "_s"))
        ratio = paired_ratio(pairs["delta_L_w"], pairs["delta_L_s"], pairs["seed"], n_boot=cfg.n_boot, seed=cfg.seed)
        diff = paired_difference(pairs["delta_L_w"], pairs["delta_L_s"], pairs["seed"], n_boot=cfg.n_boot,
                                 seed=cfg.seed)
        both = pairs.dropna(subset=["delta_L_w", "delta_L_s"])
        label = f"synthetic,easy={easy},s={cfg.synthetic_s}" + (f",w_min={w_min:g}" if method == "talr" else "")
        v = None
        if f"{method}_vs_sft" in CLAIMS:
            v = claim_verdict(
                f"{method}_vs_sft", "stricter", NAME, diff.estimate, diff.ci, n_units=SYNTHETIC_PRETRAINED_DRAWS,
                qualifier=label,
                note=f"Synthetic lab, exact ΔL(P1) in nats/sequence; SGD, SFT LR {cfg.synthetic_lr:g}, "
                     f"{method.upper()} LR {cfg.synthetic_lr * cfg.synthetic_lr_scale:g} (one LR each, no frontier); "
                     f"mean over common gains per seed, bootstrap over {diff.n_units} seeds (new training examples "
                     f"each), {diff.n_dropped} (seed, gain) pairs unmeasured. Conditional on one pretrained model "
                     "draw (not resampled): not counted as evidence.")
            verdicts.append(v)
        rows.append({"easy": easy, "method": method, "w_min": w_min, "ratio": ratio.estimate, "ci_lo": ratio.ci[0],
                     "ci_hi": ratio.ci[1], "n_pairs": ratio.n_pairs, "n_units": ratio.n_units,
                     "verdict": v.verdict if v is not None else "",
                     "n_common_gain_pairs": int(len(both)), "n_units_diff": diff.n_units,
                     "frac_sft_improves_p1": float((both["delta_L_s"] <= 0).mean()) if len(both) else float("nan"),
                     "max_gain_method": float(sub["gain"][sub["delta_L"].notna()].max())
                     if sub["delta_L"].notna().any() else float("nan"),
                     "diff_mean": diff.estimate, "diff_ci_lo": diff.ci[0], "diff_ci_hi": diff.ci[1]})
    return pd.DataFrame(rows), verdicts


def run(cfg: Config, out: str | Path | None = None, progress: bool = True) -> TierResult:
    cfg.validate()
    t0 = time.perf_counter()
    frame = _measure(cfg, out, progress)
    cells, verdicts = ratio_cells(frame, cfg, "equal_lr")
    flow_cells, _ = ratio_cells(frame, cfg, "near_flow")  # tests our condition, not the paper: no verdicts
    syn_frame = _measure_synthetic(cfg, out, progress)
    syn_cells, syn_verdicts = synthetic_cells(syn_frame, cfg)
    agree = sign_agreement(flow_cells)
    agree_lr = sign_agreement(cells)
    sft_steps = frame[(frame["method"] == "sft")].groupby("regime")["steps"].median().to_dict()
    talr_cells = cells[cells["method"] == "talr"] if len(cells) else cells
    wins = talr_cells[talr_cells["verdict"] == "agrees"] if len(cells) else cells
    loses = talr_cells[talr_cells["verdict"] == "disagrees"] if len(cells) else cells
    paper = {k: int(v) for k, v in talr_cells.get("verdict_paper", pd.Series(dtype=str)).value_counts().items()}
    stricter = {k: int(v) for k, v in talr_cells.get("verdict_stricter", pd.Series(dtype=str)).value_counts().items()}
    notes = [
        f"talr_vs_sft per TALR cell — paper protocol (same λ, same steps): {paper}; stricter (equal domain gain, "
        f"same λ): {stricter}. The equal-gain ratio's interval lies below 1 in {len(wins)} of {len(talr_cells)} "
        f"TALR cells and above 1 in {len(loses)}.",
        f"Linearised condition (theory/reweighting.py, step direction frozen at θ0), tested where it applies — "
        f"the near-flow regime, every run cut into ≥ {cfg.flow_min_steps} steps (SFT: median "
        f"{sft_steps.get('near_flow', float('nan')):.0f} steps): its predicted sign matches the measured side of "
        f"one in {_pct(agree['agreement_informative'])} of the {agree['n_informative']} cells whose CI excludes 1 "
        f"({_pct(agree['agreement'])} of all {agree['n_cells']} cells, counting those whose measured sign the "
        f"interval cannot resolve). At equal λ = {cfg.lam:g} (SFT reaches the gain in a median "
        f"{sft_steps.get('equal_lr', float('nan')):.0f} steps) it matches {_pct(agree_lr['agreement_informative'])} "
        f"of {agree_lr['n_informative']} resolved cells ({_pct(agree_lr['agreement'])} of {agree_lr['n_cells']}): "
        f"{_near_tie_misses(agree_lr)} of its {len(agree_lr['disagreeing_cells'])} misses there are cells the "
        f"condition calls near-ties (predicted ratio within 5% of 1) that TALR wins at a large step because its "
        f"weights < 1 shrink the step and avoid the finite-step cost (Theorem 3.1's λ term) — a step-size "
        f"effect, not a better direction. {_miss_summary(agree)}",
    ]
    if len(wins):
        key = ["method", *CELL_KEYS, "w_min", "tau_rule"]
        flow_win = wins[key].merge(flow_cells[key + ["verdict"]], on=key, how="left")["verdict"].eq("agrees")
        notes.append(f"Of the {len(wins)} cells where TALR wins at λ = {cfg.lam:g}, {int(flow_win.sum())} are also wins "
                     f"in the near-flow regime (a better direction); in the other {int((~flow_win).sum())} the win "
                     f"does not survive there (it comes from TALR's smaller effective step).")
        notes.append("Cells where TALR wins: " + "; ".join(cell_label("talr", r) for r in wins.to_dict("records")) + ".")
    if len(syn_cells):
        parts = []
        for r in syn_cells.to_dict("records"):
            setting = r["method"].upper() + (f" w_min={r['w_min']:g}" if r["method"] == "talr" else "")
            easy = "P1 transitions" if r["easy"] == "source" else "domain tokens"
            if r["n_common_gain_pairs"] == 0:
                parts.append(f"{setting} vs SFT with easy targets = {easy}: no domain gain that both runs reach "
                             f"at measured checkpoints (SFT's first checkpoint already lies beyond the gains the "
                             f"reweighted run reaches, or the reweighted run never gains), so nothing is compared")
                continue
            # one pretrained draw stands behind these numbers: their intervals are withheld (verdicts.MIN_UNITS)
            units = SYNTHETIC_PRETRAINED_DRAWS
            ratio = (f"ratio {format_ci(r['ratio'], r['ci_lo'], r['ci_hi'], n_units=units)} over {r['n_pairs']} pairs "
                     f"with both ΔL > 0" if r["n_pairs"] else "ratio undefined (no pair with both ΔL > 0)")
            diff = format_ci(r['diff_mean'], r['diff_ci_lo'], r['diff_ci_hi'], n_units=units)
            parts.append(f"{setting} vs SFT with easy targets = {easy}: ΔL_{r['method'].upper()} − ΔL_SFT = "
                         f"{diff} nats/sequence "
                         f"→ {r['verdict'] or 'no registered claim'}, conditional on one pretrained model ({r['n_units_diff']} of {cfg.synthetic_seeds} seeds reach a gain "
                         f"SFT also reaches; {r['n_common_gain_pairs']} (seed, gain) pairs at common gains; SFT "
                         f"improved P1 (ΔL ≤ 0) in {100 * r['frac_sft_improves_p1']:.0f}% of them; {ratio})")
        notes.append("Synthetic lab (exact ΔL(P1)): " + "; ".join(parts) + ".")
    info = {
        "summary": (f"Exact tier: ΔL(P1) of SFT and {', '.join(m.upper() for m in cfg.methods)} at the same λ "
                    f"over a grid of {len(cells)} (method, cell) combinations, {cfg.n_seeds} random scenarios (seeds) "
                    f"per cell, λ={cfg.lam:g}, s={cfg.s}: after the same steps (paper) and at equal domain gain "
                    f"(stricter); intervals resample seeds."),
        "notes": notes,
        "report_tables": {"TALR/DFT vs SFT at equal gain, per cell (exact tier)": "cells",
                          "TALR/DFT vs SFT at equal gain (synthetic lab)": "synthetic_cells"},
        "sign_agreement": agree,
        "sign_agreement_equal_lr": agree_lr,
        "elapsed_s": time.perf_counter() - t0,
    }
    info["report_tables"]["TALR/DFT vs SFT at equal gain, near-flow regime (tests the condition)"] = "near_flow_cells"
    frames = {"runs": frame, "cells": cells, "near_flow_cells": flow_cells, "synthetic_runs": syn_frame,
              "synthetic_cells": syn_cells}
    return TierResult(NAME, asdict(cfg), frames, verdicts + syn_verdicts, info)


def figures(result: TierResult, save) -> None:
    from talr_theory.plotting.talr_map import ratio_heatmap

    cells = result.frames["cells"]
    for p1 in sorted(cells["p1"].unique()):
        save(ratio_heatmap(cells[cells["p1"] == p1], title=f"Equal-gain ΔL(P1) ratio vs SFT (P1 {p1})"),
             f"talr_map_{p1}")
    flow = result.frames.get("near_flow_cells")
    if flow is not None and len(flow):
        from talr_theory.plotting.talr_map import condition_check

        save(condition_check(pd.concat([cells, flow], ignore_index=True),
                             flow_min_steps=result.config.get("flow_min_steps")), "talr_map_condition")
    syn = result.frames.get("synthetic_cells")
    if syn is not None and len(syn):
        from talr_theory.plotting.talr_map import synthetic_ratios

        save(synthetic_ratios(syn), "talr_map_synthetic")
