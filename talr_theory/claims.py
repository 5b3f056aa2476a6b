"""The claim registry: one entry per statement of the paper, read by every tier, the report and the docs.

Each :class:`Claim` quotes the paper (``../shared/docs/paper-poster.txt``) and says how it is asked:

- ``paper``: the paper's own yardstick (its protocol, threshold and comparison). Judged first.
- ``stricter``: a stricter question this toolkit adds (e.g. at equal accuracy on each method's LR
  frontier). Reported beside the paper's, labelled, never in its place.

A tier never types a claim's paper value, alternative or wording: it measures an estimate and an
interval and calls :func:`claim_verdict`, which takes them from here. docs/theory.md §4 describes the
registry; ``talr-theory bounds --json`` and ``figures/report.md`` show both protocols side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from talr_theory.verdicts import Value, Verdict, verdict


@dataclass(frozen=True)
class Reading:
    """One way of asking a claim: what is measured, and the values that decide it."""

    quantity: str
    paper_value: Value
    alternative_value: Value
    how: str


@dataclass(frozen=True)
class Claim:
    """A statement of the paper, its protocol, and (optionally) our stricter reading of it."""

    id: str
    statement: str  # quoted from the paper
    paper: Reading
    stricter: Reading | None = None
    paper_number: str = ""  # the paper's own number for this comparison, where it gives one

    def reading(self, protocol: str) -> Reading:
        if protocol == "paper":
            return self.paper
        if protocol == "stricter" and self.stricter is not None:
            return self.stricter
        raise KeyError(f"claim {self.id!r} has no {protocol!r} reading")


_RATIO_BELOW_ONE = (0.0, 1.0)
_DIFF_BELOW_ZERO = (float("-inf"), 0.0)

CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim(
        "thm3.1_smaller_steps",
        "Using smaller steps (smaller λ) leads to strictly tighter guarantees on general-performance "
        "preservation. (Theorem 3.1: ΔL(P1) ≤ k1·Δ* + k2·Δ*²·λ)",
        Reading("ΔL(P1) ratio, smallest / largest LR at equal Δ*", _RATIO_BELOW_ONE, 1.0,
                "ΔL(P1) at the smallest and the largest step size, read at the same domain gain Δ*"),
        Reading("slope of log ΔL(P1) on log LR at fixed Δ*", (0.0, 1.0), None,
                "the effect per doubling of the LR: Theorem 3.1's affine form gives a log-log slope in (0, 1]"),
    ),
    Claim(
        "thm3.2_direction",
        "The maximal safe per-step size satisfies λ_max ∝ ε/√s, where s is the expected number of "
        "low-probability tokens per example (direction: fewer hard tokens, larger safe step).",
        Reading("λ_max(s_low) / λ_max(s_high) at equal ε", (1.0, float("inf")), 1.0,
                "the safe step at the smallest and at the largest s, at the same tolerance ε"),
    ),
    Claim(
        "thm3.2_eps_exponent",
        "The maximal safe per-step size satisfies λ_max ∝ ε/√s (scaling in ε).",
        Reading("exponent a of λ_max ∝ ε^a", 1.0, 0.5,
                "log-log fit of λ_max on ε at fixed s (docs/theory.md: second-order regime a = ½)"),
        Reading("exponent a of λ_max ∝ ε^a, per regime", 1.0, 0.5,
                "the same fit where P1 is well modeled and where it is not, stated as such"),
    ),
    Claim(
        "thm3.2_s_exponent",
        "The maximal safe per-step size satisfies λ_max ∝ ε/√s (scaling in s).",
        Reading("exponent b of λ_max ∝ s^b", -0.5, -1.0,
                "log-log fit of λ_max on nominal s at fixed ε (docs/theory.md: alternative b = −1)"),
        Reading("exponent b of λ_max ∝ s^b, per regime", -0.5, -1.0,
                "the same fit where P1 is well modeled and where it is not, stated as such"),
    ),
    Claim(
        "finding1_small_lr",
        "Using a smaller learning rate allows domain-specific SFT to achieve a favorable trade-off: general-"
        "purpose performance degradation is largely mitigated; target domain performance is comparable to "
        "that with larger learning rates.",
        Reading("ΔL(P1) ratio, small / large LR at equal steps", _RATIO_BELOW_ONE, 1.0,
                "same steps/epochs; domain accuracy difference small − large LR reported beside it"),
        Reading("ΔL(P1) difference small − large LR at equal held-out accuracy", _DIFF_BELOW_ZERO, 0.0,
                "each LR read where it reaches the same domain accuracy"),
        paper_number="Table 1 vs 2, SFT: domain 0.534 vs 0.558 (−0.024), general 0.692 vs 0.381",
    ),
    Claim(
        "label_only_loosens_lr",
        "Label-only supervision loosens learning rate constraints for Pareto-optimal trade-offs.",
        Reading("λ_max ratio, label-only / with rationale at equal ε", (1.0, float("inf")), 1.0,
                "the same facts supervised with and without a rationale; the line-scan safe LR at each ε"),
        Reading("ΔL(P1) difference label-only − rationale at equal held-out accuracy", _DIFF_BELOW_ZERO, 0.0,
                "each format read where it reaches the same domain accuracy"),
    ),
    Claim(
        "most_tokens_easy",
        "Most tokens in SFT training data pose low learning difficulty: the upper quartiles are tightly "
        "clustered near 1.0, and the medians are consistently high.",
        Reading("median target-token probability", (0.5, 1.0), 0.2,
                "teacher-forced probabilities of CoT targets under the embedded model"),
        Reading("per-calculator median target-token probability (lowest group)", (0.5, 1.0), 0.2,
                "the same, split by calculator"),
    ),
    Claim(
        "hard_tokens_drive_degradation",
        "Directly down-weight hard-token losses to curb their potential disproportionate influence to general "
        "performance degradation. (Fig. 3: truncating hard-token gradients, p < 0.2)",
        Reading("ΔL(P1) ratio, easy-only (hard-token loss truncated) / full SFT, same LR and steps",
                _RATIO_BELOW_ONE, 1.0, "hard = base probability < 0.2; same LR, steps and seeds"),
        Reading("ΔL(P1) difference hard-only − easy-only at equal held-out accuracy", (0.0, float("inf")), 0.0,
                "which half of the tokens costs more general loss per unit of domain accuracy"),
    ),
    Claim(
        "talr_vs_sft",
        "At this larger learning rate, TALR achieves the best overall trade-off by substantially improving "
        "general performance while maintaining comparable domain performance. (Table 2)",
        Reading("ΔL(P1) ratio TALR / SFT at the same LR and steps", _RATIO_BELOW_ONE, 1.0,
                "same LR and epochs; accuracy difference TALR − SFT (margin −0.03) reported beside it"),
        Reading("ΔL(P1) difference TALR − SFT at equal domain gain / accuracy, best LR per method",
                _DIFF_BELOW_ZERO, 0.0, "each method's LR frontier, read at the same domain gain"),
        paper_number="Table 2 (lr 5e-6): TALR − SFT domain −0.017, general +0.121",
    ),
    Claim(
        "talr_comparable_domain",
        "... while maintaining comparable domain performance. (Table 2)",
        Reading("domain accuracy difference TALR − SFT at the same LR and steps", (-0.03, float("inf")), None,
                "margin −0.03 (Table 2's average difference is −0.017)"),
        paper_number="Table 2 (lr 5e-6): TALR − SFT domain −0.017",
    ),
    Claim(
        "fig3c_easy_fraction_rises",
        "Training dynamics (Fig. 3c): the fraction of target tokens with p > 0.2 rises during training.",
        Reading("paired difference of frac(p > 0.2), later − earlier checkpoint", (0.0, float("inf")), 0.0,
                "same examples at two checkpoints"),
        Reading("the same, among examples hard under the base model", (0.0, float("inf")), 0.0,
                "split by base difficulty"),
    ),
    Claim(
        "talr_comparable_domain_gain",
        "... while maintaining comparable domain performance. (Table 2)",
        Reading("domain gain ratio Δ*_TALR / Δ*_SFT at the same LR and steps", (0.9, float("inf")), None,
                "where no accuracy exists (exact scenarios), the domain gain in nats stands in; margin 0.9 "
                "(Table 2's domain accuracy ratio is 0.542 / 0.558 = 0.97)"),
        paper_number="Table 2 (lr 5e-6): TALR / SFT domain 0.542 / 0.558 = 0.97",
    ),
)}


def claim(claim_id: str) -> Claim:
    """The registry entry for ``claim_id`` (KeyError naming the known ids otherwise)."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(CLAIMS)}") from None


def claim_verdict(claim_id: str, protocol: str, tier: str, estimate: float, ci: Sequence[float] | None, *,
                  n_units: int | None, n_seeds: int | None = None, qualifier: str = "", note: str = "") -> Verdict:
    """A Verdict for one registered claim under one protocol; values and wording come from the registry.

    ``qualifier`` names the variant (e.g. the tier's P1 or method) and is appended as ``id[qualifier]``.
    ``n_units`` is the number of independent units behind the interval (below ``verdicts.MIN_UNITS``
    the verdict is ``uninformative``).
    """
    c = claim(claim_id)
    r = c.reading(protocol)
    name = f"{claim_id}[{qualifier}]" if qualifier else claim_id
    return verdict(name, tier, r.quantity, estimate, ci, r.paper_value, r.alternative_value, note=note,
                   protocol=protocol, n_units=n_units, n_seeds=n_seeds)


def base_id(claim_name: str) -> str:
    """The registry id of a verdict's claim name (``id[qualifier]`` → ``id``)."""
    return claim_name.split("[", 1)[0]
