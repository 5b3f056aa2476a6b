"""Reading stored stage results, for the notebooks: the same numbers as the report, in seconds.

A notebook points ``$TALR_RESULTS`` at a ``talr-theory reproduce --out`` folder and calls
:func:`stage`, which reads the stored stage whose fingerprint matches (``tiers.load_or_run``); without
``$TALR_RESULTS`` the stage runs in memory at the quick scale. :func:`stage_report` is the stage's
section of ``report.md`` exactly as ``reproduce`` writes it, so the notebook prints the report's numbers.

The token-difficulty views (per-scan summaries, hardest tokens, the HTML token view, and a short
fine-tuning run scored base vs tuned) live here too, so notebook 02 only calls them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from talr_theory import report, tiers
from talr_theory.tiers.protocol import TierResult

RESULTS_ENV = "TALR_RESULTS"


def results_dir() -> Path | None:
    """``$TALR_RESULTS`` (a ``reproduce --out`` folder), or None when unset; an unset folder is an error."""
    value = os.environ.get(RESULTS_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise FileNotFoundError(f"${RESULTS_ENV}={value}: no such folder (run `talr-theory reproduce --out {value}`)")
    return path


def stage(name: str, out: str | os.PathLike | None = None, **options) -> TierResult:
    """The stored result of stage ``name`` under ``out`` (default ``$TALR_RESULTS``); run when absent or stale."""
    folder = out if out is not None else results_dir()
    result = tiers.load_or_run(name, folder, **options)
    quick = options.get("quick")
    if quick is None:  # as load_or_run resolves it: the stored run's scale, else the quick scale
        quick = tiers.run_options(folder).get("quick", True) if folder is not None else True
    if quick:  # the report marks a quick stage's verdicts as pipeline checks; so do the readers
        result.info["pipeline_check"] = True
    return result


def stage_report(result: TierResult) -> str:
    """The stage's section of the report (summary, verdict sentences, notes, tables), as ``reproduce`` writes it."""
    text = report.render([result], "")
    start = text.index(f"## Stage `{result.tier}`")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None].strip()


def claim_lines(result: TierResult, prefix: str | tuple[str, ...] = "") -> str:
    """The report's sentence for each claim of this stage that starts with ``prefix``, one per line."""
    pipeline = report.is_pipeline_check(result)
    return "\n".join(report.verdict_line(v, pipeline) for v in result.verdicts
                     if v.verdict != "code-check" and v.claim.startswith(prefix))


def claims(result: TierResult, prefix: str | tuple[str, ...] = "") -> pd.DataFrame:
    """The report's claims table for this stage's verdicts whose claim starts with ``prefix``."""
    return report.verdict_table([v for v in result.verdicts if v.claim.startswith(prefix)])


# ----------------------------------------------------------------------------------------------
# Token difficulty (the tokens stage)


def token_summaries(result: TierResult, n_boot: int = 1000) -> pd.DataFrame:
    """One row per scan of the tokens stage: examples, tokens per example, median p, share p > 0.2 with its CI."""
    from talr_theory.tokens.stats import token_summary

    rows = []
    for name, table in result.frames["tokens"].groupby("name", sort=False):
        s = token_summary(table, n_boot=n_boot, seed=int(result.config.get("seed", 0)))
        rows.append({"scan": name, "examples": s["n_examples"], "tokens_per_example": s["tokens_per_example"],
                     "median_p": s["median_p"], "q25_p": s["quantiles_p"].get("0.25"),
                     "q75_p": s["quantiles_p"].get("0.75"), "frac_p_gt_0.2": s["frac_p_gt_0.2"],
                     "frac_ci_lo": s["frac_p_gt_0.2_ci"][0], "frac_ci_hi": s["frac_p_gt_0.2_ci"][1]})
    return pd.DataFrame(rows)


def hardest(result: TierResult, scan: str = "medcalc-synth/cot", k: int = 15) -> pd.DataFrame:
    """The ``k`` lowest-probability target tokens of one stored scan."""
    from talr_theory.tokens.stats import hardest_tokens

    table = result.frames["tokens"]
    return hardest_tokens(table[table["name"] == scan], k=k)[["example_id", "position", "token_text", "p"]]


