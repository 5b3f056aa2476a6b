"""The safe-learning-rate advisor: the largest LR expected to keep ΔL(P1) ≤ ε at a requested domain gain.

- ``advisor.rule``: the pure rule (pilot trajectories → bracket, chord, certification) and its check
  on held-out runs (``held_out_cases``); no model, no training.
- ``advisor.config``: ``AdviseConfig``, every setting of the real-model advisor; its fields are the
  flags of ``talr-theory advise`` (``talr_theory.configs`` turns a dataclass into checked flags).
- ``advisor.model``: the real-model backend (``advise_model(cfg)``): measured s, pilot runs, advice.

The advisor's validation in the synthetic lab is the ``advisor`` stage (``tiers.advisor``).
"""
