"""ΔL(P) identities on token trees: four independent computations agree to rounding."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from talr_theory.theory.codelength import (
    TreeModel,
    code_length,
    delta_L_all_forms,
    identity_errors,
    kl,
    node_masses,
    random_distribution,
)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 5), depth=st.integers(1, 4),
       zero_fraction=st.floats(0.0, 0.6))
def test_four_forms_agree(seed, vocab, depth, zero_fraction):
    rng = np.random.default_rng(seed)
    q1 = TreeModel.random(rng, vocab, depth, scale=float(rng.uniform(0.1, 4)))
    q2 = q1.tilted([rng.normal(0, 2.0, size=z.shape) for z in q1.logits])
    P = random_distribution(rng, vocab**depth, 0.5, zero_fraction)
    forms = delta_L_all_forms(P, q1, q2)
    values = np.array(list(forms.values()))
    assert np.all(np.isfinite(values))
    assert values.max() - values.min() < 1e-10 * (1 + np.abs(values).max())
    # ΔL is the difference of expected code lengths, computed a fifth way.
    assert abs(forms["codelength"] - (code_length(P, q2) - code_length(P, q1))) < 1e-10


def test_exactly_modeled_delta_is_kl_of_models():
    rng = np.random.default_rng(3)
    q1 = TreeModel.random(rng, 3, 3)
    q2 = q1.tilted([rng.normal(0, 1.0, size=z.shape) for z in q1.logits])
    P = q1.joint()
    forms = delta_L_all_forms(P, q1, q2)
    assert forms["tree"] > 0  # KL(q1||q2) > 0 for a non-trivial tilt
    assert abs(forms["tree"] - kl(P, q2)) < 1e-12
    assert abs(kl(P, q1)) < 1e-12


def test_joint_and_node_masses_are_distributions():
    rng = np.random.default_rng(0)
    q = TreeModel.random(rng, 4, 3)
    assert abs(q.joint().sum() - 1) < 1e-12
    P = random_distribution(rng, 4**3)
    masses = node_masses(P, 4, 3)
    for l, m in enumerate(masses):
        assert m.shape == (4**l, 4)
        assert abs(m.sum() - 1) < 1e-12
    # The mass of a prefix equals the summed mass of its children one level down.
    assert np.allclose(masses[1].sum(axis=1), masses[0].reshape(-1))


def test_identity_errors_small():
    errs = identity_errors(np.random.default_rng(1), 60)
    assert errs.shape == (60,)
    assert errs.max() < 1e-9


def test_bad_shapes_raise():
    import pytest

    with pytest.raises(ValueError, match="logits\\[1\\]"):
        TreeModel([np.zeros((1, 3)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="shape"):
        node_masses(np.ones(5) / 5, 2, 2)
