"""Every command refuses a bad option or output path at once: exit 2, a message naming the flag, no traceback,
and no model loaded (the check happens before any work)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from talr_theory.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def paths(tmp_path):
    """An existing file, an existing folder, an empty folder posing as a model, a path under a file."""
    f = tmp_path / "a_file.txt"
    f.write_text("x")
    d = tmp_path / "a_dir"
    d.mkdir()
    empty = tmp_path / "empty_model"
    empty.mkdir()
    return {"FILE": str(f), "DIR": str(d), "EMPTY": str(empty), "UNDER_FILE": str(f / "sub"),
            "MISSING_CSV": str(tmp_path / "missing.csv")}


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any command gets as far as loading a model."""
    import talr_theory.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad option was refused")

    monkeypatch.setattr(models, "load_model", refuse)


# (command line, flag that must be named). Placeholders are filled from the ``paths`` fixture.
CASES = [
    # tokens
    ("tokens --thresholds 2", "--thresholds"),
    ("tokens --thresholds 0.1,-1", "--thresholds"),
    ("tokens --thresholds 0", "--thresholds"),
    ("tokens --thresholds abc", "--thresholds"),
    ("tokens --n-boot 0", "--n-boot"),
    ("tokens --n-boot 5", "--n-boot"),
    ("tokens --n-boot 99", "--n-boot"),
    ("tokens --max-length -1", "--max-length"),
    ("tokens --batch-size 0", "--batch-size"),
    ("tokens --limit 0", "--limit"),
    ("tokens --top-k -1", "--top-k"),
    ("tokens --split test", "--split"),
    ("tokens --out FILE", "--out"),
    ("tokens --out UNDER_FILE", "--out"),
    ("tokens --html DIR", "--html"),
    ("tokens --json DIR", "--json"),
    ("tokens --model EMPTY", "--model"),
    ("tokens --model tiny-random --compare-model EMPTY", "--compare-model"),
    # sweep
    ("sweep --steps 0", "--steps"),
    ("sweep --eval-every -1", "--eval-every"),
    ("sweep --lrs 0", "--lrs"),
    ("sweep --lrs 1e-4,abc", "--lrs"),
    ("sweep --methods sft,bogus", "--methods"),
    ("sweep --max-length -1", "--max-length"),
    ("sweep --n-train -1", "--n-train"),
    ("sweep --eval-batch-size 0", "--eval-batch-size"),
    ("sweep --w-min 2", "--w-min"),
    ("sweep --dtype float8", "--dtype"),
    ("sweep --shard 3/2", "--shard"),
    ("sweep --out FILE", "--out"),
    ("sweep --json DIR", "--json"),
    ("sweep --model EMPTY", "--model"),
    # bounds
    ("bounds --out FILE", "--out"),
    ("bounds --json DIR", "--json"),
    ("bounds --tier llm --model EMPTY", "--model"),
    ("bounds --tier nope", "--tier"),
    ("bounds --seed -1", "--seed"),
    ("bounds --seed abc", "--seed"),
    ("bounds --tier exact --model tiny-random", "--model"),
    # reproduce
    ("reproduce --out FILE", "--out"),
    ("reproduce --json DIR", "--json"),
    ("reproduce --model EMPTY", "--model"),
    ("reproduce --stages exact,nope", "--stages"),
    ("reproduce --medcalc-csv MISSING_CSV", "--medcalc-csv"),
    ("reproduce --seed abc", "--seed"),
    # advise (tests/test_advisor.py feeds every one of its own flags a bad value; a sample here)
    ("advise --epsilon 0.1 --model EMPTY", "--model"),
    ("advise --epsilon 0.1 --json DIR", "--json"),
    ("advise --model tiny-random", "--epsilon"),
    ("advise --epsilon 0", "--epsilon"),
    ("advise --epsilon 0.1 --gain -1", "--gain"),
    ("advise --epsilon 0.1 --pilot-steps 0", "--pilot-steps"),
    ("advise --epsilon 0.1 --pilot-lrs -1e-4,1e-3", "--pilot-lrs"),
    ("advise --epsilon 0.1 --pilot-lrs 1e-4", "--pilot-lrs"),
    ("advise --epsilon 0.1 --max-length -1", "--max-length"),
    ("advise --epsilon 0.1 --method adam", "--method"),
    ("advise --epsilon 0.1 --out DIR", "--out"),
    ("advise --validate --out FILE", "--out"),
    ("advise --validate --on nope", "--on"),
    ("advise --validate --json DIR", "--json"),
]

COMMANDS_COVERED = {"tokens", "sweep", "bounds", "reproduce", "advise"}


def test_the_table_covers_every_command():
    from talr_theory.cli import COMMANDS

    assert set(COMMANDS) == COMMANDS_COVERED == {line.split()[0] for line, _ in CASES}


def _argv(line: str, paths: dict) -> list[str]:
    return [paths.get(word, word) for word in line.split()]


@pytest.mark.parametrize("line,flag", CASES, ids=[c[0] for c in CASES])
def test_bad_option_exits_2_naming_the_flag(line, flag, paths, no_model_load, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output folder (runs/...) must never land in the repository
    t0 = time.perf_counter()
    try:
        rc = main(_argv(line, paths))
    except SystemExit as exc:  # argparse refuses at parse time
        rc = exc.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2, err
    assert flag in err, err
    assert "Traceback" not in err
    assert elapsed < 5.0
    # messages are in words: no Python reprs of converters or tuples
    assert "invalid _" not in err and "value: '" not in err and "(0.0, 1.0)" not in err


@pytest.mark.parametrize("line,flag", [
    ("tokens --model tiny-random --html DIR", "--html"),
    ("tokens --model tiny-random --out FILE", "--out"),
    ("tokens --model tiny-random --thresholds 2", "--thresholds"),
    ("tokens --model tiny-random --n-boot 0", "--n-boot"),
    ("advise --model tiny-random --epsilon 0.1 --gain -1", "--gain"),
    ("bounds --out FILE", "--out"),
])
def test_bad_option_as_a_new_user_sees_it(line, flag, paths, tmp_path):
    """A fresh process, as typed at a shell: exit 2 within 5 s of CPU, one line naming the flag, no traceback.

    CPU time, not wall time, so that other jobs on the machine cannot fail it: the error path costs about
    2 s of CPU, importing torch and transformers alone about 7 s (2-core machine).
    """
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    t0 = children_cpu()
    proc = subprocess.run([sys.executable, "-m", "talr_theory.cli", *_argv(line, paths)], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=60)
    elapsed = children_cpu() - t0
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 5.0, f"took {elapsed:.1f} s of CPU: the check must come before heavy imports and any model load"
    assert not any((tmp_path / name).exists() for name in ("runs",))
