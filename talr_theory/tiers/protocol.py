"""The experiment protocol every tier follows, and the helpers the tiers share.

A tier is one module in ``talr_theory.tiers`` with

- ``NAME``: the tier's name (``exact``, ``synthetic``, ``llm``, ...);
- ``Config``: a dataclass holding every grid it uses, with ``Config.quick(seed)`` and ``Config(seed=...)``
  (the default scale) constructors;
- ``run(cfg, out) -> TierResult``: tidy DataFrames plus a list of :class:`~talr_theory.verdicts.Verdict`;
- ``figures(result, save)``: draws its figures through ``save(fig, name)``.

``reproduce`` runs the tiers through :class:`StageStore`, which stores each finished tier under
``OUT/stages/<name>/`` with a fingerprint of its config and the package version; a stored stage whose
fingerprint differs from the current one is never reused. Per-unit rows of a long tier go through
:func:`results_table`, whose folder name carries the same fingerprint, so rows of another
configuration can never be mixed in.

The claim verdicts the tiers share are built here from the statistics of
:mod:`talr_theory.tiers.measures` (equal-gain readings, paired ratios, slopes), always through
``claims.claim_verdict``: Theorem 3.1 both ways, Theorem 3.2's direction and its exponents (only
where λ_max is a power law in ε).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from talr_theory import __version__
from talr_theory.claims import claim_verdict
from talr_theory.configs import json_safe, to_dict
from talr_theory.results import ResultsTable
from talr_theory.tiers.measures import (
    PairedRatio,
    PowerLawShape,
    direction_ratios,
    fixed_gain_slopes,
    lr_pair_at_gain,
    paired_ratio,
    per_unit_mean_ci,
)
from talr_theory.verdicts import Verdict, code_check, verdict


@dataclass
class TierResult:
    """What one tier measured: tidy tables, verdicts, and scalar facts (setup, fitted constants, timings)."""

    tier: str
    config: dict
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return json_safe({"tier": self.tier, "config": self.config, "info": self.info,
                          "verdicts": [v.to_dict() for v in self.verdicts]})

    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            frame = frame.copy()
            for col in frame.columns:  # mixed-type object columns would break Parquet
                if frame[col].dtype == object:
                    frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(json_safe(v)))
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        (folder / "result.json").write_text(json.dumps(self.to_json(), indent=2, default=str))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TierResult:
        folder = Path(folder)
        data = json.loads((folder / "result.json").read_text())
        frames = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
        return cls(data["tier"], data["config"], frames, [Verdict.from_dict(v) for v in data["verdicts"]],
                   data.get("info") or {})


def fingerprint(config) -> str:
    """Hash of a resolved config (dataclass or dict) and the package version."""
    payload = {"config": to_dict(config) if not isinstance(config, dict) else config, "version": __version__}
    text = json.dumps(json_safe(payload), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageStore:
    """Run-once stages under ``OUT/stages/<name>/``; reuse only a stage whose fingerprint matches."""

    def __init__(self, out: str | os.PathLike):
        self.dir = Path(out) / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.resumed: list[str] = []
        self.discarded: list[str] = []

    def run(self, name: str, config, fn: Callable[[], TierResult]) -> TierResult:
        folder = self.dir / name
        fp = fingerprint(config)
        stamp = folder / "fingerprint.json"
        if stamp.exists():
            stored = json.loads(stamp.read_text())
            if stored.get("fingerprint") == fp:
                self.timings[name] = float(stored.get("seconds", 0.0))
                self.resumed.append(name)
                return TierResult.load(folder)
            warnings.warn(f"stage {name!r} in {folder} was computed with another config or package version "
                          f"(fingerprint {stored.get('fingerprint')} != {fp}); recomputing it", stacklevel=2)
            self.discarded.append(name)
        if folder.exists():
            shutil.rmtree(folder)
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.timings[name] = seconds
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        result.save(tmp)
        (tmp / "fingerprint.json").write_text(json.dumps({"fingerprint": fp, "version": __version__,
                                                          "seconds": seconds}))
        os.replace(tmp, folder)  # the stage counts as done only once everything is on disk
        # What was stored, not what was computed: a fresh run and a resumed one give the same values
        # (Parquet stores mixed object columns as JSON text), so the report and the readers agree.
        return TierResult.load(folder)


def results_table(out: str | os.PathLike | None, name: str, config, key_fields: Sequence[str]) -> ResultsTable | None:
    """A crash-safe per-unit table whose folder carries the config's fingerprint (None without ``out``)."""
    if out is None:
        return None
    return ResultsTable(Path(out) / "results" / f"{name}-{fingerprint(config)}", key_fields)


def stored_rows(done: pd.DataFrame | None, key: dict) -> list[dict] | None:
    """The rows of ``key``'s unit in ``done`` (a loaded results table), or None when it has none."""
    if done is None or not len(done):
        return None
    sel = np.ones(len(done), dtype=bool)
    for k, v in key.items():
        if k not in done.columns:
            return None
        sel &= (done[k] == v).to_numpy()
    return done[sel].to_dict("records") if sel.any() else None


