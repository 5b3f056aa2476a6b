"""Exact-tier scenarios: a kernel-softmax "model", general data P1 and a domain set with controlled s.

What is built (all float64, seeded):

* Vocabulary: ``n_general_tokens`` general tokens followed by ``n_domain_tokens`` domain tokens
  (the "domain concepts", e.g. clinical conversion factors).
* General contexts (``n_general_contexts``): random logits over the general tokens; the model
  also puts a small total mass ``domain_mass`` on the domain tokens there (a smooth model covers
  tokens the general data rarely use).
* P1, the general data, in one of two ways (theory.md C2/C5):
  - ``"exact"``: P1(·|c) = q(·|c) — the general data are modeled exactly (as for text sampled
    from the model itself). The first-order term of the tilt bound is then zero.
  - ``"mismodeled"``: P1(·|c) = q(·|c) restricted to general tokens — the data never use domain
    tokens, the model gives them mass ``domain_mass`` (TV(P1, q) = domain_mass per context).
* Domain examples: ``n_examples`` × ``tokens_per_example`` positions, each its own context with a
  peaked model distribution (the top general token has probability ≈ ``easy_p``). Easy positions
  have that top token as target; in each example exactly ``s`` positions are *hard*: their target is
  a random domain token, whose probability is ≈ (1 − easy_p)/(V − 1), far below the usual
  thresholds (C6: "replace exactly s positions per example with random tokens"). Hard positions
  are nested across s (the first s positions of each example), so curves over s share the model.
* Leakage kernel between all contexts: K = (1 − leak)·I + leak·ΨΨᵀ + common·11ᵀ, Ψ rows random
  unit vectors in R^feature_dim (independent directions, zero mean between contexts) and a small
  positive common part (a shared direction every context's representation has — e.g. the shared
  output embedding). ``leak = common = 0`` is the tabular, leak-free model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from talr_theory.theory.codelength import log_softmax
from talr_theory.theory.steps import TALR_W_MIN, KernelSoftmax, target_probs


@dataclass(frozen=True)
class ScenarioConfig:
    n_general_tokens: int = 12
    n_domain_tokens: int = 4
    n_general_contexts: int = 24
    n_examples: int = 4
    tokens_per_example: int = 32
    easy_p: float = 0.95
    domain_mass: float = 0.05
    leak: float = 0.5
    common: float = 0.1
    feature_dim: int = 8
    general_logit_scale: float = 1.5

    def validate(self) -> None:
        if not 0 < self.easy_p < 1:
            raise ValueError(f"ScenarioConfig.easy_p must be in (0, 1), got {self.easy_p}")
        if not 0 < self.domain_mass < 1:
            raise ValueError(f"ScenarioConfig.domain_mass must be in (0, 1), got {self.domain_mass}")
        if not 0 <= self.leak <= 1 or self.common < 0:
            raise ValueError(f"ScenarioConfig: need 0 <= leak <= 1 and common >= 0, got {self.leak}, {self.common}")
        if self.n_general_tokens < 2 or self.n_domain_tokens < 1:
            raise ValueError("ScenarioConfig: need >= 2 general tokens and >= 1 domain token")


@dataclass
class Scenario:
    """A model over general + domain contexts, the general data P1, and a hard-token layout."""

    config: ScenarioConfig
    model: KernelSoftmax
    general_idx: np.ndarray  # context indices of the general contexts
    domain_idx: np.ndarray   # context index of each domain position (N,)
    example_of: np.ndarray   # example index of each domain position (N,)
    easy_targets: np.ndarray  # top token of each domain position (N,)
    hard_targets: np.ndarray  # random domain token of each domain position (N,)
    rho: np.ndarray          # P1's weights over general contexts
    p_exact: np.ndarray      # P1 = q at general contexts
    p_mismodeled: np.ndarray  # P1 = q without domain tokens

    def p_general(self, p1: str) -> np.ndarray:
        if p1 == "exact":
            return self.p_exact
        if p1 == "mismodeled":
            return self.p_mismodeled
        raise ValueError(f"Scenario.p_general: p1 must be 'exact' or 'mismodeled', got {p1!r}")

    def targets(self, s: int) -> np.ndarray:
        """Targets with the first ``s`` positions of every example hard."""
        T = self.config.tokens_per_example
        if not 0 <= s <= T:
            raise ValueError(f"Scenario.targets: s must be in [0, {T}], got {s}")
        position_in_example = np.arange(len(self.domain_idx)) % T
        return np.where(position_in_example < s, self.hard_targets, self.easy_targets)

    def hard_mask(self, s: int, threshold: float = 0.05) -> np.ndarray:
        """Which targets have model probability below ``threshold`` at the start."""
        p = target_probs(self.model.logits[self.domain_idx], self.targets(s))
        return p < threshold


def make_scenario(seed: int, config: ScenarioConfig = ScenarioConfig()) -> Scenario:
    """Build one random scenario (see the module docstring)."""
    config.validate()
    rng = np.random.default_rng(seed)
    Vg, Vd = config.n_general_tokens, config.n_domain_tokens
    V = Vg + Vd
    Cg = config.n_general_contexts
    N = config.n_examples * config.tokens_per_example

    # General contexts: random logits on general tokens; domain tokens share total mass domain_mass.
    gen = rng.normal(0.0, config.general_logit_scale, size=(Cg, Vg))
    log_gen = log_softmax(gen) + np.log1p(-config.domain_mass)
    log_dom = np.full((Cg, Vd), np.log(config.domain_mass / Vd))
    general_logits = np.concatenate([log_gen, log_dom], axis=1)

    # Domain positions: a peaked distribution whose top token (a general token) has p ≈ easy_p.
    easy_targets = rng.integers(0, Vg, size=N)
    hard_targets = rng.integers(Vg, V, size=N)
    noise = rng.normal(0.0, 0.3, size=(N, V))
    top = np.log(config.easy_p * (V - 1) / (1.0 - config.easy_p))
    domain_logits = noise.copy()
    domain_logits[np.arange(N), easy_targets] = top

    logits = np.concatenate([general_logits, domain_logits], axis=0)
    C = Cg + N
    psi = rng.normal(size=(C, config.feature_dim))
    psi /= np.linalg.norm(psi, axis=1, keepdims=True)
    kernel = (1.0 - config.leak) * np.eye(C) + config.leak * psi @ psi.T + config.common * np.ones((C, C))
    model = KernelSoftmax(logits, kernel)

    q_gen = np.exp(log_softmax(general_logits))
    p_mis = q_gen.copy()
    p_mis[:, Vg:] = 0.0
    p_mis /= p_mis.sum(axis=1, keepdims=True)
    return Scenario(
        config=config,
        model=model,
        general_idx=np.arange(Cg),
        domain_idx=np.arange(Cg, C),
        example_of=np.arange(N) // config.tokens_per_example,
        easy_targets=easy_targets,
        hard_targets=hard_targets,
        rho=rng.dirichlet(np.full(Cg, 5.0)),
        p_exact=q_gen,
        p_mismodeled=p_mis,
    )


def config_dict(config: ScenarioConfig) -> dict:
    return asdict(config)


def scenario_step_curve(seed: int = 0, s: int = 4, p1: str = "exact", method: str = "sft", lams=None,
                        config: ScenarioConfig | None = None, tau="median", w_min: float = TALR_W_MIN) -> pd.DataFrame:
    """Exact ΔL(P1) and its bounds along λ for one gradient step of a scenario (tidy, for figures).

    Columns: lam, quantity (exact, jensen_lower, hoeffding_upper, tv_upper, quadratic_upper), delta_L,
    p1, method, s. ``quadratic_upper`` is A·λ + (B/8)·λ², the form behind the predicted λ_max (it
    equals the TV bound for a step h = λ·g).
    """
    from talr_theory.theory.steps import step_direction, token_weights
    from talr_theory.theory.tilt import bound_curve, quadratic_coefficients

    sc = make_scenario(seed, ScenarioConfig() if config is None else config)
    lams = np.logspace(-2, 3, 41) if lams is None else np.asarray(lams, dtype=np.float64)
    targets = sc.targets(s)
    z_dom = sc.model.logits[sc.domain_idx]
    w, _ = token_weights(method, target_probs(z_dom, targets), tau=tau, w_min=w_min, example_of=sc.example_of)
    g = step_direction(sc.model.kernel[np.ix_(sc.general_idx, sc.domain_idx)], z_dom, targets, w)
    z_gen, p_gen = sc.model.logits[sc.general_idx], sc.p_general(p1)
    curve = bound_curve(sc.rho, p_gen, z_gen, g, lams)
    coef = quadratic_coefficients(sc.rho, p_gen, z_gen, g)
    quad = pd.DataFrame({"lam": lams, "quantity": "quadratic_upper",
                         "delta_L": coef["A"] * lams + coef["B"] / 8 * lams**2})
    return pd.concat([curve, quad], ignore_index=True).assign(p1=p1, method=method, s=s)
