# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.0
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Theorem 3.2: how the safe step size λ_max scales with ε and s
#
# The paper: λ_max ∝ ε/√s. Our working formalization (theory.md C2) expects λ_max ≈ ε/A when the
# general data are mis-modeled (first order) and λ_max ≈ √(8ε/B) when they are modeled exactly
# (second order). Two tiers measure it:
#
# - the exact tier (`talr_theory.tiers.exact`): kernel-softmax scenarios, exact λ_max by root
#   finding, both P1 variants, bootstrap over scenario instances;
# - the synthetic tier (`talr_theory.tiers.synthetic`): one SGD / AdamW step of a tiny Llama on a
#   domain batch with s hard tokens per example, exact ΔL(P1), bootstrap over (s, batch, domain rule).
#
# SFT's exponent of s regresses on the measured s, TALR's on its effective s = Σ w(1−p). The verdict
# of each exponent (paper value, alternative, interval) comes from `talr_theory.verdicts`.

# %%
import os

import pandas as pd

from talr_theory.plotting import save_figure
from talr_theory.tiers import exact, synthetic

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
results = {}
for tier in (exact, synthetic):
    cfg = tier.Config.quick() if QUICK else tier.Config()
    results[tier.NAME] = tier.run(cfg, progress=False)
    print(results[tier.NAME].info["summary"])

# %%
rows = [v.to_dict() for r in results.values() for v in r.verdicts if v.claim.startswith("thm3.2_")]
pd.DataFrame(rows)[["tier", "claim", "estimate", "ci_lo", "ci_hi", "paper_value", "alternative_value", "verdict"]]

# %%
for r in results.values():
    print(r.tier, "tier: λ_max power-law fits")
    print(r.frames["lambda_max_fits"].to_string(index=False))

# %%
exact.figures(results["exact"], lambda fig, name: save_figure(fig, "nb04_" + name))
synthetic.figures(results["synthetic"], lambda fig, name: save_figure(fig, "nb04_" + name))
