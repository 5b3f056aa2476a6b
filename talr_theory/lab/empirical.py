"""Theorems 3.1 and 3.2 measured on real transformer dynamics (any tier that supplies a ΔL(P1) function).

The pieces are tier-agnostic: a *general evaluator* ``delta_L(model) -> float`` (exact in the
synthetic lab, Monte Carlo KL on base-model samples in the LLM tier) and a *domain evaluator*
``domain_nll(model) -> float`` (nats per example on held-out domain data).

Theorem 3.2 (one step). For one optimizer step the update is ``θ1 = θ0 - λ·d`` with a direction d
that does not depend on λ: the full-batch gradient for SGD, and ``g / (|g| + eps)`` for the first
AdamW step (Adam's bias-corrected moments after one step are m = g, v = g², no weight decay). So
ΔL(P1) after one step is a function of λ alone, and λ_max(ε) = the smallest λ where ΔL(P1)(λ) = ε
is found by bracketing on a geometric grid and Brent's method. This is exactly
what ``training.core.train`` does for one full-batch step (checked in the tests) but costs one
forward pass per λ instead of a training run.

Theorem 3.1 (many steps). Trajectories at several learning rates are run with the training core
(full-batch steps so each trajectory is deterministic); every checkpoint records (Δ*, ΔL(P1)).
The trajectories are read at common Δ* values, the tightest envelope ΔL ≤ k1Δ* + k2Δ*^βλ is fitted
(β = 2 and the best β) and tested on learning rates it was not fitted on.
"""

from __future__ import annotations

import copy as _copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from talr_theory.stats import fit_power_law
from talr_theory.theory.envelope import (
    fit_best_beta,
    fit_envelope,
    holdout_validity,
    interpolate_at_common_delta,
)
from talr_theory.training import objectives as obj

ADAM_EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# One step: the update direction and λ_max(ε)
# ---------------------------------------------------------------------------------------------

def objective_gradient(model, examples, method: str = "sft", pad_id: int = 0, tau="median",
                       w_min: float = obj.TALR_W_MIN, batch_size: int = 16) -> tuple[list[torch.Tensor], dict]:
    """Full-batch gradient of the SFT (CE) or TALR objective, normalized by the global token count.

    Returns the gradient (one tensor per parameter, same order as ``model.parameters()``) and
    per-token statistics at θ0: probabilities p_i and TALR weights w_i (ones for SFT), from which the
    effective number of hard tokens is computed. Micro-batching keeps memory small; the TALR
    median τ is computed once over the whole batch (two passes) so that it matches a single batch.
    """
    from talr_theory.data.encode import collate
    from talr_theory.training.tail import logits_and_labels

    if method not in ("sft", "talr"):
        raise ValueError(f"objective_gradient: method must be 'sft' or 'talr', got {method!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    total = sum(obj.count_supervised(torch.tensor([e.labels])) for e in examples)
    # Pass 1: token losses at θ0 (for τ and the statistics).
    losses, owners = [], []
    was_training = model.training
    model.eval()  # no dropout in our models, but keep the forward deterministic
    with torch.no_grad():
        for k, chunk in enumerate(batches):
            batch = collate(chunk, pad_id)
            nll, mask = obj.token_nll(*logits_and_labels(model(input_ids=batch["input_ids"],
                                                               attention_mask=batch["attention_mask"]), batch["labels"]))
            for row in range(nll.shape[0]):
                losses.append(nll[row][mask[row]].double())
                owners.append(k * batch_size + row)
    flat = torch.cat(losses)
    if method == "talr":
        t = obj.resolve_tau(flat[None], torch.ones_like(flat[None], dtype=torch.bool), tau)
    else:
        t = math.inf
    grads = [torch.zeros_like(p) for p in params]
    for chunk in batches:
        batch = collate(chunk, pad_id)
        logits, labels = logits_and_labels(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]),
                                           batch["labels"])
        if method == "talr":
            loss, _ = obj.talr_loss(logits, labels, total, tau=t, w_min=w_min)
        else:
            loss, _ = obj.ce_loss(logits, labels, total)
        for g, gp in zip(grads, torch.autograd.grad(loss, params)):
            g += gp
    model.train(was_training)
    return grads, _token_stats(losses, method, t, w_min)


