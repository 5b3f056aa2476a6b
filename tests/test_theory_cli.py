"""`talr-theory bounds --tier exact --quick --json -`: exit code, schema, must-show values."""

import json
import subprocess
import sys

import pytest

from talr_theory.cli import main


@pytest.fixture(scope="module")
def quick_json():
    proc = subprocess.run(
        [sys.executable, "-m", "talr_theory.cli", "bounds", "--tier", "exact", "--quick", "--json", "-",
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Theorem 3.1" in proc.stderr  # readable summary goes to stderr with --json -
    return json.loads(proc.stdout)


def test_schema_and_must_show_values(quick_json):
    out = quick_json
    assert out["identity_max_abs_error"] < 1e-9
    ss = out["single_step"]
    for key in ("n_instances", "lower_bound_violations", "upper_bound_violations", "max_relative_gap"):
        assert key in ss
    assert ss["n_instances"] > 0
    assert ss["lower_bound_violations"] == 0 and ss["upper_bound_violations"] == 0
    t1 = out["theorem_3_1"]
    for key in ("k1", "k2", "beta_best", "holdout_violation_rate"):
        assert isinstance(t1[key], float)
    assert t1["k1"] >= 0 and t1["k2"] >= 0 and 0 <= t1["holdout_violation_rate"] <= 1
    for block in ("theorem_3_2", "theorem_3_2_talr", "theorem_3_2_mismodeled", "theorem_3_2_talr_mismodeled"):
        b = out[block]
        for key in ("eps_exponent", "eps_exponent_ci", "s_exponent", "s_exponent_ci", "regime"):
            assert key in b, (block, key)
        for key in ("eps", "s"):
            lo, hi = b[f"{key}_exponent_ci"]
            assert lo <= b[f"{key}_exponent"] <= hi, (block, key)
    assert "effective_s" in out["theorem_3_2_talr"]
    assert isinstance(out["notes"], list) and all(isinstance(n, str) for n in out["notes"])
    # The notes compare with the paper in plain words.
    assert any("paper" in n for n in out["notes"])


def test_json_file_and_tables(tmp_path, capsys):
    target = tmp_path / "s.json"
    rc = main(["bounds", "--tier", "exact", "--quick", "--json", str(target), "--out", str(tmp_path / "tables"),
               "--no-progress"])
    assert rc == 0
    data = json.loads(target.read_text())
    assert data["tier"] == "exact"
    for name in ("single_step", "trajectories", "envelope_points", "lambda_max"):
        assert (tmp_path / "tables" / f"{name}.csv").exists()
        assert (tmp_path / "tables" / f"{name}.parquet").exists()
    assert "exact tier" in capsys.readouterr().out
