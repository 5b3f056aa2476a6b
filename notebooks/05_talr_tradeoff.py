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
# # 05 — TALR vs SFT: when does reweighting pay, and the safe-LR advisor
#
# Does token-adaptive reweighting buy general-capability preservation at the same domain gain?
# One step of TALR is much safer than one step of SFT (its effective s is small, see notebook 04),
# but TALR also learns the hard tokens more slowly, so the fair comparison is at **equal domain gain**
# (Theorem 3.1's setting). Four stages answer it; this notebook reads them from `TALR_RESULTS` (a
# `talr-theory reproduce --out` folder) or runs them quick in memory:
#
# - `synthetic`: TALR vs SFT at equal gain with exact ΔL(P1);
# - `talr_map`: the map of equal-gain degradation ratios over easy-token confidence, `w_min`, the τ
#   rule, the shared leakage and the kind of hard targets, with the sign predicted by the linearised
#   condition of `theory/reweighting.py`;
# - `advisor`: the safe-LR advisor validated on held-out runs;
# - `llm`: the same advisor check on a real model's SFT runs.

# %%
import pandas as pd

from talr_theory.explore import claim_lines, stage, stage_report
from talr_theory.plotting import save_figure, saver
from talr_theory.tiers import advisor, llm, talr_map

print(claim_lines(stage("synthetic"), "talr_vs_sft_"))

# %% [markdown]
# ## The map: where does TALR win?
#
# Each cell: ΔL(P1) of TALR (or DFT) divided by SFT's at the same domain gain, geometric mean over
# seeds and gains, with a bootstrap interval over seeds (each seed is a new random scenario). The
# label is the shared verdict rule: *wins* = the interval lies below 1, *loses* = above 1.

# %%
tm = stage("talr_map")
print(stage_report(tm))
talr_map.figures(tm, saver("nb05_", show=True))

# %% [markdown]
# ## Does the linearised condition predict the sign?
#
# `theory/reweighting.py` predicts C_TALR(D)/C_SFT(D) from the step directions at θ0. It says nothing
# about step size, so it is tested in the **near-flow** regime (every run cut into many steps); at the
# equal step size of the map, SFT takes a few large steps and pays a finite-step cost that TALR's
# smaller weights avoid.

# %%
pd.DataFrame([{"regime": "near_flow", **tm.info["sign_agreement"]},
              {"regime": "equal_lr", **tm.info["sign_agreement_equal_lr"]}]).drop(columns="disagreeing_cells")

# %% [markdown]
# ## The safe-LR advisor on held-out runs
#
# For each (scenario, seed, ε) the advisor runs its pilots and certifies an LR only inside the measured
# pilot range; a fresh run at that LR checks ΔL(P1) ≤ ε, and a dense held-out LR grid gives the true
# largest safe LR.

# %%
adv = stage("advisor")
print(stage_report(adv))
advisor.figures(adv, saver("nb05_", show=True))

# %% [markdown]
# ## The safe-LR advisor on a real model
#
# The same held-out check on the `llm` stage's SFT runs: pilots at the stage's LRs with its seeds, a
# held-out grid with another seed. **At the quick scale the model is `tiny-random` (random weights):
# a pipeline check only, its numbers say nothing about the advisor.**

# %%
real = stage("llm")
for name, fig in llm.advisor_figures(real).items():
    save_figure(fig, "nb05_" + name, show=True)
real.info.get("advisor_validation")