def _token_stats(losses: list[torch.Tensor], method: str, tau: float, w_min: float) -> dict:
    """Per-example means at θ0: Σ(1−p), effective s = Σw(1−p), ‖w(1−p)‖, mean w, and the measured s.

    The measured s (``n_hard_0.2``: targets with p < 0.2 per example) is counted by the token
    scanner's ``per_example_counts``, the one s count of the package.
    """
    from talr_theory.tokens.stats import per_example_counts

    per_example, tokens = [], []
    for k, lp in enumerate(losses):
        p = torch.exp(-lp)
        w = obj.talr_weights(lp, tau, w_min) if method == "talr" else torch.ones_like(p)
        per_example.append({"sum_1mp": float((1 - p).sum()), "sum_w_1mp": float((w * (1 - p)).sum()),
                            "l2_w_1mp": float(torch.sqrt(((w * (1 - p)) ** 2).sum())), "mean_w": float(w.mean())})
        tokens.append(pd.DataFrame({"example_id": k, "p": p.numpy()}))
    stats = pd.DataFrame(per_example).mean().to_dict()
    counts = per_example_counts(pd.concat(tokens, ignore_index=True), thresholds=(0.2,))
    stats["n_hard_0.2"] = float(counts["n_p_lt_0.2"].mean())
    stats["tau"] = tau
    return stats


def step_direction(grads: list[torch.Tensor], optimizer: str) -> list[torch.Tensor]:
    """The per-unit-LR update of the first optimizer step: g (SGD) or g/(|g|+eps) (AdamW, no decay)."""
    if optimizer == "sgd":
        return [g.clone() for g in grads]
    if optimizer == "adamw":
        return [g / (g.abs() + ADAM_EPS) for g in grads]
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")


class LineModel:
    """The model's parameters set to θ0 − λ·d for any λ, restored exactly.

    By default a copy of the model moves; with ``copy=False`` the model itself moves (no second copy
    of a large model) and :meth:`restore` puts θ0 back.
    """

    def __init__(self, model, direction: list[torch.Tensor], copy: bool = True):
        self.model = _copy.deepcopy(model) if copy else model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.direction = direction

    @torch.no_grad()
    def at(self, lam: float):
        # in place, no temporaries: θ = θ0 - λ·d (matters for 100M+ parameter models)
        torch._foreach_copy_(self.params, self.theta0)
        torch._foreach_add_(self.params, self.direction, alpha=-lam)
        return self.model

    @torch.no_grad()
    def restore(self):
        torch._foreach_copy_(self.params, self.theta0)
        return self.model


def lambda_max_curve(line: LineModel, delta_L: Callable, epsilons: Sequence[float],
                     lam_start: float = 1e-3, rtol: float = 1e-6, factor: float = 4.0,
                     max_moves: int = 60) -> list[dict]:
    """λ_max(ε) for each ε along one update direction: the one line scan (``theory.line_scan``) per ε.

    A geometric grid (×``factor``) from ``lam_start`` — downwards while ΔL > ε, upwards while ΔL ≤ ε —
    then Brent's method inside the bracket; each next ε starts from the previous root. Every ΔL
    evaluation is one forward pass over the general data, shared by all ε. Rows carry the number of
    evaluations; λ_max is inf if ΔL never exceeds ε within ``max_moves`` new evaluations per ε.
    """
    from talr_theory.theory.line_scan import lambda_max_on_line

    points: dict[float, float] = {}

    def f(lam: float) -> float:
        return delta_L(line.at(lam))

    rows, start = [], lam_start
    for eps in sorted(epsilons):
        if eps <= 0:
            raise ValueError(f"tolerance eps must be > 0, got {eps}")
        root = lambda_max_on_line(f, eps, lam_start=start, factor=factor, max_evals=max_moves, rtol=rtol,
                                  points=points)
        rows.append({"epsilon": float(eps), "lambda_max": root})
        if math.isfinite(root):
            start = root
    for r in rows:
        r["n_evals"] = len(points)
    return rows


# ---------------------------------------------------------------------------------------------
# Many steps: trajectories and the Theorem 3.1 envelope
# ---------------------------------------------------------------------------------------------

def run_trajectory(model, train_examples, method: str, lr: float, steps: int, eval_every: int,
                   delta_L: Callable, domain_nll: Callable, optimizer: str = "sgd", pad_id: int = 0,
                   batch_size: int | None = None, seed: int = 0, extra_config: dict | None = None) -> pd.DataFrame:
    """Fine-tune a copy of ``model`` with the training core; one row per checkpoint (step 0 included).

    Rows: method, lr, optimizer, step, delta_star (domain code-length gain vs step 0, nats per
    example), delta_L (general degradation), mean_weight (TALR) and the core's own statistics.
    """
    from talr_theory.training.core import TrainConfig, train

    work = _copy.deepcopy(model)
    nll0 = domain_nll(work)
    config = TrainConfig(method=method, lr=lr, optimizer=optimizer, steps=steps,
                         batch_size=batch_size or len(train_examples), eval_every=eval_every, seed=seed,
                         **(extra_config or {}))

    def evaluator(m, step):
        return {"delta_star": nll0 - domain_nll(m), "delta_L": delta_L(m)}

    result = train(work, train_examples, config, evaluator=evaluator, pad_id=pad_id, progress=False)
    frame = pd.DataFrame(result.history)
    frame["optimizer"] = optimizer
    frame["status"] = result.status
    return frame


