"""The TALR-vs-SFT map stage: cells, verdicts, the general-token variant, determinism and resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from talr_theory.theory.steps import target_probs
from talr_theory.tiers import talr_map


def _small(**kw):
    cfg = talr_map.Config.quick(seed=0)
    kw.setdefault("synthetic_easy", ())  # the exact tier only; the synthetic cells have their own (slow) test
    return replace(cfg, hard=("domain",), target_gain=0.2, n_gains=3, max_steps=600, n_boot=200, **kw)


def test_general_hard_targets_are_rare_general_tokens():
    sc = talr_map.scenario_for(3, 0.95, 0.1, "general")
    dom = talr_map.scenario_for(3, 0.95, 0.1, "domain")
    Vg = sc.config.n_general_tokens
    assert np.all(sc.hard_targets < Vg) and np.all(sc.hard_targets != sc.easy_targets)
    assert np.all(dom.hard_targets >= Vg)
    p = target_probs(sc.model.logits[sc.domain_idx], sc.hard_targets)
    assert p.max() < 0.05  # as hard as the domain tokens: only which tokens they are differs
    assert np.array_equal(sc.easy_targets, dom.easy_targets)


def test_cells_verdicts_and_resume(tmp_path):
    cfg = _small()
    res = talr_map.run(cfg, tmp_path, progress=False)
    cells = res.frames["cells"]
    # one TALR setting, DFT, EAFT and ASFT, × one scenario cell × two P1 variants
    methods = {"talr", "dft", "eaft", "asft"}
    assert len(cells) == 8 and set(cells["method"]) == methods
    assert {v.claim.split("[")[0] for v in res.verdicts} == {f"{m}_vs_sft_at_equal_gain" for m in methods}
    for v, r in zip(res.verdicts, cells.itertuples()):
        assert v.estimate == pytest.approx(r.ratio)
        if np.isfinite(v.ci_lo):
            assert v.verdict == ("agrees" if v.ci_hi <= 1 else "disagrees" if v.ci_lo > 1 else "uninformative")
    assert (cells["n_units"] == 3).all()
    # the default scenario's result: TALR pays more than SFT at equal gain (the report's 7x, P1 exact)
    talr_exact = cells[(cells["method"] == "talr") & (cells["p1"] == "exact")].iloc[0]
    assert talr_exact["ratio"] > 1
    agree = res.info["sign_agreement"]
    assert agree["n_cells"] == 8 and 0 <= agree["agreement"] <= 1
    again = talr_map.run(cfg, tmp_path, progress=False)  # resumes from the stored rows
    assert len(again.frames["runs"]) == len(res.frames["runs"])
    assert np.allclose(again.frames["cells"]["ratio"], cells["ratio"])


def test_near_flow_regime_cuts_short_runs_into_enough_steps():
    """SFT reaches the gain in a few steps at λ; the near-flow regime reruns it with a step that needs
    about flow_min_steps, and the condition's agreement is computed on those cells."""
    cfg = _small(flow_min_steps=20)
    res = talr_map.run(cfg, None, progress=False)
    runs = res.frames["runs"].drop_duplicates(["seed", "regime", "method", "w_min", "tau_rule"])
    eq = runs[runs["regime"] == "equal_lr"].set_index(["seed", "method", "w_min", "tau_rule"])
    flow = runs[runs["regime"] == "near_flow"].set_index(["seed", "method", "w_min", "tau_rule"])
    assert (eq["lam"] == cfg.lam).all()
    short = eq["steps"] < cfg.flow_min_steps
    assert short.any()  # SFT at λ=64 is short, so the regime is exercised
    # reruns at a smaller λ take at least N steps; long runs are reused as they are
    assert (flow.loc[short[short].index, "steps"] >= cfg.flow_min_steps).all()
    assert (flow.loc[short[short].index, "lam"] <= cfg.lam * eq.loc[short, "steps"] / cfg.flow_min_steps).all()
    assert (flow.loc[short[~short].index, "lam"] == cfg.lam).all()
    nf = res.frames["near_flow_cells"]
    assert len(nf) == len(res.frames["cells"]) and (nf["regime"] == "near_flow").all()
    assert res.info["sign_agreement"]["n_cells"] == int(np.isfinite(nf["ratio"] * nf["predicted_win_fraction"]).sum())
    assert len(res.verdicts) == len(res.frames["cells"])  # verdicts only for the equal-LR comparison


def test_fewer_than_three_seeds_is_uninformative():
    res = talr_map.run(_small(n_seeds=2), None, progress=False)
    assert all(v.verdict == "uninformative" for v in res.verdicts)
    assert res.frames["cells"]["ci_lo"].isna().all()


def test_bad_grid_names_are_rejected():
    with pytest.raises(ValueError, match="tau_rules"):
        talr_map.run(replace(_small(), tau_rules=("mean",)), None, progress=False)


def test_figure_draws(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    res = talr_map.run(_small(), None, progress=False)
    saved = []
    talr_map.figures(res, lambda fig, name: (fig.savefig(tmp_path / f"{name}.png"), saved.append(name)))
    assert saved == ["talr_map_exact", "talr_map_mismodeled", "talr_map_condition"]


@pytest.mark.slow
def test_synthetic_cells_of_the_agreeing_domain():
    """Synthetic-lab cells (pretrains the agreeing-domain model once, ~90 s, then cached)."""
    res = talr_map.run(_small(synthetic_easy=("domain",), synthetic_steps=8, synthetic_evals=8), None,
                       progress=False)
    syn = res.frames["synthetic_cells"]
    assert set(syn["method"]) == {"talr", "dft"} and (syn["easy"] == "domain").all()
    assert any(v.claim.startswith("talr_vs_sft_at_equal_gain[synthetic,easy=domain") for v in res.verdicts)
    runs = res.frames["synthetic_runs"]
    assert set(runs["seed"]) == {0, 1, 2} and runs["delta_L"].notna().any()
