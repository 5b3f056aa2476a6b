"""The advisor stage's resumable loop and figure, on units whose cases are known in advance (no training)."""

from __future__ import annotations

import pandas as pd
import pytest

from talr_theory.tiers import advisor as stage


def _fake_cases(scenario: str, seed: int) -> list[dict]:
    """Three tolerances per unit; values that identify the unit so a mix-up would show."""
    k = int(scenario[1:])
    return [{"epsilon": 0.01 * (i + 1), "gain": 0.5, "status": "ok" if i < 2 else "cannot-certify",
             "recommended_lr": 0.01 * k + i if i < 2 else None, "observed_delta_L": 0.005 * (i + 1) + seed * 1e-6,
             "within_epsilon": True if i < 2 else None, "inside_pilot_range": True if i < 2 else None,
             "true_safe_lr": 0.1 * k, "grid_bracket": "ok", "ratio_to_true": 0.5 + 0.1 * i if i < 2 else float("nan"),
             "n_extra_pilots": 0, "reason": "", "fit_lr": float("nan")} for i in range(3)]


@pytest.fixture
def fake_units(monkeypatch):
    calls = []

    def unit(cfg, scenario, seed, lab):
        calls.append((scenario, seed))
        return _fake_cases(scenario, seed)

    monkeypatch.setattr(stage, "_unit", unit)
    return calls


def test_every_case_of_every_unit_is_stored_once_and_read_back(tmp_path, fake_units):
    cfg = stage.Config(scenarios=("s1", "s3"), n_seeds=2, seed=1)
    labs = []
    first = stage.collect_cases(cfg, tmp_path, False, lambda: labs.append(1) or "lab")
    assert len(first) == 2 * 2 * 3 and len(fake_units) == 4 and labs == [1]
    assert set(zip(first["scenario"], first["seed"])) == {("s1", 1000), ("s1", 1001), ("s3", 1000), ("s3", 1001)}
    again = stage.collect_cases(cfg, tmp_path, False, lambda: labs.append(1) or "lab")
    assert len(fake_units) == 4 and labs == [1]  # resumed: nothing recomputed, the lab not even loaded
    key = ["scenario", "seed", "epsilon"]
    pd.testing.assert_frame_equal(first.sort_values(key).reset_index(drop=True),
                                  again[first.columns].sort_values(key).reset_index(drop=True))
    expected = pd.DataFrame([{**c, "scenario": sc, "seed": s} for sc in ("s1", "s3") for s in (1000, 1001)
                             for c in _fake_cases(sc, s)])
    got = again.sort_values(key).reset_index(drop=True)
    assert got["recommended_lr"].tolist() == pytest.approx(expected.sort_values(key)["recommended_lr"].tolist(),
                                                           nan_ok=True)
    assert got["observed_delta_L"].tolist() == expected.sort_values(key)["observed_delta_L"].tolist()  # exact


def test_summary_and_figure_from_the_stored_cases(tmp_path, fake_units):
    import matplotlib

    matplotlib.use("Agg")
    cfg = stage.Config(scenarios=("s1", "s2"), n_seeds=1)
    cases = stage.collect_cases(cfg, None, False, lambda: "lab")
    s = stage.summarize(cases)
    assert (s["n_cases"], s["n_certified"], s["n_cannot_certify"]) == (6, 4, 2)
    assert s["median_ratio_to_true_safe_lr"] == pytest.approx(0.55)
    from talr_theory.plotting.lab import advisor_validation

    fig = advisor_validation(cases)
    labels = [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert not set(labels) & set(cases.columns)  # axes in words, never a raw column name
    assert "4 of 6 cases certified" in fig._suptitle.get_text()
