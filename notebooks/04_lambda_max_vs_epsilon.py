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
# The paper: λ_max ∝ ε/√s. Our working formalization (theory.md C2) predicts λ_max ≈ ε/A when the
# general data are mis-modeled (first order) and λ_max ≈ √(8ε/B) when they are modeled exactly
# (second order). Here one optimizer step θ0 − λ·d is taken on a synthetic domain batch with s hard
# tokens per example and λ_max(ε) is found by root-finding on the exact ΔL(P1). The exponents come
# from a log-log fit with bootstrap CIs over random domain batches; SGD vs AdamW (AdamW's first
# step is sign-like), SFT vs TALR (TALR plotted against its effective s = Σ w(1−p)).

# %%
import os

import pandas as pd

from talr_theory.lab.domains import DomainConfig, make_domain_examples
from talr_theory.lab.empirical import LineModel, lambda_max_curve, objective_gradient, step_direction
from talr_theory.lab.synthetic import ExactGeneralEvaluator, load_pretrained, torch_threads
from talr_theory.plotting import lab as plots
from talr_theory.theory.lambda_max import fit_lambda_max_scaling

QUICK = os.environ.get("TALR_QUICK", "0") == "1"
S_VALUES = (1, 2, 4) if QUICK else (1, 2, 3, 4, 6)
EPSILONS = (1e-2, 1e-1) if QUICK else (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
GROUPS = 1 if QUICK else 3
UNITS = [("sft", "sgd"), ("talr", "sgd")] + ([] if QUICK else [("sft", "adamw")])

# %%
rows = []
with torch_threads(1):
    source, model, _ = load_pretrained()
    general = ExactGeneralEvaluator(source, model)
    for s in S_VALUES:
        for g in range(GROUPS):
            batch = make_domain_examples(source, DomainConfig(s=s), 24, seed=100 * g + s)
            for method, opt in UNITS:
                grads, stats = objective_gradient(model, batch, method)
                line = LineModel(model, step_direction(grads, opt))
                for r in lambda_max_curve(line, general.delta_L, EPSILONS, rtol=1e-4):
                    rows.append({**r, "s": s, "group": f"{s}/{g}", "method": method, "optimizer": opt,
                                 "measured_s": stats["n_hard_0.2"], "effective_s": stats["sum_w_1mp"]})
lam = pd.DataFrame(rows)
lam.head()

# %%
fits = {}
for (method, opt), sub in lam.groupby(["method", "optimizer"]):
    fits[f"{method}/{opt}"] = fit_lambda_max_scaling(
        sub, n_boot=300, s_column="effective_s" if method == "talr" else "measured_s")
pd.DataFrame(fits).T[["eps_exponent", "eps_exponent_ci", "s_exponent", "s_exponent_ci", "regime"]]

# %%
plots.save(plots.lambda_max_vs_eps(lam, "λ_max(ε) after one step (synthetic lab)"), "nb04_lambda_max_vs_eps")
plots.save(plots.lambda_max_vs_s(lam, title="λ_max vs s (synthetic lab)"), "nb04_lambda_max_vs_s")
for name, fit in fits.items():
    print(name, "—", fit["regime_explanation"])
