"""One rule that turns a measured interval into a verdict about one of the paper's claims.

Every sentence of the report that compares a measurement with the paper comes from a
:class:`Verdict`. The label is derived from the record's own fields by :func:`judge`, so anyone can
recompute it from the JSON:

- point claim (``paper_value`` a number, ``alternative_value`` a number):
  ``agrees``        the CI contains the paper's value and excludes the alternative;
  ``disagrees``     the CI excludes the paper's value;
  ``uninformative`` the CI contains both, or is missing / NaN.
- range claim (``paper_value`` = [a, b]):
  ``agrees``        the CI lies inside [a, b] (and, when there is an alternative, excludes it);
  ``disagrees``     the CI misses [a, b] entirely;
  ``uninformative`` otherwise (it straddles an edge), or the CI is missing / NaN.
- ``code-check``: an identity or bound that holds for *any* model (a check of our code, not of the
  theorem). It is reported as a correctness check and never counted as evidence.

Intervals are inclusive at both ends. A point claim without an alternative can never be
``agrees`` (there is nothing the interval could have ruled out): it is ``uninformative`` unless the
interval excludes the paper's value.

Power: an interval resting on fewer than :data:`MIN_UNITS` independent units (``n_units``) cannot
cover reliably (with 3 units a bootstrap interval is about [min, max], coverage ≈ 75%), so such a record
keeps its point estimate, its interval is withheld (``ci_lo`` / ``ci_hi`` NaN, ``null`` in JSON,
printed "—"), its label is ``uninformative`` and its note says "interval withheld: N units < 10".
:func:`verdict` applies this, so no record shows an interval that could not cover.

Each record also says which question it answers (``protocol``): ``paper`` — the paper's own yardstick
(its protocol, threshold and comparison), judged first; ``stricter`` — a stricter reading this toolkit
adds, reported beside it and labelled. The claim registry (``talr_theory.claims``) holds both per claim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

LABELS = ("agrees", "disagrees", "uninformative", "code-check")
PROTOCOLS = ("paper", "stricter")
# Fewer independent units than this behind an interval: the verdict is "uninformative" (docs/theory.md §4).
MIN_UNITS = 10
# Fewer training seeds than this behind an interval over trained runs: "uninformative" (the hierarchical
# bootstrap resamples them, but two or three seeds cannot describe the seed-to-seed spread).
MIN_SEEDS = 5

Value = float | tuple[float, float] | None


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def _as_value(v) -> Value:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"a range value needs two numbers [a, b], got {v!r}")
        # JSON has no infinity: an open end is stored as null (−∞ below, +∞ above)
        a = -math.inf if v[0] is None else float(v[0])
        b = math.inf if v[1] is None else float(v[1])
        if a > b:
            raise ValueError(f"a range value needs a <= b, got {v!r}")
        return (a, b)
    return float(v)


def _overlaps(lo: float, hi: float, value: float | tuple[float, float]) -> bool:
    if isinstance(value, tuple):
        return lo <= value[1] and hi >= value[0]
    return lo <= value <= hi


def judge(ci_lo, ci_hi, paper_value, alternative_value=None, n_units: int | None = None,
          n_seeds: int | None = None) -> str:
    """The verdict label from an interval and the claim's values (see the module docstring).

    ``n_units`` (when given): the number of independent units behind the interval; fewer than
    :data:`MIN_UNITS` make the label ``uninformative``. ``n_seeds`` (when given, for intervals over
    trained runs): fewer than :data:`MIN_SEEDS` training seeds make it ``uninformative`` too.
    """
    paper = _as_value(paper_value)
    alt = _as_value(alternative_value)
    if paper is None:
        raise ValueError("judge needs a paper_value (use code_check for identities and bounds)")
    if n_units is not None and int(n_units) < MIN_UNITS:
        return "uninformative"
    if n_seeds is not None and int(n_seeds) < MIN_SEEDS:
        return "uninformative"
    if not (_finite(ci_lo) and _finite(ci_hi)) or float(ci_lo) > float(ci_hi):
        return "uninformative"
    lo, hi = float(ci_lo), float(ci_hi)
    if isinstance(paper, tuple):
        if paper[0] <= lo and hi <= paper[1]:
            # an interval inside the range that still reaches the alternative (e.g. a ratio of exactly 1
            # on the edge of [0, 1]) has not ruled out "no effect"
            return "agrees" if alt is None or not _overlaps(lo, hi, alt) else "uninformative"
        if hi < paper[0] or lo > paper[1]:
            return "disagrees"
        return "uninformative"
    if not _overlaps(lo, hi, paper):
        return "disagrees"
    if alt is not None and not _overlaps(lo, hi, alt):
        return "agrees"
    return "uninformative"


@dataclass(frozen=True)
class Verdict:
    """One claim, one measured number with its interval, and the label the rule gives it."""

    claim: str
    tier: str
    quantity: str
    estimate: float
    ci_lo: float
    ci_hi: float
    paper_value: Value
    alternative_value: Value
    verdict: str
    note: str = ""
    protocol: str = "paper"
    n_units: int | None = None
    n_seeds: int | None = None

    def __post_init__(self):
        if self.verdict not in LABELS:
            raise ValueError(f"verdict must be one of {LABELS}, got {self.verdict!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")

    @property
    def estimate_outside_ci(self) -> bool:
        """The point estimate lies outside its own percentile interval: a sign of bias, reported as such."""
        if not (_finite(self.estimate) and _finite(self.ci_lo) and _finite(self.ci_hi)):
            return False
        return not (self.ci_lo <= self.estimate <= self.ci_hi)

    @property
    def interval_withheld(self) -> bool:
        """The interval was withheld: fewer than :data:`MIN_UNITS` independent units stand behind it."""
        return self.verdict != "code-check" and interval_withheld(self.n_units)

    def interval_text(self, digits: int = 3) -> str:
        """``est [lo, hi]``, or ``est [—]`` with the reason when the interval was withheld."""
        return format_ci(self.estimate, self.ci_lo, self.ci_hi, digits,
                         n_units=self.n_units if self.interval_withheld else None)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("paper_value", "alternative_value"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        for k in ("estimate", "ci_lo", "ci_hi"):
            if d[k] is not None and not _finite(d[k]):
                d[k] = None
        d["estimate_outside_ci"] = self.estimate_outside_ci
        d["interval_withheld"] = self.interval_withheld
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        keep = {k: d.get(k) for k in ("claim", "tier", "quantity", "estimate", "ci_lo", "ci_hi",
                                       "paper_value", "alternative_value", "verdict", "note", "protocol",
                                       "n_units", "n_seeds")}
        keep["protocol"] = keep["protocol"] or "paper"
        for k in ("estimate", "ci_lo", "ci_hi"):
            keep[k] = float("nan") if keep[k] is None else float(keep[k])
        for k in ("paper_value", "alternative_value"):
            keep[k] = _as_value(keep[k])
        keep["note"] = keep["note"] or ""
        return cls(**keep)

    def sentence(self) -> str:
        """One line for the report: claim, number, interval, the paper's value and the label."""
        if self.verdict == "code-check":
            return f"[{self.tier}] {self.claim} ({self.quantity}): {fmt_num(self.estimate)} — code-check. {self.note}".rstrip()
        text = (f"[{self.tier}] {self.claim}: {self.quantity} = "
                f"{format_ci(self.estimate, self.ci_lo, self.ci_hi)}; paper {fmt_value(self.paper_value)}, "
                f"alternative {fmt_value(self.alternative_value)} → **{self.verdict}**.")
        if self.estimate_outside_ci:
            text += " (The estimate lies outside its own percentile interval: the bootstrap distribution is biased.)"
        return f"{text} {self.note}".rstrip()


