"""The one λ line scan: brackets, roots, budgets and multi-curve scans on curves with known answers."""

from __future__ import annotations

import math

import pytest

from talr_theory.theory.line_scan import lambda_max_on_line, scan_line


def test_root_of_a_quadratic_from_below_and_from_above():
    f = lambda lam: 3.0 * lam**2  # noqa: E731  λ_max(ε) = sqrt(ε/3)
    for start in (1e-4, 10.0):  # walks up, or first down then up
        for eps in (1e-6, 1e-2, 1.0):
            assert lambda_max_on_line(f, eps, lam_start=start, factor=4.0, rtol=1e-12, xtol=1e-300) == \
                pytest.approx(math.sqrt(eps / 3.0), rel=1e-10)


def test_bracket_is_the_last_safe_and_first_unsafe_grid_point():
    calls = []

    def f(lam):
        calls.append(lam)
        return lam  # ΔL = λ: with ε = 5 from 1, ×2: 1, 2, 4 safe, 8 unsafe

    scan = scan_line(f, 1.0, 2.0, 5.0, 5.0)
    assert (scan.lo, scan.hi) == (4.0, 8.0) and calls == [1.0, 2.0, 4.0, 8.0]
    scan = scan_line(f, 64.0, 2.0, 5.0, 5.0)  # down to 4 (the first below ε), then up once
    assert (scan.lo, scan.hi) == (4.0, 8.0) and sorted(scan.points) == [4.0, 8.0, 16.0, 32.0, 64.0]


def test_never_unsafe_within_the_budget_is_inf_and_shared_points_are_reused():
    calls = []

    def flat(lam):
        calls.append(lam)
        return 0.0

    assert lambda_max_on_line(flat, 0.1, lam_start=1.0, max_evals=5) == math.inf
    assert len(calls) == 5
    points: dict = {}
    f = lambda lam: lam**2  # noqa: E731
    a = lambda_max_on_line(f, 1e-2, lam_start=1e-3, factor=4.0, points=points)
    n = len(points)
    b = lambda_max_on_line(f, 1e-2, lam_start=1e-3, factor=4.0, points=points)
    assert a == b == pytest.approx(0.1, rel=1e-9) and len(points) == n  # nothing evaluated twice


def test_two_curves_scan_down_coarsely_then_up_until_both_exceed_the_top():
    # the real-model tier's use: ΔL of two P1 at once, down by factor² while any is ≥ the smallest ε,
    # then up by factor until both exceed the largest ε
    f = lambda lam: {"a": lam, "b": 2 * lam}  # noqa: E731
    scan = scan_line(f, 1.0, 2.0, below=0.1, above=3.0, down_factor=4.0, max_evals=16)
    # down: 1, 1/4, 1/16 (max 0.125 ≥ 0.1), 1/64 (max 1/32 < 0.1); up from 1/64 by ×2 to 4 (min 4 > 3)
    assert sorted(scan.points) == [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0]
    assert (scan.lo, scan.hi) == (2.0, 4.0)
    assert scan_line(f, 1.0, 2.0, below=0.1, above=3.0, down_factor=4.0, max_evals=3).hi is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="eps must be > 0"):
        lambda_max_on_line(lambda lam: lam, 0.0)
    with pytest.raises(ValueError, match="factors > 1"):
        scan_line(lambda lam: lam, 1.0, 1.0, 1.0, 1.0)
