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
# # 04 — Theorem 3.2: how the safe step size λ_max scales with ε and s
#
# The paper: λ_max ∝ ε/√s. Our working formalization (theory.md C2) expects λ_max ≈ ε/A when the
# general data are mis-modeled (first order) and λ_max ≈ √(8ε/B) when they are modeled exactly
# (second order). Two stages measure it:
#
# - `exact`: kernel-softmax scenarios, exact λ_max by root finding, both P1 variants, bootstrap over
#   scenario instances;
# - `synthetic`: one SGD / AdamW step of a tiny Llama on a domain batch with s hard tokens per
#   example, exact ΔL(P1), bootstrap over (s, batch, domain rule).
#
# SFT's exponent of s regresses on the measured s, TALR's on its effective s = Σ w(1−p). Both stages
# are read from `TALR_RESULTS` (a `talr-theory reproduce --out` folder) or run quick in memory.

# %%
import pandas as pd

from talr_theory import tiers
from talr_theory.explore import claim_lines, claims, stage
from talr_theory.plotting import save_figure

results = {name: stage(name) for name in ("exact", "synthetic")}
for r in results.values():
    print(claim_lines(r, "thm3.2_"))
pd.concat([claims(r, "thm3.2_") for r in results.values()], ignore_index=True)

# %% [markdown]
# ## The power-law fits behind the exponents
# One row per fitted group: the exponents of ε and s with their intervals.

# %%
for r in results.values():
    print(r.tier, "stage: λ_max power-law fits")
    print(r.frames["lambda_max_fits"].to_string(index=False))

# %% [markdown]
# ## λ_max against ε (and s), both stages
# Slope 1 on these log-log axes is the paper's ε¹; slope ½ is the second-order regime.

# %%
for r in results.values():
    for name, fig in tiers.module(r.tier).lambda_max_figures(r).items():
        save_figure(fig, "nb04_" + name, show=True)
