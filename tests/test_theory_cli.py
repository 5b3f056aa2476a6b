"""`talr-theory bounds --tier exact --quick --json -`: exit code, the verdicts list with protocols, the tables."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from talr_theory.claims import CLAIMS, base_id
from talr_theory.cli import main
from talr_theory.tiers import STAGES
from talr_theory.verdicts import LABELS, PROTOCOLS, Verdict

FIELDS = ("claim", "tier", "protocol", "quantity", "estimate", "ci_lo", "ci_hi", "paper_value", "alternative_value",
          "verdict", "n_units", "n_seeds")


def exact_units_of(quick_run, folder):
    """``folder`` seeded with the exact stage's per-unit results stored by the session's quick run.

    ``bounds --tier exact --quick --out folder`` then reads those units back instead of computing them
    again (the same quick config, so the same fingerprinted results folders); the rest of the stage,
    the verdicts, the JSON and the tables are computed as in a fresh run.
    """
    import shutil

    for src in (quick_run / "results").glob("exact_*"):
        shutil.copytree(src, folder / "results" / src.name)
    assert list((folder / "results").glob("exact_*")), "the quick run stored no exact units"
    return folder


@pytest.fixture(scope="module")
def bounds_run(quick_run, tmp_path_factory):
    out = exact_units_of(quick_run, tmp_path_factory.mktemp("bounds"))
    proc = subprocess.run(
        [sys.executable, "-m", "talr_theory.cli", "bounds", "--tier", "exact", "--quick", "--json", "-",
         "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exact tier" in proc.stderr  # the readable summary goes to stderr with --json -
    return proc


@pytest.fixture(scope="module")
def quick_json(bounds_run):
    return json.loads(bounds_run.stdout)


@pytest.fixture(scope="module")
def quick_json_stderr(bounds_run):
    return bounds_run.stderr


def test_every_record_has_a_protocol_and_registered_claims_use_the_registry(quick_json):
    verdicts = quick_json["verdicts"]
    assert verdicts and {v["tier"] for v in verdicts} == {"exact"}
    for v in verdicts:
        assert set(FIELDS) <= set(v), v
        assert v["protocol"] in PROTOCOLS and v["verdict"] in LABELS, v
        c = CLAIMS.get(base_id(v["claim"]))
        if c is not None and v["verdict"] != "code-check":
            reading = c.reading(v["protocol"])  # a tier never types a claim's values or wording
            assert v["quantity"] == reading.quantity, v
            assert Verdict.from_dict(v).paper_value == reading.paper_value, v
            assert Verdict.from_dict(v).alternative_value == reading.alternative_value, v
    checks = {v["claim"]: v for v in verdicts if v["verdict"] == "code-check"}
    assert checks["tilt_bounds"]["estimate"] == 0          # no bound violation in any single step
    assert checks["tilt_identity"]["estimate"] < 1e-9       # the four forms of ΔL agree


def test_printed_verdicts_are_in_words(quick_json_stderr):
    assert "(0.0, 1.0)" not in quick_json_stderr and "alternative None" not in quick_json_stderr


def test_tier_choices_are_the_stages(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bounds", "--tier", "no-such-tier"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(f"'{name}'" in err for name in STAGES), err


def test_json_file_and_tables(quick_run, tmp_path, capsys):
    target = tmp_path / "s.json"
    (tmp_path / "tables").mkdir()
    rc = main(["bounds", "--tier", "exact", "--quick", "--json", str(target),
               "--out", str(exact_units_of(quick_run, tmp_path / "tables")), "--no-progress"])
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
    assert "--model does not apply to --tier exact" in capsys.readouterr().err
