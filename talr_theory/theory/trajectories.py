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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.scenario import Scenario
from talr_theory.theory.steps import step_direction, target_probs, token_weights


@dataclass
class Trajectory:
    lam: float
    method: str
    delta_star: np.ndarray  # (steps + 1,) starting with 0
    delta_L: np.ndarray     # (steps + 1,) starting with 0
    reached: bool
    steps: int


def run_trajectory(sc: Scenario, s: int, lam: float, target_gain: float, p1: str = "exact",
                   method: str = "sft", tau="median", w_min: float = 0.01, max_steps: int = 20000) -> Trajectory:
    """Full-batch SGD at step size ``lam`` until the domain gain reaches ``target_gain``."""
    if lam <= 0 or target_gain <= 0:
        raise ValueError(f"run_trajectory: need lam > 0 and target_gain > 0, got {lam}, {target_gain}")
    targets = sc.targets(s)
    idx = np.concatenate([sc.general_idx, sc.domain_idx])
    n_gen = len(sc.general_idx)
    K = sc.model.kernel[np.ix_(idx, sc.domain_idx)]  # only these contexts matter
    z = sc.model.logits[idx].copy()
    p_gen = sc.p_general(p1)
    log_q0_gen = log_softmax(z[:n_gen])
    log_p0_tok = np.log(target_probs(z[n_gen:], targets))
    gains, degr = [0.0], [0.0]
    reached = False
    steps = 0
    while steps < max_steps:
        steps += 1
        p_tok = target_probs(z[n_gen:], targets)
        w, _ = token_weights(method, p_tok, tau=tau, w_min=w_min, example_of=sc.example_of)
        z = z + lam * step_direction(K, z[n_gen:], targets, w)
        gain = float(np.mean(np.log(target_probs(z[n_gen:], targets)) - log_p0_tok))
        d = log_q0_gen - log_softmax(z[:n_gen])
        gains.append(gain)
        degr.append(float(np.sum(sc.rho * np.sum(np.where(p_gen > 0, p_gen * d, 0.0), axis=1))))
        if gain >= target_gain:
            reached = True
            break
    return Trajectory(lam=float(lam), method=method, delta_star=np.array(gains), delta_L=np.array(degr),
                      reached=reached, steps=steps)


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
