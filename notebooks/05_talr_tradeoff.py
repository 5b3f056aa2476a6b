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
# # TALR vs SFT: the domain/general trade-off
#
# Does token-adaptive reweighting buy general-capability preservation at the same domain gain?
# One step of TALR is much safer than one step of SFT (its effective s is small, see notebook 04),
# but TALR also learns the hard tokens much more slowly, so the fair comparison is at **equal
# domain gain** (Theorem 3.1's setting). Quick mode runs this in the synthetic lab (exact ΔL);
# full mode also runs the real-LLM tier on the embedded SmolLM2-135M-Instruct + medcalc-synth
# (ΔL(P1) = KL(q0‖qθ) on base-model samples).

# %%
import os

import pandas as pd

from talr_theory.lab.domains import DomainConfig, domain_nll, make_domain_examples
from talr_theory.lab.empirical import run_trajectory
from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads
from talr_theory.plotting import lab as plots
from talr_theory.theory.envelope import interpolate_at_common_delta

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
RUNS = {"sft": (0.01, 0.04), "talr": (0.2, 0.8)} if QUICK else {"sft": (0.005, 0.01, 0.02, 0.04),
                                                                 "talr": (0.1, 0.2, 0.4, 0.8)}
STEPS = 30 if QUICK else 80

# %%
rows = []
with torch_threads(1):
    source, model, _ = load_pretrained()
    general = ExactGeneralEvaluator(source, model)
    train_ex = make_domain_examples(source, DomainConfig(s=2), 24, seed=0)
    eval_ex = make_domain_examples(source, DomainConfig(s=2), 32, seed=1, prefix="eval")
    for method, lrs in RUNS.items():
        for lr in lrs:
            rows.append(run_trajectory(model, train_ex, method, lr, STEPS, 3, general.delta_L,
                                       lambda m: domain_nll(m, eval_ex)))
traj = pd.concat(rows, ignore_index=True)
plots.save(plots.tradeoff(traj, "delta_L", "Synthetic lab: last checkpoint per method and LR"), "nb05_tradeoff")

# %%
# ΔL(P1) at equal domain gains (the largest gain every run reaches), per method and LR
trajs = [(f"{m}@{lr:g}", g.sort_values("step")["delta_star"].to_numpy(), g.sort_values("step")["delta_L"].to_numpy())
         for (m, lr), g in traj.groupby(["method", "lr"])]
reach = min(t[1].max() for t in trajs)
grid = [reach / 3, 2 * reach / 3, reach]
at_gain = interpolate_at_common_delta([(k, ds, dl) for k, (_, ds, dl) in enumerate(trajs)], grid)
at_gain["run"] = at_gain["trajectory"].map(lambda k: trajs[k][0])
at_gain.pivot(index="run", columns="delta_star", values="delta_L")

# %%
if not QUICK:
    from talr_theory.tiers import llm as llm_tier

    llm = llm_tier.run(llm_tier.Config())
    print(llm.frames["comparison"])
    for v in llm.verdicts:
        print(v.sentence())
