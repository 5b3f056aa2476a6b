"""The paper's token picture on real data: MedCalc-Bench with the embedded default model (slow, needs ../shared).

Label-only supervision has fewer hard tokens per example than CoT (s(0.2) smaller), and most CoT
target tokens are easy (median p > 0.5; SmolLM2-135M is a small model, so the median is near 0.6
rather than the paper's near-1 for 3-4B models).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from talr_theory.paths import shared_file

CSV = "data/medcalc-bench/test_data.csv"


def _tokens_json(fmt: str) -> dict:
    cmd = [sys.executable, "-m", "talr_theory.cli", "tokens", "--model", "smollm2-135m", "--data",
           str(shared_file(CSV)), "--format", fmt, "--template", "none", "--limit", "12", "--json", "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.shared
def test_label_only_has_fewer_hard_tokens_and_cot_tokens_are_mostly_easy():
    label, cot = _tokens_json("label"), _tokens_json("cot")
    assert label["n_examples"] == cot["n_examples"] == 12
    assert label["s"]["0.2"]["mean"] < cot["s"]["0.2"]["mean"]
    assert cot["median_p"] > 0.5
