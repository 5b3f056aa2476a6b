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
# # 02 — Token difficulty and the estimate of s
#
# The paper's token analysis: score every supervised response token of an SFT dataset by its
# teacher-forced probability p(x_t | prompt, x_<t) under the model *before* fine-tuning. The paper
# reports that most tokens are easy (medians near 1) and a sparse set is hard, and that label-only
# supervision has fewer hard tokens than chain-of-thought. Theorem 3.2 puts
# s = E[#tokens with p < θ per example] under the square root of the safe step size, so the `tokens`
# stage estimates s(θ) for several θ (the paper does not fix θ), with bootstrap CIs over examples.
#
# Model: the embedded default SmolLM2-135M-Instruct. **It is a 135M-parameter model, far smaller than
# the paper's 3–4B models, so its token probabilities are less extreme**: expect lower medians and more
# hard tokens than the paper's figures. Data: `medcalc-synth` (always available) and, with
# `talr-theory reproduce --medcalc-csv ...`, the MedCalc-Bench test CSV — each in CoT and label-only form.
#
# The stage is read from `TALR_RESULTS` (a `talr-theory reproduce --out` folder), or run quick in memory.

# %%
import os
import tempfile

import pandas as pd
from IPython.display import HTML, display

from talr_theory.explore import TuneConfig, base_vs_tuned, hardest, stage, stage_report, token_summaries, token_view
from talr_theory.plotting import save_figure, saver
from talr_theory.plotting.training import plot_frac_easy_by_base
from talr_theory.tiers import tokens
from talr_theory.tokens.view import iframe

result = stage("tokens")
print(stage_report(result))

# %% [markdown]
# ## Per scan: how easy are the target tokens?
# Median and quartiles of p, and the share of tokens with p > 0.2 with a bootstrap CI over examples.

# %%
display(token_summaries(result).round(3))
tokens.figures(result, saver("nb02_", show=True))

# %% [markdown]
# ## Where the hard tokens sit
# The lowest-probability CoT tokens. In the paper the hard tokens are domain concepts (e.g. conversion
# factors); here, look for the numbers the model cannot know in advance (results of arithmetic, values
# copied from the note) versus formula words.

# %%
hardest(result, k=15)

# %% [markdown]
# ## The token view and base vs tuned (set `TALR_DEEP=1`: they load the model and train)
# The token view colours every target token by p (hover: rank, top-3 alternatives, whether it counts
# towards s(θ)); `talr-theory tokens ... --html OUT.html` writes the same page. Then a short SFT run on
# label-only medcalc-synth (stories260K from `../shared`), scored base vs tuned on the held-out set: the
# change of s(θ) with a paired CI, and the share of easy tokens split by how the base model found them
# (the paper's Fig. 3c). CLI: `talr-theory tokens --model BASE --compare-model CHECKPOINT --html delta.html`.

# %%
if os.environ.get("TALR_DEEP", "0") == "1":
    display(HTML(iframe(token_view(result, limit=6), height=650)))
    tuned = base_vs_tuned(TuneConfig(), tempfile.mkdtemp(prefix="talr_02_"))
    display(tuned.s_change.round(3), pd.DataFrame(tuned.compare["movers"]["easier"]).round(4))
    save_figure(plot_frac_easy_by_base(tuned.frame), "nb02_frac_easy_by_base", show=True)
    display(HTML(iframe(tuned.page, height=500)))

# %% [markdown]
# ## Reading the results
#
# - **s(θ) is a count per example, so it grows with response length.** CoT responses are many
#   times longer than label-only ones; even when most CoT tokens are easy, the CoT *count* of hard
#   tokens is larger. That is the quantity in Theorem 3.2, and it is why label-only data should
#   tolerate larger learning rates in the paper's analysis.
# - **Medians:** the CoT median p above is what a 135M model gives; the paper's 3–4B models put
#   medians near 1.0. A larger model shifts the whole distribution up; the sparse tail remains.
# - **Label-only tokens are individually harder** (the answer digits must be produced without
#   reasoning), so the label-only median p can be lower than CoT's even though its s is smaller.
# - θ is not fixed by the paper: read several thresholds and check that conclusions do not hinge on one.
# - **Base vs tuned:** fine-tuning mostly raises the probability of tokens that started hard while
#   tokens that started easy stay easy; the paired CI of the change in s(θ) says whether the drop in
#   hard tokens is larger than example-to-example noise.
