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
# # Theorem 3.1 on a real transformer: ΔL(P1) ≤ k1·Δ* + k2·Δ*²·λ
#
# The synthetic tier (`talr_theory.tiers.synthetic`): a tiny Llama pretrained on a known sparse
# Markov source P1, so the general degradation ΔL(P1) = Σ_z P1(z)[log q0(z) − log qθ(z)] is an
# **exact** sum over every sequence the source can emit. The domain has s "concept" tokens per
# example that P1 never emits (the hard tokens). The tier fine-tunes SFT and TALR at several
# learning rates, reads every trajectory at common domain gains Δ* and judges three claims: the
# slope of log ΔL(P1) on log λ at fixed Δ* (Theorem 3.1's form puts it in (0, 1]), whether the
# smallest LR costs less than the largest at equal gain, and TALR vs SFT at equal gain. Every
# comparison with the paper below is a verdict computed by the rule in `talr_theory.verdicts`.

# %%
import os

import pandas as pd

from talr_theory.lab.advisor import validate_in_synthetic
from talr_theory.plotting import lab as plots
from talr_theory.plotting import save_figure
from talr_theory.tiers import synthetic

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
cfg = synthetic.Config.quick() if QUICK else synthetic.Config()
result = synthetic.run(cfg, progress=False)
print(result.info["summary"])

# %%
claims = ("thm3.1_", "talr_vs_sft_")
pd.DataFrame([v.to_dict() for v in result.verdicts if v.claim.startswith(claims)])[
    ["claim", "quantity", "estimate", "ci_lo", "ci_hi", "paper_value", "verdict"]]

# %%
for v in result.verdicts:
    if v.claim.startswith(claims):
        print(v.sentence())
for note in result.info["notes"]:
    print("-", note)

# %%
synthetic.figures(result, lambda fig, name: save_figure(fig, "nb03_" + name))

# %% [markdown]
# ## The safe-LR advisor, validated on held-out runs
#
# Pilot at three LRs → fit ΔL(P1) ≈ a + b·λ at the requested gain → recommended LR for each ε.
# Every recommended LR (and two more held-out LRs) is then trained from scratch and its exact
# ΔL(P1) at the same gain is compared with the prediction.

# %%
validation = validate_in_synthetic(quick=QUICK)
save_figure(plots.advisor_validation(validation), "nb03_advisor_validation")
validation