def _encoded_scan(result: TierResult, scan: str, loaded, limit: int | None):
    """The stage's examples of ``scan`` encoded again, and their teacher-forced scan with top-3 alternatives."""
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.sft import load_sft
    from talr_theory.tokens.scanner import scan_tokens

    cfg = result.config
    data, fmt = scan.split("/")
    if data == "medcalc-bench":  # the stage names the scan by dataset; the CSV path is in its config
        data = cfg["medcalc_csv"]
    n = min(limit or cfg["limit"], cfg["limit"])
    examples = load_sft(data, format=fmt, limit=n, seed=int(cfg["seed"]))
    enc = encode_examples(examples, loaded.tokenizer, max_length=cfg["max_length"]).examples
    return enc, scan_tokens(loaded, enc, top_k=3, progress=False)


def token_view(result: TierResult, scan: str = "medcalc-synth/cot", limit: int | None = 6,
               n_boot: int = 1000) -> str:
    """The HTML token view (tokens coloured by p, hover for rank and top-3) of the stage's model on ``scan``.

    Loads the stage's model and scans again with top-3 alternatives (the stored table has none).
    """
    from talr_theory.models import load_model
    from talr_theory.tokens.view import render_token_view, view_summary

    loaded = load_model(result.config["model"])
    enc, table = _encoded_scan(result, scan, loaded, limit)
    head = view_summary(table, n_boot=n_boot, seed=int(result.config["seed"]), model=loaded.spec,
                        truncated_examples=0, data=f"{scan} ({len(enc)} examples)")
    return render_token_view(table, enc, loaded.tokenizer, head, title=f"Token difficulty: {loaded.spec} on {scan}")


@dataclass(frozen=True)
class TuneConfig:
    """A short SFT run on label-only medcalc-synth whose final model is scored against the base model."""

    model: str = "stories260k"
    lr: float = 3e-3
    steps: int = 12
    n_train: int = 64
    n_eval: int = 16
    seed: int = 0
    n_boot: int = 1000


@dataclass
class BaseVsTuned:
    """What fine-tuning changed: the sweep's rows, ``tokens.compare.compare_summary``, the s(θ) change, the page."""

    frame: pd.DataFrame
    compare: dict
    s_change: pd.DataFrame
    page: str


def _sweep(cfg: TuneConfig, out: Path):
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.sweep import SweepConfig, run_sweep

    sweep = SweepConfig(model=cfg.model, data="medcalc-synth", format="label", methods=("sft",), lrs=(cfg.lr,),
                        seeds=(cfg.seed,), n_train=cfg.n_train, n_eval=cfg.n_eval, general_text="none",
                        n_samples=0, train_probe=16, frac_by_base=True, save_checkpoints=True, out=str(out),
                        train=TrainConfig(steps=cfg.steps, eval_every=max(1, cfg.steps // 4), batch_size=8))
    run_sweep(sweep, progress=False)
    return sweep, pd.read_parquet(out / "results.parquet")


def base_vs_tuned(cfg: TuneConfig, out: str | os.PathLike) -> BaseVsTuned:
    """Train ``cfg`` under ``out``, then score base and tuned model on the base model's encoding of the held-out set."""
    from talr_theory.data.encode import encode_examples
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model
    from talr_theory.tokens.compare import compare_summary, paired_table
    from talr_theory.tokens.scanner import scan_tokens
    from talr_theory.tokens.view import render_token_view
    from talr_theory.training.sweep import checkpoint_dir

    sweep, frame = _sweep(cfg, Path(out))
    base, tuned = load_model(cfg.model), load_model(str(checkpoint_dir(sweep.out, sweep.runs()[0])))
    held_out = load_sft(sweep.data, format=sweep.format, split="eval", limit=sweep.n_eval)
    enc = encode_examples(held_out, base.tokenizer, max_length=sweep.max_length).examples
    t_base, t_tuned = (scan_tokens(m, enc, top_k=3, progress=False) for m in (base, tuned))
    comp = compare_summary(t_base, t_tuned, n_boot=cfg.n_boot, seed=cfg.seed, encoded=enc,
                           tokenizer=base.tokenizer, k=8)
    s_change = pd.DataFrame({f"θ={th}": {"s base": comp["s_before"][th]["mean"], "s tuned": comp["s_after"][th]["mean"],
                                         "change": ch["mean"], "change CI lo": ch["ci_lo"], "change CI hi": ch["ci_hi"]}
                             for th, ch in comp["s_change"].items()}).T
    paired = paired_table(t_base, t_tuned)
    head = dict(comp, n_examples=len(enc), n_target_tokens=len(paired), model=cfg.model,
                compare_model=f"SFT lr={cfg.lr:g}, {cfg.steps} steps")
    page = render_token_view(paired, enc, base.tokenizer, head, title=f"Δ log p after SFT: {cfg.model}")
    return BaseVsTuned(frame, comp, s_change, page)
