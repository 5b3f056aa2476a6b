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
# # 03 — Theorem 3.1 in the synthetic lab
#
# A tiny Llama pretrained on a known Markov source, so ΔL(P1) is exact. The stage
# `talr_theory.tiers.synthetic` fine-tunes it on domains with s hard tokens per example at several
# learning rates, reads every trajectory at common domain gains Δ* and judges three claims: the
# slope of log ΔL(P1) on log λ at fixed Δ* (Theorem 3.1's form puts it in (0, 1]), whether the
# smallest LR costs less than the largest at equal gain, and TALR vs SFT at equal gain.
#
# This notebook reads the stage stored by `talr-theory reproduce --out R` (`TALR_RESULTS=R`), or runs
# the quick stage in memory without one. The printed text is the stage's section of the report.
# The safe-LR advisor validated on held-out runs is the `advisor` stage (notebook 05).

# %%
from talr_theory.explore import claims, stage, stage_report
from talr_theory.plotting import saver
from talr_theory.tiers import synthetic

result = stage("synthetic")
print(stage_report(result))

# %% [markdown]
# ## The Theorem 3.1 claims
# Each row is a verdict: estimate and 95% interval, the paper's value, the alternative, and the word
# the one rule gives.

# %%
claims(result, ("thm3.1_", "talr_vs_sft_"))

# %% [markdown]
# ## Figures
# ΔL(P1) against Δ* per learning rate (the envelope of Theorem 3.1), ΔL(P1) against λ at fixed Δ*,
# and the one-step λ_max of Theorem 3.2 (notebook 04 compares it with the exact tier).

# %%
synthetic.figures(result, saver("nb03_", show=True))