def interval_withheld(n_units: int | None) -> bool:
    """Whether a record on ``n_units`` independent units has its interval withheld (fewer than MIN_UNITS)."""
    return n_units is not None and int(n_units) < MIN_UNITS


def withheld_note(n_units: int) -> str:
    """The words a record carries when its interval is withheld."""
    n = int(n_units)
    return f"interval withheld: {n} unit{'' if n == 1 else 's'} < {MIN_UNITS}"


def verdict(claim: str, tier: str, quantity: str, estimate: float, ci: Sequence[float] | None,
            paper_value, alternative_value=None, note: str = "", protocol: str = "paper",
            n_units: int | None = None, n_seeds: int | None = None) -> Verdict:
    """Build a record whose label is :func:`judge` of its own fields.

    With ``n_units`` below :data:`MIN_UNITS` the point estimate is kept but the interval is withheld
    (NaN): a bootstrap interval over so few units cannot cover. The label is then ``uninformative``
    and the note says "interval withheld: N units < 10".
    """
    lo, hi = (float("nan"), float("nan")) if ci is None else (float(ci[0]), float(ci[1]))
    est = float("nan") if estimate is None else float(estimate)
    if n_seeds is not None and int(n_seeds) < MIN_SEEDS:
        note = (f"{note} Only {int(n_seeds)} training seeds (< {MIN_SEEDS}): the interval resamples them but cannot "
                "describe the seed-to-seed spread, so not counted as evidence.").strip()
    if interval_withheld(n_units):
        lo, hi = float("nan"), float("nan")
        n = int(n_units)
        note = (f"{note} {withheld_note(n).capitalize()} (a bootstrap interval over only {n} independent "
                f"unit{'' if n == 1 else 's'} cannot cover), so not counted as evidence.").strip()
    return Verdict(claim, tier, quantity, est, lo, hi, _as_value(paper_value), _as_value(alternative_value),
                   judge(lo, hi, paper_value, alternative_value, n_units, n_seeds), note, protocol,
                   None if n_units is None else int(n_units), None if n_seeds is None else int(n_seeds))


def code_check(claim: str, tier: str, quantity: str, estimate: float, note: str = "") -> Verdict:
    """An identity or bound that holds for any model: a correctness check of the code, never evidence."""
    return Verdict(claim, tier, quantity, float(estimate), float("nan"), float("nan"), None, None,
                   "code-check", note)


def fmt_num(x, digits: int = 3) -> str:
    if isinstance(x, float) and math.isinf(x):  # an open end of a range claim, e.g. (−∞, 0]
        return "∞" if x > 0 else "−∞"
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(float(x), f".{digits}g")


def fmt_value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return f"[{fmt_num(v[0])}, {fmt_num(v[1])}]"
    return fmt_num(v)


def format_ci(estimate, lo, hi, digits: int = 3, n_units: int | None = None) -> str:
    """The one CI formatter: ``est [lo, hi]``; a missing interval reads ``est [—]``.

    With ``n_units`` below :data:`MIN_UNITS` the interval is withheld whatever it is (the rule of
    :func:`verdict`, for numbers printed beside a verdict): ``est [—] (interval withheld: N units < 10)``.
    """
    if interval_withheld(n_units):
        return f"{fmt_num(estimate, digits)} [—] ({withheld_note(n_units)})"
    if not (_finite(lo) and _finite(hi)):
        return f"{fmt_num(estimate, digits)} [—]"
    return f"{fmt_num(estimate, digits)} [{fmt_num(lo, digits)}, {fmt_num(hi, digits)}]"


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    return {label: sum(v.verdict == label for v in verdicts) for label in LABELS}
