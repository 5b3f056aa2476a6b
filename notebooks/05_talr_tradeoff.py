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
#
# Then **when** TALR beats SFT: the map of equal-gain degradation ratios over easy-token confidence,
# `w_min`, the τ rule, the shared leakage and the kind of hard targets (exact tier, `talr_map` stage),
# with the sign predicted by the linearised condition of `theory/reweighting.py`; and the safe-LR
# advisor validated on held-out runs (`advisor` stage), then on the real model's SFT runs.

# %%
import os

import pandas as pd

from talr_theory.lab.domains import DomainConfig, domain_nll, make_domain_examples
from talr_theory.lab.empirical import run_trajectory
from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads
from talr_theory.plotting import lab as plots
from talr_theory.plotting import talr_map as map_plots
from talr_theory.theory.envelope import interpolate_at_common_delta
from talr_theory.tiers import advisor, talr_map

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

# %% [markdown]
# ## The map: where does TALR win?
#
# Each cell: ΔL(P1) of TALR (or DFT) divided by SFT's at the same domain gain, geometric mean over
# seeds and gains, with a bootstrap interval over seeds (each seed is a new random scenario). The
# label is the shared verdict rule: *wins* = the interval lies below 1, *loses* = above 1, *?* =
# uninformative.

# %%
tm = talr_map.run(talr_map.Config.quick() if QUICK else talr_map.Config(), progress=False)
cells = tm.frames["cells"]
for p1 in sorted(cells["p1"].unique()):
    plots.save(map_plots.ratio_heatmap(cells[cells["p1"] == p1], title=f"Equal-gain ratio vs SFT (P1 {p1})"),
               f"nb05_talr_map_{p1}")
print("\n".join(tm.info["notes"]))
cells[["method", "w_min", "tau_rule", "easy_p", "common", "hard", "p1", "ratio", "ci_lo", "ci_hi", "verdict",
       "predicted_win_fraction"]]

# %% [markdown]
# ## Does the linearised condition predict the sign?
#
# `theory/reweighting.py` predicts C_TALR(D)/C_SFT(D) from the step directions at θ0. It says nothing
# about step size, so it is tested in the **near-flow** regime (every run cut into ≥ 25 steps); at the
# equal step size of the map, SFT takes a few large steps and pays a finite-step cost that TALR's
# smaller weights avoid. Points in the lower-left and upper-right quadrants agree.

# %%
both = pd.concat([cells, tm.frames["near_flow_cells"]], ignore_index=True)
plots.save(map_plots.condition_check(both, flow_min_steps=tm.config["flow_min_steps"]), "nb05_talr_map_condition")
pd.DataFrame([{"regime": "near_flow", **tm.info["sign_agreement"]},
              {"regime": "equal_lr", **tm.info["sign_agreement_equal_lr"]}]).drop(columns="disagreeing_cells")

# %% [markdown]
# ## The safe-LR advisor on held-out runs
#
# For each (scenario, seed, ε) the advisor runs its pilots (plus at most two extra pilots when ε is not
# bracketed) and certifies an LR only inside the measured pilot range; a fresh run at that LR checks
# ΔL(P1) ≤ ε, and a dense held-out LR grid gives the true largest safe LR.

# %%
adv = advisor.run(advisor.Config.quick() if QUICK else advisor.Config(), progress=False)
plots.save(map_plots.advisor_cases(adv.frames["cases"]), "nb05_advisor_held_out")
print("\n".join(adv.info["notes"]))
adv.info["validation"]

# %%
from talr_theory.tiers import llm as llm_tier

if not QUICK:
    llm = llm_tier.run(llm_tier.Config())
    print(llm.frames["comparison"])
    for v in llm.verdicts:
        print(v.sentence())

# %% [markdown]
# ## The safe-LR advisor on a real model
#
# The same held-out check on the real-model tier's SFT runs (`talr-theory advise --validate --on llm`):
# pilots = SFT at the tier's three LRs with one seed; the held-out grid = SFT at more LRs with another seed
# (another minibatch order), giving the true largest safe LR per ε; a new run at each certified LR checks
# ΔL(P1) ≤ ε, with ΔL(P1) = exact KL to the base model on its own samples. Full mode reads it from the tier
# run above (SmolLM2-135M). **Quick mode runs it on `tiny-random` (random weights): a pipeline check only,
# its numbers say nothing about the advisor.**

# %%
llm_adv = llm if not QUICK else llm_tier.run_advisor(llm_tier.Config.quick(), progress=False)
plots.save(map_plots.advisor_cases(llm_adv.frames["advisor_cases"],
                                   title=f"Safe-LR advisor on held-out SFT runs ({llm_adv.config['model']})"),
           "nb05_llm_advisor_held_out")
print("\n".join(n for n in llm_adv.info["notes"] if "advisor" in n))
llm_adv.info["advisor_validation"]
