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
# # Domain gain vs general degradation: TALR and the baselines (Tables 1–2 / Fig. 1–2 analog)
#
# A small sweep over methods × learning rates with the package's one training core
# (`talr_theory.training`). At each checkpoint we record
#
# - **Δ\*** — domain gain: how many nats per held-out domain example the fine-tuned model saves
#   compared with the base model (the code-length reduction of Theorem 3.1);
# - **ΔL(P1)** — general degradation, two ways: the change of mean token NLL on real general text
#   (WikiText-2 from `../shared`, else a short built-in passage) and KL(q0‖qθ) on samples drawn from
#   the base model (then P1 = q0 exactly; Monte Carlo with a standard error);
# - the fraction of target tokens with p > 0.2 (the paper's Fig. 3c statistic) and TALR's mean weight.
#
# This is a tiny model (stories260K, 0.3M parameters, from `../shared`; a random-init tiny Llama when
# absent), a synthetic medical-calculation domain, and AdamW — not the paper's 3–4B models and
# benchmarks. Read the numbers as a working demonstration of the measurement, not as a reproduction.

# %%
import os
import tempfile

import pandas as pd

from talr_theory.paths import figures_dir, shared_file
from talr_theory.plotting.training import (
    format_tradeoff_table,
    plot_dynamics,
    plot_frac_easy,
    plot_tradeoff,
    tradeoff_table,
)
from talr_theory.training.config import TrainConfig
from talr_theory.training.sweep import SweepConfig, run_sweep

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
MODEL = "stories260k" if shared_file("models/stories260K.gguf") else "tiny-random"
OUT = tempfile.mkdtemp(prefix="talr_sweep_") if QUICK else "../runs/notebook_03"
config = SweepConfig(
    model=MODEL,
    data="medcalc-synth:60" if QUICK else "medcalc-synth",
    format="label",
    methods=("sft", "talr") if QUICK else ("sft", "talr", "dft", "flow", "l2", "lora", "wise-ft"),
    lrs=(1e-3, 1e-2) if QUICK else (3e-4, 1e-3, 3e-3),
    seeds=(0,),
    n_train=8 if QUICK else 64,
    n_eval=4 if QUICK else 32,
    max_length=512,
    general_blocks=2 if QUICK else 16,
    n_samples=4 if QUICK else 16,
    sample_len=16 if QUICK else 64,
    train_probe=4 if QUICK else 16,
    out=OUT,
    train=TrainConfig(steps=4 if QUICK else 60, eval_every=2 if QUICK else 10, batch_size=4 if QUICK else 8,
                      optimizer="adamw", wise_alphas=(0.5,)),
)
print(MODEL, OUT)

# %%
summary = run_sweep(config, progress=False)
frame = pd.read_parquet(os.path.join(OUT, "results.parquet"))
print(f"{len(frame)} rows; base model: domain NLL {summary.get('baseline', {}).get('domain_nll', float('nan')):.3f} "
      "nats/token")

# %% [markdown]
# ## The trade-off table (last checkpoint, per method and learning rate)
# `delta_star` in nats per held-out example (higher = more domain gain); `delta_L_text` in nats per
# token on real text and `kl_base` in nats per base-model sample (lower = less forgetting).

# %%
table = tradeoff_table(frame)
print(format_tradeoff_table(table))

# %%
fig = plot_tradeoff(frame)
fig.savefig(figures_dir() / "training_tradeoff.png", dpi=120, bbox_inches="tight")

# %% [markdown]
# ## Dynamics: Δ* and ΔL(P1) along training
# These trajectories are what the Theorem 3.1 envelope check interpolates at common Δ*.

# %%
fig = plot_dynamics(frame)
fig.savefig(figures_dir() / "training_dynamics.png", dpi=120, bbox_inches="tight")

# %% [markdown]
# ## Fraction of easy target tokens (p > 0.2) over epochs (Fig. 3c analog)

# %%
fig = plot_frac_easy(frame)
fig.savefig(figures_dir() / "training_frac_easy.png", dpi=120, bbox_inches="tight")

# %% [markdown]
# ## Caveats
# - With AdamW the per-parameter normalization largely cancels a global rescaling of the loss, so
#   TALR's mean weight acts less like a smaller step size than it would under SGD.
# - TALR's median τ is taken per micro-batch; with gradient accumulation it differs from the
#   median of the full optimizer-step batch.
# - Δ* and ΔL are measured on a handful of examples here; the KL column comes with its standard error.
