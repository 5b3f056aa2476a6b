"""The stages of ``talr-theory reproduce``, one module each, all following ``tiers.protocol``.

The three tiers of the theory check — ``exact`` (closed-form token models), ``synthetic`` (a tiny
transformer pretrained on a known source, exact ΔL(P1)) and ``llm`` (a real pretrained LLM) — plus
the stages built on them: ``talr_map`` (when TALR beats SFT), ``advisor`` (the safe-LR advisor on
held-out runs) and ``tokens`` (token difficulty). Each module has ``NAME``, ``Config`` (with
``quick()``), ``run(cfg, out) -> TierResult`` and ``figures(result, save)``.

A new tier is one new module here plus its name in ``STAGES``.

Stages store, everything else reads: :func:`load_or_run` returns the result stored under
``OUT/stages/<name>/`` by ``talr-theory reproduce --out OUT`` when its fingerprint matches the
requested config, and runs (and stores) the stage otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path

STAGES = ("exact", "synthetic", "talr_map", "advisor", "tokens", "llm")

# Options of a whole run that a stage's Config takes when it has a field of that name.
RUN_WIDE = ("model", "medcalc_csv")


def module(name: str):
    """The stage module ``talr_theory.tiers.<name>``."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"talr_theory.tiers.{name}")


def check_stage(name: str) -> None:
    """Raise TypeError naming every way the stage module departs from the protocol (static part).

    The protocol: ``NAME`` equal to the module's name, a dataclass ``Config`` with a ``quick(seed)``
    classmethod and a ``seed`` field, and callables ``run(cfg, out, progress)`` and ``figures(result, save)``.
    """
    mod = module(name)
    problems = []
    if getattr(mod, "NAME", None) != name:
        problems.append(f"NAME is {getattr(mod, 'NAME', None)!r}, not {name!r}")
    cfg = getattr(mod, "Config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        problems.append("Config is missing or not a dataclass")
    else:
        if not callable(getattr(cfg, "quick", None)):
            problems.append("Config has no quick() constructor")
        if "seed" not in {f.name for f in dataclasses.fields(cfg)}:
            problems.append("Config has no seed field")
    problems += [f"{fn}() is missing" for fn in ("run", "figures") if not callable(getattr(mod, fn, None))]
    if problems:
        raise TypeError(f"stage {name!r} breaks the protocol: " + "; ".join(problems))


def checked_result(name: str, result):
    """``result`` when it is a TierResult of stage ``name``; TypeError otherwise."""
    from talr_theory.tiers.protocol import TierResult

    if not isinstance(result, TierResult):
        raise TypeError(f"stage {name!r}: run() returned {type(result).__name__}, not a TierResult")
    if result.tier != name:
        raise TypeError(f"stage {name!r}: run() returned the result of tier {result.tier!r}")
    return result


def stage_config(name: str, quick: bool = False, seed: int = 0, **run_wide):
    """The stage's Config at the requested scale, with the run-wide options (``RUN_WIDE``) it has fields for.

    An option left ``None`` keeps the stage's own default (e.g. the quick llm stage's tiny model).
    """
    unknown = set(run_wide) - set(RUN_WIDE)
    if unknown:
        raise TypeError(f"unknown run-wide options {sorted(unknown)}; expected some of {', '.join(RUN_WIDE)}")
    mod = module(name)
    cfg = mod.Config.quick(seed=seed) if quick else mod.Config(seed=seed)
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in run_wide.items() if k in names and v is not None})


def run_options(out: str | os.PathLike | None) -> dict:
    """The scale, seed and run-wide options ``reproduce`` recorded in ``OUT/summary.json`` ({} when none)."""
    path = Path(out) / "summary.json" if out is not None else None
    if path is None or not path.is_file():
        return {}
    config = json.loads(path.read_text()).get("config") or {}
    return {k: config[k] for k in ("quick", "seed", *RUN_WIDE) if k in config}


def load_or_run(name: str, out: str | os.PathLike | None = None, quick: bool | None = None,
                seed: int | None = None, progress: bool = False, **run_wide):
    """The stage's TierResult: read from ``OUT/stages/<name>/`` when its fingerprint matches, else run and stored.

    Options left ``None`` follow the run recorded in ``OUT/summary.json`` (so a notebook pointed at a
    ``reproduce`` folder asks for exactly the config that run stored); without one, the quick scale and
    seed 0. Without ``out`` nothing is read or written: the stage runs in memory.
    """
    from talr_theory.tiers.protocol import StageStore

    given = {"quick": quick, "seed": seed, **run_wide}
    opts = {"quick": True, "seed": 0, **run_options(out), **{k: v for k, v in given.items() if v is not None}}
    cfg = stage_config(name, bool(opts.pop("quick")), int(opts.pop("seed")), **opts)
    check_stage(name)
    mod = module(name)
    if out is None:
        return checked_result(name, mod.run(cfg, None, progress=progress))
    return StageStore(out).run(name, cfg, lambda: checked_result(name, mod.run(cfg, out, progress=progress)))
