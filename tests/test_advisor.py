"""Advisor guarantees: never outside the measured pilot range, extra pilots, cannot-certify, CLI input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talr_theory.advisor.rule import advise_with_pilots


def _runner(curve, calls):
    """A pilot runner whose ΔL at gain 1 is curve(lr) (Δ* rises 0.25 per step to 2)."""
    def run(lr):
        calls.append(lr)
        t = np.arange(9)
        ds = 0.25 * t
        return pd.DataFrame({"step": t, "delta_star": ds, "delta_L": ds * curve(lr)})
    return run


def test_fit_above_the_pilots_runs_higher_pilots_and_stays_inside():
    curve = lambda lr: lr**2 * (1 + 10 * lr)  # noqa: E731  not a pure power law: the fit is off
    eps = curve(0.3)  # true safe LR 0.3: far above the pilots 0.01..0.04
    calls: list[float] = []
    adv = advise_with_pilots(_runner(curve, calls), (0.01, 0.02, 0.04), eps, gain=1.0, factor=3.0, max_extra=3)
    extra = adv["extra_pilot_lrs"]
    assert calls[:3] == [0.01, 0.02, 0.04] and calls[3:] == extra and len(extra) >= 1
    jumps = np.array(extra) / np.array([0.04, *extra[:-1]])
    assert np.all((jumps >= 3 - 1e-9) & (jumps <= 10 + 1e-9))  # beyond the range by x3..x10 each time
    assert adv["status"] == "ok"
    lo, hi = adv["bracket"]
    assert lo in calls and hi in calls and curve(lo) <= eps < curve(hi)
    assert lo <= adv["recommended_lr"] <= min(hi, 0.3)  # inside the measured range, conservative (convex)


def test_no_extra_pilots_means_cannot_certify_not_extrapolation():
    calls: list[float] = []
    adv = advise_with_pilots(_runner(lambda lr: lr**2, calls), (0.01, 0.02, 0.04), 0.2**2, gain=1.0, max_extra=0)
    assert adv["status"] == "cannot-certify" and adv["recommended_lr"] is None
    assert adv["fit_lr"] == pytest.approx(0.2, rel=1e-6)  # the fit knew; the advisor still would not certify it
    assert "above the largest pilot" in adv["reason"] and calls == [0.01, 0.02, 0.04]


def test_all_pilots_above_epsilon_is_cannot_certify():
    calls: list[float] = []
    adv = advise_with_pilots(_runner(lambda lr: 1.0 + lr, calls), (0.01, 0.02, 0.04), 0.5, gain=1.0, max_extra=2)
    assert adv["status"] == "cannot-certify" and adv["recommended_lr"] is None
    assert adv["extra_pilot_lrs"] == pytest.approx([0.001, 0.0001])  # the fit is flat: the largest jump, x10
    assert "below the smallest pilot" in adv["reason"] and "after 2 extra pilot(s)" in adv["reason"]


def test_recommendation_never_exceeds_the_true_safe_lr_on_convex_curves():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, p = rng.uniform(0.5, 5.0), rng.uniform(1.0, 3.0)
        eps = c * rng.uniform(0.005, 0.05) ** p
        adv = advise_with_pilots(_runner(lambda lr, c=c, p=p: c * lr**p, []), (0.005, 0.015, 0.045), eps,
                                 gain=1.0, max_extra=3)
        true = (eps / c) ** (1 / p)
        if adv["status"] == "ok":
            lo, hi = adv["bracket"]
            assert lo <= adv["recommended_lr"] <= hi
            assert adv["recommended_lr"] <= true * (1 + 1e-9)


# (flag, bad value): each must stop `advise` at parse time with exit 2, naming the flag
BAD_OPTIONS = [
    ("--epsilon", "-1"), ("--epsilon", "0"), ("--epsilon", "nan"), ("--epsilon", "abc"),
    ("--gain", "-1"), ("--gain", "0"), ("--gain", "inf"),
    ("--pilot-steps", "0"), ("--pilot-steps", "1.5"),
    ("--pilot-lrs", "1e-5,-1e-4"), ("--pilot-lrs", "0,1e-4"), ("--pilot-lrs", "1e-4"), ("--pilot-lrs", "1e-4,1e-4"),
    ("--pilot-lrs", ","), ("--pilot-seeds", "0"), ("--batch-size", "0"), ("--n-train", "0"), ("--n-eval", "-2"),
    ("--n-samples", "0"), ("--sample-len", "0"), ("--max-length", "-1"), ("--max-length", "1.5"), ("--max-extra-pilots", "-1"),
    ("--extra-factor", "1"), ("--extra-factor", "11"), ("--seed", "-1"), ("--format", "prose"), ("--method", "adam"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_OPTIONS, ids=[f"{f}={v}" for f, v in BAD_OPTIONS])
def test_cli_rejects_bad_options_before_any_work(flag, value, capsys, monkeypatch):
    import time

    import talr_theory.data.sft as sft
    import talr_theory.models as models
    from talr_theory.cli import main

    def forbidden(*args, **kwargs):
        raise AssertionError("data or a model was loaded before the options were checked")

    monkeypatch.setattr(models, "load_model", forbidden)
    monkeypatch.setattr(sft, "load_sft", forbidden)
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(["advise", "--model", "tiny-random", "--epsilon", "0.05", flag, value])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"argument {flag}:" in err and "Traceback" not in err
    assert err.rstrip().splitlines()[-1].startswith("talr-theory advise: error:")  # its own line, not a bar's
    assert elapsed < 5.0


def test_max_length_0_means_no_limit_as_in_the_other_commands():
    from talr_theory.advisor.config import AdviseConfig
    from talr_theory.cli import build_parser
    from talr_theory.configs import dataclass_from_args

    args = build_parser().parse_args(["advise", "--epsilon", "0.1", "--max-length", "0"])
    assert dataclass_from_args(AdviseConfig, args).max_length is None  # None: the model's context length
    assert AdviseConfig(epsilon=0.1, max_length=0).max_length is None
    assert AdviseConfig(epsilon=0.1, max_length=64).max_length == 64


@pytest.mark.parametrize("extra", [["--out", "somewhere"], ["--overwrite"], ["--quick"]])
def test_validation_flags_without_validate_are_refused(extra, capsys, tmp_path, monkeypatch):
    from talr_theory.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--model", "tiny-random", "--epsilon", "0.05", *extra]) == 2
    err = capsys.readouterr().err
    assert extra[0] in err and "--validate" in err and "Traceback" not in err
    assert not (tmp_path / "somewhere").exists()


def test_cli_requires_epsilon_unless_validating(capsys):
    from talr_theory.cli import main

    assert main(["advise", "--model", "tiny-random"]) == 2
    assert "--epsilon is required" in capsys.readouterr().err


def test_every_flag_has_help_and_shows_its_default_once():
    import dataclasses
    import re

    from talr_theory.advisor.config import AdviseConfig
    from talr_theory.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["advise"]
    by_dest = {a.dest: a for a in sub._actions}
    for field in dataclasses.fields(AdviseConfig):
        action = by_dest[field.name]
        assert action.option_strings == ["--" + field.name.replace("_", "-")]
        text = action.help % {}  # argparse's own expansion: a stray % would raise here
        assert len(text) > 30 and text.count("(default:") == 1, (field.name, text)
    helptext = " ".join(sub.format_help().split())
    assert not re.search(r"default: \S+\) \(default", helptext)
    for flag in ("--batch-size", "--n-train", "--n-eval", "--sample-len", "--seed"):
        assert flag in helptext


def test_config_in_code_gets_the_same_checks():
    from talr_theory.advisor.config import AdviseConfig

    assert AdviseConfig(epsilon=0.1, pilot_lrs=[1e-4, 1e-3]).pilot_lrs == (1e-4, 1e-3)
    for kwargs, flag in (({"gain": -1.0}, "--gain"), ({"pilot_steps": 0}, "--pilot-steps"),
                         ({"pilot_lrs": (1e-4,)}, "--pilot-lrs"), ({"pilot_lrs": (1e-4, -1.0)}, "--pilot-lrs"),
                         ({"epsilon": float("nan")}, "--epsilon"), ({"pilot_seeds": 0}, "--pilot-seeds"),
                         ({"method": "adam"}, "--method"), ({"pilot_steps": 2.5}, "--pilot-steps")):
        with pytest.raises(ValueError, match=flag):
            AdviseConfig(**kwargs)


def test_cli_names_dropped_examples_and_the_flag(capsys):
    from talr_theory.cli import main

    rc = main(["advise", "--model", "tiny-random", "--data", "medcalc-synth:20", "--epsilon", "0.05",
               "--max-length", "40", "--n-train", "4", "--n-eval", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "4 of 4 train examples were dropped" in err and "--max-length 40" in err
    assert "rerun with --max-length" in err


def test_summary_counts_only_certified_cases():
    from talr_theory.tiers.advisor import summarize

    cases = pd.DataFrame({"status": ["ok", "ok", "ok", "cannot-certify"], "within_epsilon": [True, False, True, None],
                          "inside_pilot_range": [True, True, True, None],
                          "ratio_to_true": [0.8, 1.1, np.nan, np.nan]})
    s = summarize(cases)
    assert (s["n_cases"], s["n_certified"], s["n_cannot_certify"]) == (4, 3, 1)
    assert s["frac_within_epsilon"] == pytest.approx(2 / 3)
    assert s["median_ratio_to_true_safe_lr"] == pytest.approx(0.95) and s["n_ratio_measured"] == 2


@pytest.mark.slow
def test_validate_quick_meets_the_guarantee(capsys, tmp_path):
    """`advise --validate --quick`: ≥ 20 cases, ≥ 10 certified, ≥ 90% of certified within ε (~35 s)."""
    import json

    from talr_theory.cli import main

    assert main(["advise", "--validate", "--quick", "--out", str(tmp_path), "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_cases"] >= 20 and out["n_certified"] >= 10
    assert out["frac_within_epsilon"] >= 0.9
    assert out["n_outside_pilot_range"] == 0
