"""Output folders hold one experiment, one writer at a time; files are written atomically; help shows defaults once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from talr_theory import outputs
from talr_theory.cli import build_parser, main


@pytest.fixture
def no_model_load(monkeypatch):
    import talr_theory.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load_model", refuse)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _sweep_argv(out, steps=10):
    return ["sweep", "--model", "tiny-random", "--data", "medcalc-synth:8", "--methods", "sft", "--lrs", "1e-3",
            "--steps", str(steps), "--out", str(out), "--no-progress", "--no-figures"]


def _sweep_record(out, steps):
    """The experiment record a sweep with ``_sweep_argv(out, steps)`` writes, built without running it."""
    from talr_theory.commands.sweep import resolve_config
    from talr_theory.training.sweep import experiment_config

    args = build_parser().parse_args(_sweep_argv(out, steps))
    return experiment_config(resolve_config(args))


# --- one folder = one experiment ------------------------------------------------------------------------


def test_differing_config_exits_2_naming_the_field_and_changes_nothing(tmp_path, capsys, no_model_load):
    out = tmp_path / "D"
    out.mkdir()
    outputs.write_experiment(out, "sweep", _sweep_record(out, steps=10))
    (out / "results.parquet").write_bytes(b"previous results")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert main(_sweep_argv(out, steps=6)) == 2
    err = capsys.readouterr().err
    assert "--steps 10 in the folder, 6 now" in err and "--overwrite" in err and "Traceback" not in err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


def test_tokens_out_with_other_options_is_refused_before_the_scan(tmp_path, capsys, no_model_load):
    from talr_theory.commands.tokens import TokensConfig, experiment_config

    out = tmp_path / "T"
    out.mkdir()
    outputs.write_experiment(out, "tokens", experiment_config(TokensConfig(model="tiny-random", thresholds=(0.2,))))
    assert main(["tokens", "--model", "tiny-random", "--thresholds", "0.1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--thresholds 0.2 in the folder, 0.1 now" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json"]


def test_same_config_resumes_and_another_kind_is_refused(tmp_path):
    cfg = {"steps": 10, "train": {"lr": 1e-3, "wise_alphas": [0.5]}}
    assert not outputs.check_experiment(tmp_path, "sweep", cfg)  # empty folder: a new experiment
    outputs.write_experiment(tmp_path, "sweep", cfg)
    assert outputs.check_experiment(tmp_path, "sweep", json.loads(json.dumps(cfg)))  # same values resume
    with pytest.raises(outputs.OutputConflict, match="--lr 0.001 in the folder, 0.01 now"):
        outputs.check_experiment(tmp_path, "sweep", {"steps": 10, "train": {"lr": 1e-2, "wise_alphas": [0.5]}})
    with pytest.raises(outputs.OutputConflict, match="talr-theory sweep"):
        outputs.check_experiment(tmp_path, "tokens", cfg)


def test_differing_fields_flattens_and_reports_added_and_removed_keys():
    a = {"x": 1, "t": {"steps": 10, "alphas": [0.5]}, "gone": 1}
    b = {"x": 1, "t": {"steps": 6, "alphas": (0.5,)}, "new": 2}
    assert outputs.differing_fields(a, b) == ["gone", "new", "t.steps"]


def test_overwrite_discards_only_the_named_results(tmp_path):
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "r.parquet").write_text("row")
    (tmp_path / "notes.txt").write_text("the user's own file")
    outputs.write_experiment(tmp_path, "sweep", {"steps": 10})
    with outputs.claim_folder(tmp_path, "sweep", {"steps": 6}, overwrite=True, results=("rows",)) as resumed:
        assert resumed is False
    assert not (tmp_path / "rows").exists() and (tmp_path / "notes.txt").read_text() == "the user's own file"
    assert json.loads((tmp_path / "experiment.json").read_text())["config"] == {"steps": 6}


# --- bounds --out and advise --validate --out claim their folder too -------------------------------------


@pytest.fixture
def fake_exact(monkeypatch):
    """The exact stage replaced by one that returns two known verdicts at once (and counts its runs)."""
    import pandas as pd

    from talr_theory.tiers import exact
    from talr_theory.tiers.protocol import TierResult
    from talr_theory.verdicts import verdict

    calls = []

    def run(cfg, out=None, progress=True):
        calls.append(out)
        verdicts = [verdict("c_range", "exact", "a ratio", 0.5, (0.4, 0.6), (0.0, 1.0), None, n_units=12),
                    verdict("c_point", "exact", "an exponent", 0.9, (0.8, 1.1), 1.0, 0.5, protocol="stricter",
                            n_units=12)]
        return TierResult("exact", {"seed": cfg.seed}, {"units": pd.DataFrame({"x": [1.0, 2.0]})}, verdicts)

    monkeypatch.setattr(exact, "run", run)
    return calls


def test_bounds_out_resumes_with_the_same_options_and_refuses_others(tmp_path, capsys, fake_exact):
    out = tmp_path / "B"
    argv = ["bounds", "--tier", "exact", "--quick", "--no-progress", "--out", str(out)]
    assert main(argv) == 0 and main(argv) == 0  # the same options: the second run resumes
    record = json.loads((out / "experiment.json").read_text())
    assert record["kind"] == "bounds" and record["config"]["seed"] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--seed 0 in the folder, 1 now" in err and "Traceback" not in err
    assert len(fake_exact) == 2  # the refused run did no work
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "experiment.json").read_text())["config"]["seed"] == 1


def test_bounds_prints_the_yardstick_in_words(tmp_path, capsys, fake_exact):
    assert main(["bounds", "--tier", "exact", "--quick", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "c_range (paper's protocol): a ratio = 0.5 [0.4, 0.6] (the paper: in [0, 1]; no alternative value)" in text
    assert "c_point (stricter reading): an exponent = 0.9 [0.8, 1.1] (the paper: 1; alternative: 0.5)" in text
    assert "None" not in text and "(0.0, 1.0)" not in text


def test_bounds_out_held_by_another_writer_is_refused_before_work(tmp_path, capsys, fake_exact):
    out = tmp_path / "B"
    lock = outputs.acquire_lock(out, "main", "another bounds")
    try:
        assert main(["bounds", "--tier", "exact", "--quick", "--no-progress", "--out", str(out)]) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err and not fake_exact
    finally:
        outputs.release_lock(lock)


def test_advise_validate_out_with_other_options_is_refused_before_work(tmp_path, capsys, monkeypatch):
    from talr_theory.tiers import advisor as stage

    def refuse(*args, **kwargs):
        raise AssertionError("the validation ran")

    monkeypatch.setattr(stage, "run", refuse)
    out = tmp_path / "V"
    out.mkdir()
    outputs.write_experiment(out, "advise", {"on": "synthetic", "quick": True, "seed": 0})
    assert main(["advise", "--validate", "--quick", "--seed", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--seed 0 in the folder, 3 now" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json"]


def test_reproduce_names_each_stage_model_in_words():
    from talr_theory.reproduce import models_sentence
    from talr_theory.tiers.protocol import TierResult

    stages = [TierResult("exact", {}), TierResult("synthetic", {"model": None}),
              TierResult("tokens", {"model": "smollm2-135m"}), TierResult("llm", {"model": "tiny-random:7"}),
              TierResult("advisor", {"model": "/models/my-run/"})]
    text = models_sentence(stages)
    assert text == ("Models: SmolLM2-135M-Instruct in the tokens stage; tiny-random (random weights, pipeline "
                    "check) in the llm stage; my-run in the advisor stage. The exact and synthetic stages load "
                    "no model (closed-form models or small models trained from scratch).")
    assert models_sentence(stages[:2]) == "No stage loads a model."
    assert "`" not in text and "stage defaults" not in text


# --- one writer at a time ---------------------------------------------------------------------------------


def test_live_lock_refuses_a_second_writer_naming_its_pid(tmp_path, capsys, no_model_load):
    out = tmp_path / "D"
    lock = outputs.acquire_lock(out, "main", "the first sweep")
    try:
        assert main(_sweep_argv(out)) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and ".lock.main" in err
        assert not (out / "experiment.json").exists()  # refused before touching the folder's record
    finally:
        outputs.release_lock(lock)
    assert not lock.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / ".lock.main"
    import socket

    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": 0}))
    lock = outputs.acquire_lock(tmp_path, "main")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    outputs.release_lock(lock)


def test_shards_share_a_folder_but_never_with_an_unsharded_writer(tmp_path):
    a = outputs.acquire_lock(tmp_path, "shard-0-of-2")
    b = outputs.acquire_lock(tmp_path, "shard-1-of-2")
    with pytest.raises(outputs.OutputConflict, match="shard-0-of-2|shard-1-of-2"):
        outputs.acquire_lock(tmp_path, "main")
    assert not (tmp_path / ".lock.main").exists()  # the refused writer left no lock behind
    with pytest.raises(outputs.OutputConflict):
        outputs.acquire_lock(tmp_path, "shard-0-of-2")
    outputs.release_lock(a)
    outputs.release_lock(b)
    outputs.release_lock(outputs.acquire_lock(tmp_path, "main"))


# --- atomic writes and output paths -----------------------------------------------------------------------


def test_atomic_write_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "summary.json"
    outputs.atomic_write_text(target, "old")

    def half_then_crash(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        outputs.atomic_write(target, half_then_crash)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_output_path_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    outputs.check_folder_target(tmp_path / "new" / "deeper", "--out")  # creatable: fine
    outputs.check_file_target(tmp_path / "new" / "page.html", "--html")
    outputs.check_file_target("-", "--json", allow_stdout=True)
    with pytest.raises(outputs.BadOption, match="^--out .*existing file"):
        outputs.check_folder_target(f, "--out")
    with pytest.raises(outputs.BadOption, match="^--out .*is a file"):
        outputs.check_folder_target(f / "sub", "--out")
    with pytest.raises(outputs.BadOption, match="^--html .*existing folder"):
        outputs.check_file_target(tmp_path, "--html")
    with pytest.raises(outputs.BadOption, match="^--json .*existing folder"):
        outputs.check_file_target(tmp_path, "--json", allow_stdout=True)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_refused(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(outputs.BadOption, match="not writable"):
            outputs.check_folder_target(locked / "out", "--out")
    finally:
        locked.chmod(0o700)


# --- help in the user's words -------------------------------------------------------------------------------


def _subparsers():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", ["sweep", "tokens", "reproduce", "bounds", "advise"])
def test_help_documents_every_option_and_shows_each_default_once(command):
    sub = _subparsers()[command]
    for action in sub._actions:
        if action.dest == "help":
            continue
        flag = action.option_strings[-1]
        assert action.help, f"{command} {flag} has no help"
        text = sub._get_formatter()._expand_help(action)
        assert text.count("(default") <= 1, f"{command} {flag}: {text}"  # the default shown once
        assert "(default: None)" not in text and "(default: False)" not in text, f"{command} {flag}: {text}"


def test_sweep_help_as_printed(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--steps" in text and "--overwrite" in text
    assert "(default: None)" not in text and "%(default)" not in text