def ensure_rows(table: ResultsTable | None, done: pd.DataFrame | None, key: dict, compute) -> list[dict]:
    """Rows for one unit of work: read back from ``done`` (the table loaded once) when there, else computed.

    A unit's rows are appended only after the whole unit is computed, so a unit is either complete
    in the table or absent (a crash mid-unit recomputes just that unit).
    """
    if table is not None:
        stored = stored_rows(done, key)
        if stored is not None:
            return stored
    rows = compute()
    if table is not None:
        for r in rows:
            table.append({**r, **key})
    return rows



def collect_units(out: str | os.PathLike | None, name: str, config, key_fields: Sequence[str],
                  units: Sequence[dict], compute: Callable[..., list[dict]], progress: bool = False,
                  desc: str | None = None) -> pd.DataFrame:
    """The one resumable per-unit loop: every unit's rows, computed once and persisted under ``out``.

    ``units`` are dicts over (a subset of) ``key_fields``; ``compute(**unit)`` returns that unit's rows,
    which carry the remaining key fields (e.g. ``step``) so that no two rows of a unit share a key. With ``out``
    the rows go to ``results_table(out, name, config, key_fields)`` one unit at a time, so a killed run
    resumes without losing or duplicating a unit. Each returned row carries its unit's key fields.
    """
    from tqdm.auto import tqdm

    table = results_table(out, name, config, key_fields)
    done = table.load() if table is not None else None
    rows = []
    for key in tqdm(list(units), desc=desc or name, disable=not progress, leave=False):
        extra = set(key) - set(key_fields)
        if extra:  # a unit names a subset of the key; its rows supply the rest (e.g. a step column)
            raise ValueError(f"unit {key!r} has fields {sorted(extra)} that are not key fields {list(key_fields)}")
        for r in ensure_rows(table, done, key, lambda key=key: compute(**key)):
            rows.append({**r, **key})
    return pd.DataFrame(rows)

def _plain(o):
    """JSON for numpy scalars and arrays inside packed rows."""
    return o.tolist() if hasattr(o, "tolist") else str(o)


def collect_packed(out: str | os.PathLike | None, name: str, config, units: Sequence[dict],
                   compute: Callable[..., list[dict]], progress: bool = False, desc: str | None = None) -> pd.DataFrame:
    """:func:`collect_units` for units that yield many rows: each unit's rows are stored as one record.

    The results table is keyed by the unit's fields, so a unit's rows (which share that key) are
    packed into one JSON record and unpacked here: they can neither overwrite each other on disk nor
    be half-written. Returns every row with its unit's key fields, as :func:`collect_units` does.
    """
    units = list(units)
    if not units:
        return pd.DataFrame()
    fields = list(units[0])

    def packed(**key):
        return [{"rows_json": json.dumps(compute(**key), default=_plain)}]

    stored = collect_units(out, name, config, fields, units, packed, progress=progress, desc=desc)
    rows = []
    for rec in stored.to_dict("records"):
        key = {k: rec[k] for k in fields}
        rows += [{**r, **key} for r in json.loads(rec["rows_json"])]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Claims judged from the shared measures (every verdict through ``claims.claim_verdict``)


def _units(measured: int, override: int | None) -> int:
    """The independent units behind an interval: the measured count, or fewer where a draw above them
    (e.g. one pretrained model) is not resampled."""
    return measured if override is None else min(measured, override)


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def exponent_verdicts(fit: dict, tier: str, suffix: str = "", note: str = "", *, shape: PowerLawShape | None = None,
                      s_verdict: bool = True, s_reason: str = "", n_units: int | None = None) -> list[Verdict]:
    """``thm3.2_eps_exponent`` and (when s varied) ``thm3.2_s_exponent`` from a ``fit_lambda_max_scaling`` block.

    ``shape`` (from ``measures.eps_power_law_shape``): when λ_max is not a power law in ε, no exponent
    is a verdict; the record says so (no interval, uninformative). ``s_verdict=False`` (e.g. a sign
    step, whose size does not depend on s by construction) records the s exponent as a code-check
    with ``s_reason`` instead. ``n_units`` caps the independent units (default: the fit's groups).
    """
    units = _units(int(fit.get("n_groups") or 0), n_units)
    base = _join(note, f"n_groups={fit.get('n_groups')}, n_points={fit.get('n_points')}, "
                       f"n_dropped={fit.get('n_dropped', 0)}.")
    if shape is not None and not shape.is_power_law:
        why = _join(base, f"Not fitted: λ_max is not a power law in ε ({shape.reason}; median local slopes "
                          f"{shape.min_slope:.2f} to {shape.max_slope:.2f} over {shape.n_units} units).")
        out = [claim_verdict("thm3.2_eps_exponent", "paper", tier, float("nan"), None, n_units=units,
                             qualifier=suffix, note=why)]
        if fit.get("s_exponent") is not None:
            out.append(claim_verdict("thm3.2_s_exponent", "paper", tier, float("nan"), None, n_units=units,
                                     qualifier=suffix, note=why))
        return out
    out = [claim_verdict("thm3.2_eps_exponent", "paper", tier, fit.get("eps_exponent"), fit.get("eps_exponent_ci"),
                         n_units=units, qualifier=suffix, note=base)]
    if fit.get("s_exponent") is None:
        return out
    s_note = _join(note, f"s = {fit.get('s_column', 's')}; n_groups={fit.get('n_groups')}.")
    if s_verdict:
        out.append(claim_verdict("thm3.2_s_exponent", "paper", tier, fit["s_exponent"], fit.get("s_exponent_ci"),
                                 n_units=units, qualifier=suffix, note=s_note))
    else:
        out.append(code_check(f"thm3.2_s_exponent[{suffix}]" if suffix else "thm3.2_s_exponent", tier,
                              "exponent b of λ_max ∝ s^b (not a verdict)", fit["s_exponent"],
                              note=_join(s_reason, s_note)))
    return out


