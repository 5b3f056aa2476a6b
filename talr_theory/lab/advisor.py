"""Former home of the advisor; it now lives in ``talr_theory.advisor`` (rule, config, real-model backend).

Kept for the modules and notebooks that still import these names from here.
"""

from __future__ import annotations

from talr_theory.advisor.rule import (
    advise_from_trajectories,
    advise_with_pilots,
    held_out_cases,
    observed_at_gain,
)

__all__ = ["advise_from_trajectories", "advise_with_pilots", "held_out_cases", "observed_at_gain",
           "validate_in_synthetic"]


def validate_in_synthetic(quick: bool = True, seed: int = 0, progress: bool = True):
    """The ``advisor`` stage's cases (held-out runs in the synthetic lab): quick or default grid, not stored."""
    from talr_theory.tiers import advisor as stage

    cfg = stage.Config.quick(seed=seed) if quick else stage.Config(seed=seed)
    return stage.run(cfg, out=None, progress=progress).frames["cases"]
