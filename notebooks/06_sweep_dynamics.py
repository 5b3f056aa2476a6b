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
# # 06 — Domain gain vs general degradation on a real model (Tables 1–2 / Fig. 1–2 analog)
#
# The `llm` stage fine-tunes a real pretrained LLM (SmolLM2-135M-Instruct at the default scale; a
# random-weight `tiny-random` model at the quick scale, a pipeline check only) on a learnable facts
# domain with SFT, TALR and the baselines, with the package's one training core. Along each run it
# records
#
# - **Δ\*** — domain gain in nats per held-out domain example (the code-length reduction of Theorem 3.1);
# - **ΔL(P1)** — general degradation as KL(q0‖qθ) on samples of the base model (then P1 = q0 exactly)
#   and as the change of NLL on real general text;
#
# and compares the methods at equal domain gain, then measures λ_max on one-step lines (Theorem 3.2)
# and the hard-token vs easy-token ablation. This notebook reads the stage from `TALR_RESULTS` (a
# `talr-theory reproduce --out` folder) or runs it quick in memory. For a free-standing sweep of any
# model, data and method grid, use `talr-theory sweep` (docs/training.md).

# %%
from talr_theory.explore import claims, stage, stage_report
from talr_theory.plotting import saver
from talr_theory.tiers import llm

result = stage("llm")
print(stage_report(result))

# %% [markdown]
# ## The claims
# One verdict per row: estimate with its 95% interval, the paper's value, the alternative, the word.

# %%
claims(result)

# %% [markdown]
# ## Methods at the paper's protocol
# Each method against SFT at the same learning rate and epochs: domain accuracy and ΔL(P1) as paired
# differences over seeds and held-out units (lower ΔL is less forgetting).

# %%
result.frames["methods"]

# %% [markdown]
# ## Figures: trajectories, methods at equal gain, λ_max, hard vs easy tokens

# %%
llm.figures(result, saver("nb06_", show=True))
