"""The one λ line scan: ΔL(P1) along a line θ0 − λ·d on a geometric grid, and λ_max(ε) inside its bracket.

Every tier that measures a safe step size walks the same way: the exact tier
(``tilt.lambda_max_exact``, exact ΔL of a kernel-softmax step), the synthetic lab
(``lab.empirical.lambda_max_curve``, a tiny transformer moved along its first optimizer step) and
the real-model tier (a scan of two P1 curves at once, read off later). ``scan_line`` walks the grid
and reports the bracket; ``lambda_max_on_line`` solves ΔL(λ) = ε inside it (Brent). ``f(λ)`` is the
caller's ΔL at step size λ: a float, or one value per curve (a sequence or a mapping).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LineScan:
    """What a :func:`scan_line` walk saw: every (λ, ΔL) point and the bracket of its upward walk.

    ``lo`` is the last λ of the upward walk whose values all stayed ≤ ``above`` (None when its first
    point was already above); ``hi`` the first λ with every value above it (None when the budget ran
    out first). ``points`` maps λ to ΔL(λ) as ``f`` returned it (a float, or one value per curve).
    """

    points: dict[float, Any] = field(default_factory=dict)
    lo: float | None = None
    hi: float | None = None


def _values(value) -> np.ndarray:
    """ΔL at one λ as an array: one entry per curve (a float is one curve)."""
    if isinstance(value, Mapping):
        value = list(value.values())
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


def scan_line(f: Callable[[float], Any], lam_start: float, factor: float, below: float, above: float,
              max_evals: int = 60, down_factor: float | None = None, lam_floor: float = 0.0,
              points: dict | None = None) -> LineScan:
    """ΔL(λ) = ``f(λ)`` on a geometric grid from ``lam_start``, until every curve exceeds ``above``.

    Down (÷``down_factor``, default ``factor``) while the largest value is ≥ ``below`` and λ >
    ``lam_floor``; then up (×``factor``) from the last λ of the way down while the smallest value is ≤
    ``above``. At most ``max_evals`` new evaluations; ``points`` (λ → value) may carry earlier
    evaluations of the same line, which are reused and not counted. A root search for one ε uses
    ``below = above = ε``; a scan that must cover a range of tolerances uses their min and max.
    """
    if not (lam_start > 0 and factor > 1 and (down_factor is None or down_factor > 1)):
        raise ValueError(f"scan_line: need lam_start > 0 and factors > 1, got {lam_start}, {factor}, {down_factor}")
    scan = LineScan(points if points is not None else {})
    n_new = 0

    def value(lam: float) -> np.ndarray | None:
        nonlocal n_new
        if lam not in scan.points:
            if n_new >= max_evals:
                return None
            scan.points[lam], n_new = f(lam), n_new + 1
        return _values(scan.points[lam])

    lam = last = lam_start
    while (v := value(lam)) is not None and v.max() >= below and lam > lam_floor:
        last, lam = lam, lam / (down_factor or factor)
    if v is not None:
        last = lam
    lam = last
    while (v := value(lam)) is not None and v.min() <= above:
        scan.lo, lam = lam, lam * factor
    if v is not None:
        scan.hi = lam
    return scan


def lambda_max_on_line(f: Callable[[float], float], eps: float, lam_start: float = 1.0, factor: float = 2.0,
                       max_evals: int = 80, rtol: float = 1e-12, xtol: float = 2e-12,
                       points: dict | None = None) -> float:
    """The λ > 0 where ΔL(λ) = ``f(λ)`` first crosses ε along the scanned line (Brent inside the bracket).

    inf when ΔL stays ≤ ε within ``max_evals`` evaluations; the smallest λ tried when even it exceeds
    ε (the bracket would need λ below the scan's reach). ``points`` shares evaluations between calls
    (several ε on one line).
    """
    from scipy.optimize import brentq

    if not eps > 0:
        raise ValueError(f"tolerance eps must be > 0, got {eps}")
    pts = {} if points is None else points
    scan = scan_line(f, lam_start, factor, eps, eps, max_evals=max_evals, points=pts)
    if scan.hi is None:
        return math.inf
    if scan.lo is None:
        return float(scan.hi)

    def g(lam: float) -> float:
        if lam not in pts:
            pts[lam] = f(lam)
        return float(pts[lam]) - eps

    return float(brentq(g, scan.lo, scan.hi, xtol=xtol, rtol=max(rtol, 4 * np.finfo(float).eps), maxiter=500))
