"""The stages of ``talr-theory reproduce``, one module each, all following ``tiers.protocol``.

The three tiers of the theory check — ``exact`` (closed-form token models), ``synthetic`` (a tiny
transformer pretrained on a known source, exact ΔL(P1)) and ``llm`` (a real pretrained LLM) — plus
the stages built on them: ``talr_map`` (when TALR beats SFT), ``advisor`` (the safe-LR advisor on
held-out runs) and ``tokens`` (token difficulty). Each module has ``NAME``, ``Config`` (with
``quick()``), ``run(cfg, out) -> TierResult`` and ``figures(result, save)``.

A new tier is one new module here plus its name in ``STAGES``.
"""

from __future__ import annotations

import importlib

STAGES = ("exact", "synthetic", "talr_map", "advisor", "tokens", "llm")


def module(name: str):
    """The stage module ``talr_theory.tiers.<name>``."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"talr_theory.tiers.{name}")
