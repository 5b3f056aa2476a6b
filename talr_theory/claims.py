"""The claim registry: one entry per statement of the paper, read by every tier, the report and the docs.

Each :class:`Claim` quotes the paper's poster text (``statement``, verbatim, LaTeX included) and says how
it is asked:

- ``paper``: the paper's own yardstick (its protocol, threshold and comparison). Judged first.
- ``stricter``: a stricter question this toolkit adds (e.g. at equal accuracy on each method's LR
  frontier). Reported beside the paper's, labelled, never in its place.

A claim with ``source="toolkit"`` is not a statement of the paper (e.g. EAFT or ASFT against SFT): it
is asked on the paper's protocol so that it can be read beside the paper's claims, and the report
shows it apart. A tier never types a claim's paper value, alternative or wording: it measures an
estimate and an interval and calls :func:`claim_verdict`, which takes them from here. docs/theory.md
§4 describes the registry; ``talr-theory bounds --json`` and ``figures/report.md`` show both
protocols side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from talr_theory.verdicts import Value, Verdict, verdict

SOURCES = ("paper", "toolkit")

# The paper's Tables 1-2 (MedCalc), column "Average" over Qwen2.5-3B, Qwen3-4B and Gemma3-4B:
# (method, learning rate) -> (domain accuracy, general score), quoted from the poster.
PAPER_AVERAGES: dict[tuple[str, float], tuple[float, float]] = {
    ("sft", 1e-6): (0.5339, 0.6924), ("l2", 1e-6): (0.5064, 0.6973), ("lora", 1e-6): (0.1813, 0.4904),
    ("wise-ft", 1e-6): (0.1983, 0.7268), ("flow", 1e-6): (0.4694, 0.6920), ("talr", 1e-6): (0.5011, 0.7169),
    ("sft", 5e-6): (0.5583, 0.3805), ("l2", 5e-6): (0.5553, 0.3952), ("lora", 5e-6): (0.2655, 0.4827),
    ("wise-ft", 5e-6): (0.4012, 0.6443), ("flow", 5e-6): (0.5528, 0.4498), ("talr", 5e-6): (0.5417, 0.5018),
}
METHOD_NAMES = {"sft": "SFT", "l2": "L2-Reg", "lora": "LoRA", "wise-ft": "WiSE-FT", "flow": "FLOW",
                "talr": "TALR", "dft": "DFT", "eaft": "EAFT", "asft": "ASFT"}


def _lr(x: float) -> str:
    """A learning rate as people write it: 1e-6, not 1e-06."""
    mant, _, exp = f"{x:g}".partition("e")
    return f"{mant}e{int(exp)}" if exp else mant


def _signed(x: float) -> str:
    """A difference with its sign, and a real minus sign."""
    return f"{x:+.3f}".replace("-", "−")


@dataclass(frozen=True)
class PaperDifference:
    """The paper's own number for a comparison: ``method`` at ``lr`` minus ``baseline`` at ``baseline_lr``
    in its Tables 1–2 (averages), domain accuracy and general score. Computed from the quoted table."""

    method: str
    lr: float
    baseline: str
    baseline_lr: float

    def values(self) -> tuple[float, float]:
        a, b = PAPER_AVERAGES[(self.method, self.lr)], PAPER_AVERAGES[(self.baseline, self.baseline_lr)]
        return a[0] - b[0], a[1] - b[1]

    def text(self) -> str:
        dom, gen = (_signed(v) for v in self.values())
        table = "Table 1" if self.lr == self.baseline_lr == 1e-6 else (
            "Table 2" if self.lr == self.baseline_lr == 5e-6 else "Tables 1–2")
        who = (f"{METHOD_NAMES[self.method]} − {METHOD_NAMES[self.baseline]} at LR {_lr(self.lr)}"
               if self.lr == self.baseline_lr else
               f"{METHOD_NAMES[self.method]} at LR {_lr(self.lr)} − at LR {_lr(self.baseline_lr)}")
        return f"{table}, {who}: domain {dom}, general {gen}"


@dataclass(frozen=True)
class Reading:
    """One way of asking a claim: what is measured, and the values that decide it."""

    quantity: str
    paper_value: Value
    alternative_value: Value
    how: str


@dataclass(frozen=True)
class Claim:
    """A statement of the paper, its protocol, and (optionally) our stricter reading of it.

    ``statement`` is verbatim from the poster (``../shared/docs/paper-poster.txt``; empty for a
    ``source="toolkit"`` claim); ``where`` names its section; ``short`` is the few words the report's
    claims table shows; ``context`` says what the reading takes from outside the quote (e.g. a
    threshold from the full paper), so a reader can tell quote from protocol.
    """

    id: str
    short: str
    statement: str
    where: str
    paper: Reading
    stricter: Reading | None = None
    paper_number: PaperDifference | None = None
    source: str = "paper"
    context: str = ""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"claim {self.id}: source must be one of {SOURCES}, got {self.source!r}")

    def reading(self, protocol: str) -> Reading:
        if protocol == "paper":
            return self.paper
        if protocol == "stricter" and self.stricter is not None:
            return self.stricter
        raise KeyError(f"claim {self.id!r} has no {protocol!r} reading")

    def paper_number_text(self) -> str:
        return self.paper_number.text() if self.paper_number is not None else ""


_INF = math.inf
_RATIO_BELOW_ONE = (0.0, 1.0)
_RATIO_ABOVE_ONE = (1.0, _INF)
_DIFF_BELOW_ZERO = (-_INF, 0.0)
_DIFF_ABOVE_ZERO = (0.0, _INF)
# "Comparable domain performance": Table 2's TALR − SFT average domain difference is −0.017; a margin
# of −0.03 admits it with room for one model's spread, and is stated wherever it is used.
DOMAIN_MARGIN = -0.03

_THM31 = ("Thus, using smaller steps (smaller  $\\lambda$ ) leads to strictly tighter guarantees on "
          "general-performance preservation.")
_THM32 = ("Then the maximal safe per-step size satisfies  $\\lambda_{\\max} \\propto "
          "\\frac{\\epsilon_{\\mathcal{D}_1}}{\\sqrt{s}}$ , where  $s$  is the expected number of "
          "low-probability tokens per example on  $\\mathcal{D}_2$")
_TABLE2 = ("At this larger learning rate, TALR achieves the best overall trade-off by substantially improving "
           "general performance while maintaining comparable domain performance.")
_SAME_PROTOCOL = ("same LR, steps and seeds as SFT, as for TALR; domain accuracy difference method − SFT "
                  "reported beside it")


def _toolkit_method(method: str) -> Claim:
    """A method the paper does not test, asked on the paper's protocol for TALR (Table 2) and at equal accuracy."""
    name = METHOD_NAMES[method]
    return Claim(
        f"{method}_vs_sft", f"{name} vs SFT: less general degradation", "", "not a claim of the paper",
        Reading(f"ΔL(P1) ratio {name} / SFT at the same LR and steps", _RATIO_BELOW_ONE, 1.0, _SAME_PROTOCOL),
        Reading(f"ΔL(P1) difference {name} − SFT at equal held-out accuracy, best LR per method", _DIFF_BELOW_ZERO,
                0.0, "each method's LR frontier, read at the same domain accuracy"),
        source="toolkit",
        context="Not a claim of the paper; compared on its protocol (Table 2: same learning rate and epochs).",
    )


CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim(
        "thm3.1_smaller_steps", "Thm 3.1: smaller steps, less degradation", _THM31, "Theorem 3.1",
        Reading("ΔL(P1) ratio, smallest / largest LR at equal Δ*", _RATIO_BELOW_ONE, 1.0,
                "ΔL(P1) at the smallest and the largest step size, read at the same domain gain Δ*"),
        Reading("slope of log ΔL(P1) on log LR at fixed Δ*", (0.0, 1.0), None,
                "the effect per doubling of the LR: Theorem 3.1's affine form gives a log-log slope in (0, 1]"),
    ),
    Claim(
        "thm3.2_direction", "Thm 3.2: fewer hard tokens, larger safe step", _THM32, "Theorem 3.2",
        Reading("λ_max(s_low) / λ_max(s_high) at equal ε", _RATIO_ABOVE_ONE, 1.0,
                "the safe step at the smallest and at the largest s, at the same tolerance ε"),
        context="The direction only: λ_max falls as s rises, whatever the exponent.",
    ),
    Claim(
        "thm3.2_eps_exponent", "Thm 3.2: λ_max ∝ ε (exponent 1)", _THM32, "Theorem 3.2",
        Reading("exponent a of λ_max ∝ ε^a", 1.0, 0.5,
                "log-log fit of λ_max on ε at fixed s (alternative ½: the second-order regime, docs/theory.md C2)"),
        Reading("exponent a of λ_max ∝ ε^a, per regime", 1.0, 0.5,
                "the same fit where P1 is well modeled and where it is not, stated as such"),
    ),
    Claim(
        "thm3.2_s_exponent", "Thm 3.2: λ_max ∝ 1/√s (exponent −½)", _THM32, "Theorem 3.2",
        Reading("exponent b of λ_max ∝ s^b", -0.5, 0.0,
                "log-log fit of λ_max on nominal s at fixed ε (alternative 0: no dependence on s, docs/theory.md C3)"),
        Reading("exponent b of λ_max ∝ s^b, per regime", -0.5, 0.0,
                "the same fit where P1 is well modeled and where it is not, stated as such"),
    ),
    Claim(
        "finding1_small_lr", "Smaller LR: comparable domain, less degradation",
        "Using a smaller learning rate allows domain-specific SFT to achieve a favorable trade-off:",
        "But!! Surprisingly, we found that",
        Reading("ΔL(P1) ratio, small / large LR at equal steps", _RATIO_BELOW_ONE, 1.0,
                "same steps/epochs; domain accuracy difference small − large LR reported beside it"),
        Reading("ΔL(P1) difference small − large LR at equal held-out accuracy", _DIFF_BELOW_ZERO, 0.0,
                "each LR read where it reaches the same domain accuracy"),
        paper_number=PaperDifference("sft", 1e-6, "sft", 5e-6),
        context="The poster's bullets: general-purpose degradation is largely mitigated; target domain "
                "performance is comparable to that with larger learning rates.",
    ),
    Claim(
        "finding1_comparable_domain", "Smaller LR: comparable domain accuracy",
        "Target domain performance is comparable to that with larger learning rates",
        "But!! Surprisingly, we found that",
        Reading("domain accuracy difference small − large LR at equal steps", (DOMAIN_MARGIN, _INF), None,
                f"same steps/epochs; margin {DOMAIN_MARGIN:g} (Tables 1–2, SFT: −0.024)"),
        paper_number=PaperDifference("sft", 1e-6, "sft", 5e-6),
    ),
    Claim(
        "label_only_loosens_lr", "Label-only loosens the LR constraint",
        "Label-only supervision loosens learning rate constraints for Pareto-optimal trade-offs.", "Findings",
        Reading("ΔL(P1) ratio, label-only / with rationale at the same LR and epochs", (0.0, 1.0), 1.0,
                "the same facts supervised with and without a rationale, trained at the same LR for the same "
                "epochs (the paper's protocol): a looser LR constraint is less general degradation at a given LR"),
        Reading("λ_max ratio, label-only / with rationale at equal ε", _RATIO_ABOVE_ONE, 1.0,
                "the theory's safe step itself: the line-scan λ_max of one full-batch SGD step at each ε"),
    ),
    Claim(
        "most_tokens_easy", "Most target tokens are easy (median p)",
        "The majority of tokens in the target sequence are confidently predicted by the model", "Token Analysis",
        Reading("median target-token probability", (0.5, 1.0), None,
                "teacher-forced probabilities of the CoT targets under the embedded model; 'the majority "
                "confidently predicted' read as more than half the tokens at p ≥ 0.5, i.e. median ≥ 0.5"),
        Reading("per-calculator median target-token probability (lowest group)", (0.5, 1.0), None,
                "the same, split by calculator: the claim for every group, not only on average"),
    ),
    Claim(
        "upper_quartile_near_one", "Upper quartile of p near 1",
        "The upper quartiles are tightly clustered near 1.0, and the medians are consistently high",
        "Token Analysis",
        Reading("upper quartile of target-token probability", (0.9, 1.0), None,
                "teacher-forced probabilities of the CoT targets; 'near 1.0' read as ≥ 0.9"),
        Reading("per-calculator upper quartile of target-token probability (lowest group)", (0.9, 1.0), None,
                "the same, split by calculator"),
    ),
    Claim(
        "hard_tokens_drive_degradation", "Hard tokens drive degradation",
        "Directly down-weight hard-token losses to curb their potential disproportionate influence to general "
        "performance degradation", "Insights from the Analysis",
        Reading("ΔL(P1) ratio, easy-only (hard-token loss truncated) / full SFT, same LR and steps",
                _RATIO_BELOW_ONE, 1.0, "hard = base probability < 0.2; same LR, steps and seeds"),
        Reading("ΔL(P1) difference hard-only − easy-only at equal held-out accuracy", _DIFF_ABOVE_ZERO, 0.0,
                "which part of the tokens costs more general loss per unit of domain accuracy"),
        context="The protocol (truncating hard-token gradients, hard = p < 0.2, compared with full SFT at the "
                "same LR and steps) is the full paper's Fig. 3; the poster states only the insight.",
    ),
    Claim(
        "talr_vs_sft", "TALR: better general performance", _TABLE2, "Table 2",
        Reading("ΔL(P1) ratio TALR / SFT at the same LR and steps", _RATIO_BELOW_ONE, 1.0,
                f"same LR and epochs; accuracy difference TALR − SFT (margin {DOMAIN_MARGIN:g}) reported beside it"),
        Reading("ΔL(P1) difference TALR − SFT at equal held-out accuracy, best LR per method",
                _DIFF_BELOW_ZERO, 0.0, "each method's LR frontier, read at the same domain accuracy"),
        paper_number=PaperDifference("talr", 5e-6, "sft", 5e-6),
    ),
    Claim(
        "talr_comparable_domain", "TALR: comparable domain accuracy", _TABLE2, "Table 2",
        Reading("domain accuracy difference TALR − SFT at the same LR and steps", (DOMAIN_MARGIN, _INF), None,
                f"margin {DOMAIN_MARGIN:g} (Table 2's average difference is −0.017)"),
        paper_number=PaperDifference("talr", 5e-6, "sft", 5e-6),
    ),
    Claim(
        "fig3c_easy_fraction_rises", "Training raises the share of p > 0.2", "", "Training Dynamics",
        Reading("paired difference of frac(p > 0.2), later − earlier checkpoint", _DIFF_ABOVE_ZERO, 0.0,
                "same examples at two checkpoints"),
        Reading("the same, among examples hard under the base model", _DIFF_ABOVE_ZERO, 0.0,
                "split by base difficulty"),
        context="The poster's 'Training Dynamics' section has a heading and no text; the reading follows the "
                "full paper's Fig. 3c (the fraction of target tokens with p > 0.2 during training).",
    ),
    _toolkit_method("eaft"),
    _toolkit_method("asft"),
    Claim(
        "talr_comparable_domain_gain", "TALR: comparable domain gain (exact scenarios)", _TABLE2, "Table 2",
        Reading("domain gain ratio Δ*_TALR / Δ*_SFT at the same LR and steps", (0.9, _INF), None,
                "where no accuracy exists (exact scenarios), the domain gain in nats stands in; margin 0.9 "
                "(Table 2's domain accuracy ratio is 0.542 / 0.558 = 0.97)"),
        paper_number=PaperDifference("talr", 5e-6, "sft", 5e-6),
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


def qualifier(claim_name: str) -> str:
    """The qualifier of a verdict's claim name (``id[qualifier]`` → ``qualifier``; ``""`` without one)."""
    _, _, rest = claim_name.partition("[")
    return rest[:-1] if rest.endswith("]") else rest
