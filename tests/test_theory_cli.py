"""`talr-theory bounds --tier exact --quick --json -`: exit code, the verdicts list, the tables under --out."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from talr_theory.cli import main
from talr_theory.verdicts import LABELS, judge

FIELDS = ("claim", "tier", "quantity", "estimate", "ci_lo", "ci_hi", "paper_value", "alternative_value", "verdict")


@pytest.fixture(scope="module")
def quick_json():
    proc = subprocess.run(
        [sys.executable, "-m", "talr_theory.cli", "bounds", "--tier", "exact", "--quick", "--json", "-",
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exact tier" in proc.stderr  # the readable summary goes to stderr with --json -
    return json.loads(proc.stdout)


def test_verdicts_list_recomputes_from_its_own_fields(quick_json):
    verdicts = quick_json["verdicts"]
    claims = {v["claim"].split("[")[0] for v in verdicts}
    assert {"thm3.2_eps_exponent", "thm3.2_s_exponent", "thm3.1_fixed_gain_slope", "thm3.1_lr_at_equal_gain",
            "talr_vs_sft_at_equal_gain", "tilt_bounds", "tilt_identity"} <= claims
    for v in verdicts:
        assert set(FIELDS) <= set(v), v
        assert v["tier"] == "exact" and v["verdict"] in LABELS
        if v["verdict"] != "code-check":
            assert judge(v["ci_lo"], v["ci_hi"], v["paper_value"], v["alternative_value"]) == v["verdict"], v
    checks = {v["claim"]: v for v in verdicts if v["verdict"] == "code-check"}
    assert checks["tilt_bounds"]["estimate"] == 0          # no bound violation in any single step
    assert checks["tilt_identity"]["estimate"] < 1e-9       # the four forms of ΔL agree
    # The ε exponent of the exactly modeled P1 is the second-order ½, not the paper's 1 (docs/theory.md C2):
    # a toolkit that cannot say "disagrees" would fail here.
    eps_exact = next(v for v in verdicts if v["claim"] == "thm3.2_eps_exponent[SFT, P1=exact]")
    assert eps_exact["verdict"] == "disagrees" and abs(eps_exact["estimate"] - 0.5) < 0.05


def test_json_file_and_tables(tmp_path, capsys):
    target = tmp_path / "s.json"
    rc = main(["bounds", "--tier", "exact", "--quick", "--json", str(target), "--out", str(tmp_path / "tables"),
               "--no-progress"])
    assert rc == 0
    data = json.loads(target.read_text())
    assert data["tier"] == "exact" and data["config"]["seed"] == 0
    stored = json.loads((tmp_path / "tables" / "result.json").read_text())
    assert stored["verdicts"] == data["verdicts"]
    lam = pd.read_parquet(tmp_path / "tables" / "lambda_max.parquet")
    assert {"lambda_max", "epsilon", "s"} <= set(lam.columns) and len(lam) > 0
    assert "exact tier" in capsys.readouterr().out


def test_model_flag_is_refused_for_tiers_without_a_model(capsys):
    assert main(["bounds", "--tier", "exact", "--quick", "--model", "tiny-random"]) == 2
    assert "--model applies to --tier llm only" in capsys.readouterr().err