def bound_check(claim: str, tier: str, n_violations: int, n_checks: int, what: str) -> Verdict:
    """A bound that holds for any logit change: a code-check counting violations."""
    return code_check(claim, tier, f"violations of {what} in {n_checks} checks", float(n_violations),
                      note="Holds for any model by construction; checks our implementation, not the theorem.")


def _dropped(ratio: PairedRatio) -> str:
    return (f"{ratio.n_pairs} matched pairs over {ratio.n_units} units; {ratio.n_dropped} pairs dropped "
            "(a missing or non-positive value has no logarithm).")


def thm31_verdicts(at_gain: pd.DataFrame, unit: str, tier: str, qualifier: str, lr: str = "lam", note: str = "",
                   n_boot: int = 2000, seed: int = 0, n_units: int | None = None
                   ) -> tuple[list[Verdict], pd.DataFrame, pd.DataFrame]:
    """Theorem 3.1 both ways, from ``cost_at_gain`` rows (one per (unit, LR, Δ*)).

    Paper: ΔL(P1) at the smallest LR over the largest at the same Δ* (geometric mean over pairs,
    units resampled). Stricter: the mean per-unit slope of log ΔL(P1) on log LR at fixed Δ*.
    Returns the two verdicts, the slopes and the pairs.
    """
    pairs = lr_pair_at_gain(at_gain, unit=unit, lr=lr)
    ratio = paired_ratio(pairs["cost_small"], pairs["cost_large"], pairs[unit], n_boot=n_boot, seed=seed)
    lrs = sorted(at_gain[lr].unique()) if len(at_gain) else []
    span = f"LR {lrs[0]:g} vs {lrs[-1]:g}; " if lrs else ""
    paper = claim_verdict("thm3.1_smaller_steps", "paper", tier, ratio.estimate, ratio.ci,
                          n_units=_units(ratio.n_units, n_units), qualifier=qualifier,
                          note=_join(span + note, _dropped(ratio)))
    slopes = fixed_gain_slopes(at_gain, unit=unit, lr=lr)
    est, ci, n = per_unit_mean_ci(slopes["slope"], slopes[unit], n_boot=n_boot, seed=seed)
    stricter = claim_verdict("thm3.1_smaller_steps", "stricter", tier, est, ci, n_units=_units(n, n_units),
                             qualifier=qualifier,
                             note=_join(note, f"{len(slopes)} (unit, Δ*) slopes over {n} units; cells with "
                                              "ΔL(P1) ≤ 0 have no logarithm and are left out."))
    return [paper, stricter], slopes, pairs


def direction_verdict(lam: pd.DataFrame, unit: str, tier: str, qualifier: str, s: str = "s", note: str = "",
                      n_boot: int = 2000, seed: int = 0, n_units: int | None = None
                      ) -> tuple[Verdict, pd.DataFrame]:
    """Theorem 3.2's direction: λ_max(s_low) / λ_max(s_high) at the same ε, units resampled (paper > 1)."""
    pairs = direction_ratios(lam, unit=unit, s=s)
    ratio = paired_ratio(pairs["lam_low"], pairs["lam_high"], pairs[unit], n_boot=n_boot, seed=seed)
    span = (f"s = {pairs['s_low'].min():g} vs {pairs['s_high'].max():g} ({s}); " if len(pairs) else "")
    v = claim_verdict("thm3.2_direction", "paper", tier, ratio.estimate, ratio.ci,
                      n_units=_units(ratio.n_units, n_units), qualifier=qualifier,
                      note=_join(span + note, _dropped(ratio).replace("no logarithm", "no logarithm: no safe-step "
                                                                        "limit or none found")))
    return v, pairs


def ratio_verdict(claim: str, tier: str, quantity: str, ratio: PairedRatio, note: str = "") -> Verdict:
    """A 'less degradation' ratio for a claim not in the registry: paper value [0, 1], no alternative.

    Registered claims go through ``claims.claim_verdict``; this stays for callers of unregistered names.
    """
    return verdict(claim, tier, quantity, ratio.estimate, ratio.ci, (0.0, 1.0), None,
                   note=_join(note, _dropped(ratio)), n_units=ratio.n_units)
