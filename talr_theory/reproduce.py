"""``talr-theory reproduce``: every stage, every figure and one report, from a single command.

The stages are the modules of ``talr_theory.tiers`` (``STAGES``), run in that order. Each finished
stage is stored under ``OUT/stages/<name>/`` with a fingerprint of its resolved config and the
package version, so a killed run resumes when rerun with the same ``--out`` and a stage computed
with another config is never reused. Figures go to ``OUT/figures``; with ``update_figures`` they
and the report are copied into the repository's ``figures/``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from talr_theory import __version__, report, tiers
from talr_theory.configs import json_safe
from talr_theory.outputs import atomic_write_text
from talr_theory.tiers.protocol import StageStore, TierResult


@dataclass
class ReproduceConfig:
    quick: bool = False
    out: str = "runs/reproduce"
    medcalc_csv: str | None = None
    model: str | None = None           # None: each stage's own default (SmolLM2; quick llm: tiny-random)
    seed: int = 0
    stages: tuple[str, ...] = tiers.STAGES
    update_figures: bool = False
    progress: bool = True


def stage_config(name: str, cfg: ReproduceConfig):
    """The stage's Config at the requested scale, with the run-wide options it has fields for."""
    mod = tiers.module(name)
    sc = mod.Config.quick(seed=cfg.seed) if cfg.quick else mod.Config(seed=cfg.seed)
    names = {f.name for f in dataclasses.fields(sc)}
    shared = {"model": cfg.model, "medcalc_csv": cfg.medcalc_csv}
    return dataclasses.replace(sc, **{k: v for k, v in shared.items() if k in names and v is not None})


def save_figure(fig, name: str, folder: Path) -> Path:
    """The one way figures are written (``plotting.save_figure``)."""
    from talr_theory.plotting import save_figure as save

    return save(fig, name, folder)


def models_sentence(results: list[TierResult]) -> str:
    """Which model each stage loaded, in words (stages without a model are named as such)."""
    by_model: dict[str, list[str]] = {}
    for r in results:
        if r.config.get("model"):
            by_model.setdefault(report.model_name(r.config["model"]), []).append(r.tier)
    without = [r.tier for r in results if not r.config.get("model")]
    parts = [f"{name} in the {_names(stages)} stage{'s' if len(stages) > 1 else ''}"
             for name, stages in by_model.items()]
    text = f"Models: {'; '.join(parts)}." if parts else "No stage loads a model."
    if parts and without:
        text += (f" The {_names(without)} stage{'s' if len(without) > 1 else ''} load{'' if len(without) > 1 else 's'}"
                 " no model (closed-form models or small models trained from scratch).")
    return text


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def reproduce(cfg: ReproduceConfig) -> dict:
    """Run every stage (resuming matching stored ones), draw the figures, write the report."""
    out = Path(cfg.out)
    figs = out / "figures"
    store = StageStore(out)
    t_start = time.perf_counter()
    results: list[TierResult] = []
    written: list[str] = []
    for name in cfg.stages:
        mod = tiers.module(name)
        sc = stage_config(name, cfg)
        result = store.run(name, sc, lambda mod=mod, sc=sc: mod.run(sc, out, progress=cfg.progress))
        results.append(result)
        try:
            mod.figures(result, lambda fig, fname: written.append(save_figure(fig, fname, figs).name))
        except Exception as err:  # a figure must never sink the run; the report lists what failed
            written.append(f"({name} figures failed: {type(err).__name__}: {err})")
    total = time.perf_counter() - t_start
    scale = "quick" if cfg.quick else "default"
    preamble = [
        f"Seed {cfg.seed}, {scale} scale, talr_theory {__version__}. {models_sentence(results)} This invocation "
        f"took {total:.0f} s; stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in store.timings.items())
        + f". Stages reused from an earlier run with the identical settings: {', '.join(store.resumed) or 'none'}.",
        "Every number below was computed by this run's code; the paper's numbers appear only in the claims "
        "table's last column and the labelled reference table.",
    ]
    pipeline = [r.tier for r in results if report.is_pipeline_check(r, cfg.quick)]
    if cfg.quick:
        preamble.append("> Quick scale is a pipeline check: it shows that every stage runs end to end on small "
                        f"models and data. Its verdicts are marked {report.PIPELINE_MARK} and none counts as "
                        "evidence for or against the paper.")
    text = report.render(results, f"talr-theory reproduce — {scale} scale", preamble,
                         [w for w in written if not w.startswith("(")], pipeline=pipeline)
    summary = {"config": dataclasses.asdict(cfg), "version": __version__, "total_s": total,
               "timings_s": store.timings, "resumed_stages": store.resumed, "discarded_stages": store.discarded,
               "pipeline_check_stages": pipeline,
               "verdicts": [v.to_dict() for r in results for v in r.verdicts],
               "stages": {r.tier: r.to_json() for r in results}, "figures": written}
    # atomic: a kill mid-write leaves the previous report and summary intact
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "summary.json", json.dumps(json_safe(summary), indent=2, default=str) + "\n")
    if cfg.update_figures:
        from talr_theory.paths import figures_dir

        for p in figs.glob("*.png"):
            shutil.copy2(p, figures_dir() / p.name)
        shutil.copy2(out / "report.md", figures_dir() / "report.md")
    return json_safe(summary)
