"""Multi-step trajectories: no leakage means no degradation; records both P1 variants consistently."""

import numpy as np

from talr_theory.theory.scenario import ScenarioConfig, make_scenario
from talr_theory.theory.trajectories import run_trajectory, trajectories_frame, with_p1


def test_tabular_trajectory_never_degrades_general_data():
    sc = make_scenario(0, ScenarioConfig(leak=0.0, common=0.0))
    t = run_trajectory(sc, s=2, lam=32.0, target_gain=0.3)
    assert t.reached and t.delta_star[-1] >= 0.3
    for values in t.delta_L_by_p1.values():
        assert np.array_equal(values, np.zeros_like(values))


def test_leaky_trajectory_records_both_p1_and_reaches_target():
    sc = make_scenario(1)
    t = run_trajectory(sc, s=4, lam=16.0, target_gain=0.2, p1="mismodeled")
    assert t.reached and t.steps == len(t.delta_star) - 1
    assert np.array_equal(t.delta_L, t.delta_L_by_p1["mismodeled"])
    exact = with_p1(t, "exact")
    assert exact.delta_L[-1] > 0  # KL(q0 || q_t) > 0 once general contexts moved
    frame = trajectories_frame([t, exact])
    assert len(frame) == 2 * len(t.delta_star)
    # Hard tokens got part of the update (SFT weights all tokens equally).
    assert t.hard_mass > 0 and t.easy_mass > 0


def test_max_steps_is_reported():
    sc = make_scenario(2)
    t = run_trajectory(sc, s=1, lam=0.01, target_gain=0.5, max_steps=3)
    assert not t.reached and t.steps == 3
