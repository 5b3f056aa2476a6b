"""The exact tier: the paper's information-theoretic statements on models small enough to compute exactly.

Modules, in reading order (all float64, log-space):

- ``codelength``   token trees / autoregressive models over a small vocabulary; code length and
                   ΔL(P) in four forms (code length, KL difference, token-tree sum, tilt form).
- ``tilt``         one step as an exact exponential tilt: exact ΔL, Jensen lower bound, Hoeffding and
                   TV upper bounds, the quadratic A·λ + (B/8)·λ² and λ_max (predicted vs exact root).
- ``steps``        gradient steps of tabular (leak-free) and kernel / linear softmax (leaking) models;
                   SFT, TALR and DFT as one step with different token weights; TALR's effective s.
- ``scenario``     a kernel-softmax model with general data P1 (exactly modeled or mis-modeled) and a
                   domain set with exactly s hard targets per example.
- ``trajectories`` multi-step training at step size λ, recorded as (Δ*, ΔL(P1)).
- ``envelope``     Theorem 3.1: common-Δ* interpolation, tightest envelope LP, β scan, hold-out check.
- ``lambda_max``   Theorem 3.2: λ_max(ε) by root finding, power-law regression with bootstrap CIs.
- ``symbolic``     sympy derivations (cumulant expansion, TALR Lagrangian, λ_max root, NTK step).
- the exact tier that runs all of the above as an experiment is the stage ``talr_theory.tiers.exact``.
"""
