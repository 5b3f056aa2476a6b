# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — The exact tier: tilts, bounds, Theorem 3.1, Theorem 3.2
#
# Everything here is exact (float64, log-space) on small models whose general data P1 are known:
# a *kernel softmax* over a few hundred contexts, where a domain gradient step leaks into general
# contexts through a kernel (theory.md C1). The stage `talr_theory.tiers.exact` does the work; this
# notebook reads what `talr-theory reproduce --out R` stored (set `TALR_RESULTS=R` before starting
# Jupyter) and runs the quick stage in memory when no folder is given.
#
# 1. exact ΔL(P1) of one gradient step against the Jensen lower and Hoeffding/TV upper bounds, across λ;
# 2. Theorem 3.1: trajectories at several step sizes λ, read at common domain gains Δ*;
# 3. Theorem 3.2: the exact safe step λ_max against the tolerance ε for several s, SFT vs TALR,
#    for P1 modeled exactly and for P1 mis-modeled.
#
# Every comparison with the paper is a verdict computed by the rule in `talr_theory.verdicts`; the
# text printed below is the stage's section of the report, character for character.

# %%
import pandas as pd

from talr_theory.explore import claims, stage, stage_report
from talr_theory.plotting import save_figure, saver
from talr_theory.plotting.exact import plot_bounds_along_lambda
from talr_theory.theory.scenario import scenario_step_curve
from talr_theory.tiers import exact

result = stage("exact")
print(stage_report(result))

# %% [markdown]
# ## 1. One gradient step: exact ΔL(P1) vs its bounds
# The SFT step of scenario 0 with s = 4 hard tokens per example. With P1 modeled exactly the
# Jensen bound is 0 and ΔL grows like λ² (second order); with P1 mis-modeled the first-order term
# A·λ appears. The TV bound Aλ + Bλ²/8 is the curve whose root gives the predicted λ_max.

# %%
curves = pd.concat([scenario_step_curve(0, s=4, p1=p1) for p1 in ("exact", "mismodeled")])
_ = save_figure(plot_bounds_along_lambda(curves), "nb01_exact_bounds_along_lambda", show=True)

# %% [markdown]
# ## 2-3. The claims and the stage's figures
# Identities and bounds that hold for any model are code-checks (checks of the implementation, listed
# in the report apart); the claims are judged from their intervals.

# %%
exact.figures(result, saver("nb01_", show=True))
claims(result)