def envelope_summary(trajectories: pd.DataFrame, n_grid: int = 8, method: str | None = None) -> dict:
    """Fit Theorem 3.1's envelope on trajectories (columns lr, delta_star, delta_L, step) and test it out of sample.

    The Δ* grid spans (0, the largest Δ* that every trajectory reaches]. Held-out validity: for each
    learning rate, fit on the others and test on it (leave-one-LR-out), plus "extrapolate up": fit on
    all but the largest LR and test on the largest. Returns the JSON-ready block and the interpolated frame.
    """
    trajs = []
    for lr, group in trajectories.groupby("lr"):
        g = group.sort_values("step")
        trajs.append((float(lr), g["delta_star"].to_numpy(), g["delta_L"].to_numpy()))
    reach = min(float(np.max(t[1])) for t in trajs)
    if not reach > 0:
        raise ValueError("envelope_summary: some trajectory never gained on the domain (Δ* ≤ 0)")
    grid = np.linspace(reach / n_grid, reach, n_grid)
    df = interpolate_at_common_delta(trajs, grid)
    fit2 = fit_envelope(df["delta_star"], df["delta_L"], df["lam"], beta=2.0)
    best = fit_best_beta(df["delta_star"], df["delta_L"], df["lam"])
    lams = sorted(df["lam"].unique())
    n_test = n_viol = 0
    n_test_b = n_viol_b = 0
    for lam in lams:
        others = [x for x in lams if x != lam]
        h = holdout_validity(df, others, [lam], beta=2.0)
        n_test += h["n_test"]
        n_viol += h["n_violations"]
        hb = holdout_validity(df, others, [lam], beta=None)
        n_test_b += hb["n_test"]
        n_viol_b += hb["n_violations"]
    up = holdout_validity(df, lams[:-1], lams[-1:], beta=2.0)
    # How ΔL at fixed Δ* grows with λ: slope of log ΔL on log λ at each grid value (positive ΔL only).
    slopes = []
    for _g, sub in df.groupby("delta_star"):
        sub = sub[sub["delta_L"] > 0]
        if sub["lam"].nunique() >= 2:
            slopes.append(fit_power_law(sub["delta_L"], {"lam": sub["lam"]}, n_boot=0).exponent("lam"))
    block = {
        "method": method,
        "k1": fit2.k1, "k2": fit2.k2, "beta": 2.0,
        "beta_best": best.beta, "k1_best": best.k1, "k2_best": best.k2,
        "total_slack_beta2": fit2.total_slack, "total_slack_best": best.total_slack,
        "mean_relative_slack_beta2": fit2.mean_relative_slack,
        "holdout_violation_rate": n_viol / n_test if n_test else float("nan"),
        "holdout_violation_rate_best_beta": n_viol_b / n_test_b if n_test_b else float("nan"),
        "holdout_scheme": "leave-one-learning-rate-out over all LRs (beta=2); extrapolate_up: fit on the "
                          "smaller LRs, test on the largest",
        "extrapolate_up_violation_rate": up["holdout_violation_rate"],
        "extrapolate_up_max_violation_ratio": up["max_violation_ratio"],
        "n_points": int(len(df)), "lrs": lams, "delta_star_grid_max": reach,
        "loglog_slope_dL_vs_lr_at_fixed_gain": float(np.median(slopes)) if slopes else float("nan"),
        "n_unreached": len(df.attrs.get("unreached", [])),
        "delta_L_at_max_common_gain": {str(k): float(v) for k, v in
                                       df[df["delta_star"] == df["delta_star"].max()].set_index("lam")["delta_L"].items()},
    }
    return {"block": block, "points": df}


def methods_at_equal_gain(trajectories: pd.DataFrame) -> dict:
    """ΔL(P1) of every (method, lr) run at the largest domain gain that every run reaches.

    The fair comparison of SFT and TALR (Theorem 3.1's setting): same Δ*, compare ΔL(P1).
    Returns {"gain": G, "by_run": [{method, lr, delta_L}], "best": {method: (lr, delta_L)}}.
    """
    trajs, keys = [], []
    for (method, lr), g in trajectories.groupby(["method", "lr"]):
        g = g.sort_values("step")
        trajs.append((float(lr), g["delta_star"].to_numpy(float), g["delta_L"].to_numpy(float)))
        keys.append((method, float(lr)))
    gain = min(float(t[1].max()) for t in trajs)
    if not gain > 0:
        return {"gain": gain, "by_run": [], "best": {}}
    at = interpolate_at_common_delta(trajs, [gain])
    rows = [{"method": keys[int(r.trajectory)][0], "lr": keys[int(r.trajectory)][1], "delta_L": float(r.delta_L)}
            for r in at.itertuples()]
    best = {}
    for r in rows:
        if r["method"] not in best or r["delta_L"] < best[r["method"]]["delta_L"]:
            best[r["method"]] = {"lr": r["lr"], "delta_L": r["delta_L"]}
    return {"gain": gain, "by_run": rows, "best": best}
