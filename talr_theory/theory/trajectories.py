"""Multi-step fine-tuning at a fixed step size λ, recorded as (Δ*, ΔL(P1)) pairs (Theorem 3.1).

Each step is the exact kernel-softmax SGD step of ``steps.py`` on all domain positions (full
batch), with the method's token weights recomputed from the current model every step (as TALR
does per batch). After every step we record

* Δ*(t) — the domain gain: mean over domain tokens of log q_t(y|c) − log q_0(y|c), i.e. minus
  ΔL(P2) for P2 = the empirical domain data (nats per token);
* ΔL(P1)(t) — the general degradation Σ_c ρ(c) Σ_y P1(y|c) (log q_0 − log q_t) (nats per token).

A run stops when Δ* reaches ``target_gain`` (or after ``max_steps``, which is reported).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.reweighting import method_update
from talr_theory.theory.scenario import Scenario
from talr_theory.theory.steps import TALR_W_MIN


@dataclass
class Trajectory:
    lam: float
    method: str
    delta_star: np.ndarray  # (steps + 1,) starting with 0
    delta_L: np.ndarray     # (steps + 1,) starting with 0, for the requested P1
    reached: bool
    steps: int
    delta_L_by_p1: dict[str, np.ndarray] | None = None  # both P1 variants (same dynamics)
    # Σ over steps of Σ_i w_i (1 − p_i), split by whether target i started hard (p < 0.05): how much
    # of the update went to easy vs hard tokens.
    easy_mass: float = 0.0
    hard_mass: float = 0.0


def run_trajectory(sc: Scenario, s: int, lam: float, target_gain: float, p1: str = "exact",
                   method: str = "sft", tau="median", w_min: float = TALR_W_MIN, max_steps: int = 20000) -> Trajectory:
    """Full-batch SGD at step size ``lam`` until the domain gain reaches ``target_gain``.

    The dynamics do not depend on P1, so ΔL(P1) is recorded for both P1 variants of the scenario
    (``delta_L_by_p1``); ``delta_L`` is the one named by ``p1``.
    """
    if lam <= 0 or target_gain <= 0:
        raise ValueError(f"run_trajectory: need lam > 0 and target_gain > 0, got {lam}, {target_gain}")
    sc.p_general(p1)  # validates the name
    targets = sc.targets(s)
    idx = np.concatenate([sc.general_idx, sc.domain_idx])
    n_gen = len(sc.general_idx)
    N = len(targets)
    rows = np.arange(N)
    K = sc.model.kernel[np.ix_(idx, sc.domain_idx)] * (lam / N)  # only these contexts matter
    z = sc.model.logits[idx].copy()
    p_gens = {name: sc.p_general(name) for name in ("exact", "mismodeled")}
    log_q0_gen = log_softmax(z[:n_gen])
    logq_dom = log_softmax(z[n_gen:])
    logq0_dom = logq_dom.copy()  # the base distribution ASFT anchors to
    log_p0_tok = logq_dom[rows, targets]
    started_hard = np.exp(log_p0_tok) < 0.05
    easy_mass = hard_mass = 0.0
    gains = [0.0]
    degr = {name: [0.0] for name in p_gens}
    reached = False
    steps = 0
    while steps < max_steps:
        steps += 1
        p_tok = np.exp(logq_dom[rows, targets])
        w, u = method_update(method, logq_dom, targets, logq0_dom, tau=tau, w_min=w_min, example_of=sc.example_of)
        mass = w * (1.0 - p_tok)
        hard_mass += float(mass[started_hard].sum())
        easy_mass += float(mass[~started_hard].sum())
        # Same update as steps.step_direction (plus ASFT's pull to the base), softmax computed once.
        z += K @ u
        logq_dom = log_softmax(z[n_gen:])
        gain = float(np.mean(logq_dom[rows, targets] - log_p0_tok))
        d = log_q0_gen - log_softmax(z[:n_gen])
        gains.append(gain)
        for name, p_gen in p_gens.items():
            degr[name].append(float(np.sum(sc.rho * np.sum(np.where(p_gen > 0, p_gen * d, 0.0), axis=1))))
        if gain >= target_gain:
            reached = True
            break
    by_p1 = {name: np.array(v) for name, v in degr.items()}
    return Trajectory(lam=float(lam), method=method, delta_star=np.array(gains), delta_L=by_p1[p1],
                      reached=reached, steps=steps, delta_L_by_p1=by_p1, easy_mass=easy_mass,
                      hard_mass=hard_mass)


def with_p1(traj: Trajectory, p1: str) -> Trajectory:
    """The same run with ``delta_L`` switched to another P1 variant."""
    if traj.delta_L_by_p1 is None or p1 not in traj.delta_L_by_p1:
        raise ValueError(f"with_p1: trajectory has no ΔL recorded for P1 {p1!r}")
    return replace(traj, delta_L=traj.delta_L_by_p1[p1])


def trajectories_frame(trajs: list[Trajectory], seed: int | None = None, p1: str | None = None) -> pd.DataFrame:
    """Tidy table: one row per (trajectory, step)."""
    frames = []
    for k, t in enumerate(trajs):
        frames.append(pd.DataFrame({
            "trajectory": k, "lam": t.lam, "method": t.method, "step": np.arange(len(t.delta_star)),
            "delta_star": t.delta_star, "delta_L": t.delta_L, "reached": t.reached,
            "seed": seed, "p1": p1,
        }))
    return pd.concat(frames, ignore_index=True)
