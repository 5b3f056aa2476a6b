"""Every stage in ``tiers.STAGES`` follows the protocol, and ``tiers.load_or_run`` reads what reproduce stored.

The stored results come from the session's one quick run (``quick_run`` in conftest.py), so no stage
runs here; the checks that must be able to fail are shown failing on fake stage modules.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from talr_theory import tiers
from talr_theory.tiers.protocol import TierResult, fingerprint
from talr_theory.verdicts import Verdict, verdict


def check_stored_stage(name: str, folder: Path, tmp: Path) -> TierResult:
    """The protocol on one stored stage: static shape, a TierResult of this stage, a lossless round trip, figures."""
    tiers.check_stage(name)
    mod = tiers.module(name)
    assert isinstance(mod.Config.quick(seed=3), mod.Config) and mod.Config.quick(seed=3).seed == 3
    assert mod.Config(seed=3).seed == 3
    result = tiers.checked_result(name, TierResult.load(folder))
    assert all(isinstance(v, Verdict) for v in result.verdicts)
    assert all(isinstance(f, pd.DataFrame) for f in result.frames.values())
    result.save(tmp / "again")
    again = TierResult.load(tmp / "again")
    assert again.to_json() == result.to_json()
    assert again.frames.keys() == result.frames.keys()
    for key, frame in result.frames.items():
        pd.testing.assert_frame_equal(again.frames[key], frame, obj=f"{name}.{key}")
    drawn = []
    mod.figures(result, lambda fig, fname: drawn.append(_drawn(fig, fname)))
    assert drawn, f"stage {name!r} drew no figure"
    assert all(fname.startswith(name) for fname in drawn), drawn  # figure names say their stage
    return result


def _drawn(fig, name: str) -> str:
    """Check that ``fig`` has drawn content, then close it unsaved (the session's run wrote the PNGs)."""
    import matplotlib.pyplot as plt

    artists = [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]
    plt.close(fig)
    assert artists, f"figure {name!r} is empty"
    return name


@pytest.mark.parametrize("name", tiers.STAGES)
def test_stage_follows_the_protocol(name, quick_run, tmp_path):
    check_stored_stage(name, quick_run / "stages" / name, tmp_path)


@pytest.mark.parametrize("name", tiers.STAGES)
def test_load_or_run_reads_the_stored_stage_without_running(name, quick_run, monkeypatch):
    mod = tiers.module(name)
    monkeypatch.setattr(mod, "run", lambda *a, **k: pytest.fail(f"{name} ran although it was stored"))
    result = tiers.load_or_run(name, quick_run)  # options follow quick_run/summary.json
    assert result.to_json() == TierResult.load(quick_run / "stages" / name).to_json()


def test_stage_config_takes_the_run_wide_options_a_stage_has():
    assert tiers.stage_config("llm", quick=True, model="tiny-random").model == "tiny-random"
    assert not hasattr(tiers.stage_config("exact", quick=True, model="x"), "model")
    assert tiers.stage_config("exact", quick=False, seed=2) == tiers.module("exact").Config(seed=2)
    with pytest.raises(TypeError, match="lr"):
        tiers.stage_config("exact", lr=1.0)


# ----------------------------------------------------------------------------------------------
# Fake stages: the checks fail when the protocol is broken


@dataclasses.dataclass(frozen=True)
class _Cfg:
    n: int = 4
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0):
        return cls(n=2, seed=seed)


@dataclasses.dataclass(frozen=True)
class _NoQuick:
    seed: int = 0


def _fake_stage(monkeypatch, calls: list, returns=None, config=_Cfg) -> types.ModuleType:
    """Register ``talr_theory.tiers.fake`` (a stage whose run records its config) as a member of STAGES."""
    mod = types.ModuleType("talr_theory.tiers.fake")
    mod.NAME, mod.Config = "fake", config

    def run(cfg, out=None, progress=True):
        calls.append(cfg)
        if returns is not None:
            return returns
        return TierResult("fake", dataclasses.asdict(cfg), {"points": pd.DataFrame({"n": [cfg.n]})},
                          [verdict("toy", "fake", "q", 0.5, (0.4, 0.6), 0.5, 2.0)], {"summary": "fake"})

    mod.run, mod.figures = run, lambda result, save: None
    monkeypatch.setitem(sys.modules, "talr_theory.tiers.fake", mod)
    monkeypatch.setattr(tiers, "STAGES", (*tiers.STAGES, "fake"))
    return mod


def test_a_stage_without_quick_fails_the_protocol(monkeypatch):
    _fake_stage(monkeypatch, [], config=_NoQuick)
    with pytest.raises(TypeError, match="quick"):
        tiers.check_stage("fake")


def test_a_stage_returning_something_else_fails(monkeypatch, tmp_path):
    _fake_stage(monkeypatch, [], returns={"tier": "fake"})
    with pytest.raises(TypeError, match="not a TierResult"):
        tiers.load_or_run("fake", tmp_path)
    assert not (tmp_path / "stages" / "fake").exists()  # nothing half-stored


def test_the_stored_stage_check_fails_on_a_stage_without_figures(monkeypatch, tmp_path):
    _fake_stage(monkeypatch, [])  # its figures() draws nothing
    tiers.load_or_run("fake", tmp_path / "out")
    with pytest.raises(AssertionError, match="no figure"):
        check_stored_stage("fake", tmp_path / "out" / "stages" / "fake", tmp_path)


def test_load_or_run_stores_once_and_reruns_on_another_config(monkeypatch, tmp_path):
    calls: list = []
    _fake_stage(monkeypatch, calls)
    first = tiers.load_or_run("fake", tmp_path)  # no summary.json: quick scale, seed 0
    again = tiers.load_or_run("fake", tmp_path)
    assert calls == [_Cfg(n=2, seed=0)] and again.to_json() == first.to_json()
    stamp = (tmp_path / "stages" / "fake" / "fingerprint.json").read_text()
    assert fingerprint(_Cfg(n=2, seed=0)) in stamp
    with pytest.warns(UserWarning, match="another config"):
        tiers.load_or_run("fake", tmp_path, quick=False)
    assert calls == [_Cfg(n=2, seed=0), _Cfg(n=4, seed=0)]


def test_load_or_run_follows_the_recorded_run_options(monkeypatch, tmp_path):
    calls: list = []
    _fake_stage(monkeypatch, calls)
    (tmp_path / "summary.json").write_text('{"config": {"quick": false, "seed": 7, "model": null}}')
    tiers.load_or_run("fake", tmp_path)
    tiers.load_or_run("fake", None, seed=1)  # in memory: nothing read, quick by default
    assert calls == [_Cfg(n=4, seed=7), _Cfg(n=2, seed=1)]


def test_a_fresh_stage_returns_what_it_stored(tmp_path):
    """The report of a fresh run and a reader of the stored stage see the same values, even where storage
    changes them (a mixed object column is stored as JSON text)."""
    from talr_theory.tiers.protocol import StageStore

    frame = pd.DataFrame({"mixed": [True, None, 1.5], "n": [1, 2, 3]})
    result = TierResult("toy", {"seed": 0}, {"cases": frame}, [], {})
    fresh = StageStore(tmp_path).run("toy", _Cfg(), lambda: result)
    stored = TierResult.load(tmp_path / "stages" / "toy")
    assert fresh is not result
    pd.testing.assert_frame_equal(fresh.frames["cases"], stored.frames["cases"])
    assert fresh.frames["cases"]["mixed"].tolist() != frame["mixed"].tolist()  # storage did change it
