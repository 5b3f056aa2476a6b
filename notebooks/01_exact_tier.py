# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — The exact tier: tilts, bounds, Theorem 3.1 envelope, Theorem 3.2 scaling
#
# Everything here is exact (float64, log-space) on small models whose general data P1 are known:
# a *kernel softmax* over a few hundred contexts, where a domain gradient step leaks into general
# contexts through a kernel (theory.md C1). The package does the work; this notebook only runs it
# and draws the figures (written to `figures/`).
#
# 1. exact ΔL(P1) of one gradient step against the Jensen lower and Hoeffding/TV upper bounds, across λ;
# 2. Theorem 3.1: trajectories at several step sizes λ, read at common domain gains Δ*, and the
#    tightest envelope ΔL ≤ k1·Δ* + k2·Δ*^β·λ;
# 3. Theorem 3.2: the exact safe step λ_max against the tolerance ε for several s (hard tokens per
#    example), SFT vs TALR, with the fitted exponents — for P1 modeled exactly and for P1 mis-modeled.
#
# The paper's statements are λ_max ∝ ε/√s and ΔL ≤ k1Δ* + k2Δ*²λ; where the exact models disagree,
# the summary says so and why (see the notes at the end).

# %%
import os

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
SEED = 0

import pandas as pd

from talr_theory.plotting.exact import (
    plot_bounds_along_lambda,
    plot_envelope,
    plot_lambda_max,
    plot_methods_at_equal_gain,
    plot_single_step_gaps,
    save_figure,
)
from talr_theory.theory.exact_tier import compute_exact_tier, format_summary, scenario_step_curve

summary, tables = compute_exact_tier(quick=QUICK, seed=SEED, progress=False)
print(format_summary(summary))

# %% [markdown]
# ## 1. One gradient step: exact ΔL(P1) vs its bounds
# The SFT step of scenario `SEED` with s = 4 hard tokens per example. With P1 modeled exactly the
# Jensen bound is 0 and ΔL grows like λ² (second order); with P1 mis-modeled the first-order term
# A·λ appears. The TV bound Aλ + Bλ²/8 is the curve whose root gives the predicted λ_max.

# %%
curves = pd.concat([scenario_step_curve(SEED, s=4, p1=p1) for p1 in ("exact", "mismodeled")])
fig = plot_bounds_along_lambda(curves)
_ = save_figure(fig, "exact_bounds_along_lambda")

# %% [markdown]
# Over many random instances (random contexts, models, data and directions), the predicted safe
# step from the quadratic bound never exceeds the exact one:

# %%
fig = plot_single_step_gaps(tables["single_step"])
_ = save_figure(fig, "exact_single_step_lambda_ratio")
summary["single_step"]

# %% [markdown]
# ## 2. Theorem 3.1: the envelope over trajectories

# %%
points = tables["envelope_points"]
for p1, key in (("exact", "theorem_3_1"), ("mismodeled", "theorem_3_1_mismodeled")):
    block = summary[key]
    fig = plot_envelope(points[points["p1"] == p1], block["k1"], block["k2"], 2.0,
                        title=f"P1 {p1}: k1={block['k1']:.3g}, k2={block['k2']:.3g}, β=2 (dashed); "
                              f"best β={block['beta_best']:.1f}")
    _ = save_figure(fig, f"exact_envelope_{p1}")
{k: summary["theorem_3_1"][k] for k in ("k1", "k2", "beta_best", "beta_excess", "beta_excess_ci", "lam_exponent_excess",
                                        "holdout_violation_rate", "extrapolation_violation_rate")}

# %% [markdown]
# ### SFT vs TALR vs DFT at equal domain gain
# The fair comparison of methods is the general degradation paid for the same domain gain
# (λ_max below compares equal step sizes, and TALR's smaller weights also slow domain learning).

# %%
fig = plot_methods_at_equal_gain(tables["methods_at_equal_gain"])
_ = save_figure(fig, "exact_methods_at_equal_gain")
summary["methods_at_equal_gain"]

# %% [markdown]
# ## 3. Theorem 3.2: λ_max against ε for several s, SFT vs TALR

# %%
fits = {}
for key in ("theorem_3_2", "theorem_3_2_talr", "theorem_3_2_mismodeled", "theorem_3_2_talr_mismodeled"):
    fits[(summary[key]["p1"], summary[key]["method"])] = summary[key]
fig = plot_lambda_max(tables["lambda_max"], fits)
_ = save_figure(fig, "exact_lambda_max_vs_eps")
pd.DataFrame({k: {f: summary[k][f] for f in ("method", "p1", "eps_exponent", "s_exponent", "regime")}
              for k in summary if k.startswith("theorem_3_2")}).T

# %% [markdown]
# The s exponent depends on the geometry of the leakage (theory.md C3): with independent random
# kernel directions the hard-token errors add like √s (the paper's 1/√s); a shared positive
# direction (the default scenario) aligns them and steepens the exponent towards −1. The tabular
# model (no leakage) never degrades P1 at all.

# %%
pd.DataFrame({k: v for k, v in summary["leak_geometry"].items() if isinstance(v, dict)}).T

# %% [markdown]
# ## What agrees with the paper and what does not

# %%
for note in summary["notes"]:
    print("-", note)
