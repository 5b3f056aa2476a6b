"""Symbolic derivations (sympy) behind the exact tier; the tests lambdify them against the numerics.

1. ``cumulant_expansion``: log E e^{λg} = κ1 λ + κ2 λ²/2 + κ3 λ³/6 + O(λ⁴), derived by series-
   expanding the log of the moment generating function written with raw moments m1, m2, m3.
2. ``talr_lagrangian_weights``: the minimizer of Σ w_i ℓ_i + τ Σ w_i log w_i over the simplex,
   solved from the Lagrangian's stationarity condition — a softmax of −ℓ/τ, i.e. weights
   proportional to p_i^(1/τ) (Algorithm 1 drops the normalization and floors at w_min instead).
3. ``lambda_max_root``: the positive root of the quadratic bound (B/8)λ² + Aλ = ε and its two
   limits, ε/A (first order) and √(8ε/B) (second order).
4. ``ntk_step``: one SGD step of a linear softmax z_c = W φ_c on −log softmax(W φ_i)[y]: the logit
   change at any context is exactly λ (φ_c·φ_i)(e_y − q_i) — the kernel (NTK) form used in steps.py.
   For a non-linear model the same expression holds to first order in λ (``ntk_first_order``).
"""

from __future__ import annotations

import sympy as sp


def cumulant_expansion(order: int = 3):
    """Return (series in λ up to ``order``, λ, (m1, m2, m3), (κ1, κ2, κ3) expressions in raw moments)."""
    lam = sp.Symbol("lambda", real=True)
    m = sp.symbols(f"m1:{order + 1}", real=True)
    mgf = 1 + sum(m[k - 1] * lam**k / sp.factorial(k) for k in range(1, order + 1))
    series = sp.series(sp.log(mgf), lam, 0, order + 1).removeO()
    series = sp.expand(series)
    kappas = tuple(sp.simplify(series.coeff(lam, k) * sp.factorial(k)) for k in range(1, order + 1))
    return series, lam, m, kappas


def talr_lagrangian_weights(n: int = 3):
    """Solve min_w Σ w_i ℓ_i + τ Σ w_i log w_i s.t. Σ w_i = 1; returns (weights, ℓ symbols, τ).

    Stationarity: ℓ_i + τ(log w_i + 1) + μ = 0 ⇒ w_i = exp(−ℓ_i/τ − 1 − μ/τ); the constraint fixes μ.
    """
    ell = sp.symbols(f"ell0:{n}", real=True)
    tau = sp.Symbol("tau", positive=True)
    mu = sp.Symbol("mu", real=True)
    w = sp.symbols(f"w0:{n}", positive=True)
    lagrangian = sum(wi * li for wi, li in zip(w, ell)) + tau * sum(wi * sp.log(wi) for wi in w) + mu * (sum(w) - 1)
    stationary = [sp.Eq(sp.diff(lagrangian, wi), 0) for wi in w]
    w_of_mu = {wi: sp.solve(eq, wi)[0] for wi, eq in zip(w, stationary)}
    mu_sol = sp.solve(sp.Eq(sum(w_of_mu.values()), 1), mu)
    if not mu_sol:
        raise RuntimeError("talr_lagrangian_weights: could not solve the normalization constraint")
    weights = tuple(sp.simplify(w_of_mu[wi].subs(mu, mu_sol[0])) for wi in w)
    return weights, ell, tau


def lambda_max_root():
    """Positive root of (B/8)λ² + Aλ − ε = 0 and its limits; returns dict of expressions and symbols."""
    lam = sp.Symbol("lambda", positive=True)
    A = sp.Symbol("A", nonnegative=True)
    B, eps = sp.symbols("B epsilon", positive=True)
    roots = sp.solve(sp.Eq(B / 8 * lam**2 + A * lam, eps), lam)
    if len(roots) != 1:
        raise RuntimeError(f"lambda_max_root: expected one positive root, got {roots}")
    root = sp.simplify(roots[0])
    return {
        "root": root,
        # root / (ε/A) → 1 as ε → 0: the first-order regime λ_max ≈ ε/A.
        "first_order": eps / A,
        "first_order_ratio_limit": sp.limit(root / (eps / A), eps, 0),
        "second_order": sp.simplify(root.subs(A, 0)),
        "symbols": (A, B, eps),
    }


def ntk_step(vocab: int = 3, features: int = 2):
    """Symbolic SGD step of a linear softmax; returns (Δz_c exact, kernel form, symbols).

    The difference of the two expressions simplifies to zero: the step is exactly the kernel form.
    """
    W = sp.Matrix(vocab, features, lambda i, j: sp.Symbol(f"W{i}{j}", real=True))
    phi_i = sp.Matrix(features, 1, lambda j, _: sp.Symbol(f"a{j}", real=True))
    phi_c = sp.Matrix(features, 1, lambda j, _: sp.Symbol(f"b{j}", real=True))
    lam = sp.Symbol("lambda", positive=True)
    y = 0  # target token index (any fixed index; symmetric)
    z_i = W * phi_i
    log_norm = sp.log(sum(sp.exp(z_i[k]) for k in range(vocab)))
    loss = log_norm - z_i[y]
    grad = sp.Matrix(vocab, features, lambda r, c: sp.diff(loss, W[r, c]))
    delta_z_c = (W - lam * grad) * phi_c - W * phi_c
    q_i = sp.Matrix(vocab, 1, lambda k, _: sp.exp(z_i[k]) / sp.exp(log_norm))
    e_y = sp.Matrix(vocab, 1, lambda k, _: 1 if k == y else 0)
    kernel_form = lam * (phi_c.T * phi_i)[0, 0] * (e_y - q_i)
    return delta_z_c, kernel_form, {"W": W, "phi_i": phi_i, "phi_c": phi_c, "lambda": lam, "y": y}


def ntk_first_order():
    """First-order logit change of a *non-linear* model z_c = W tanh(U x_c) under one SGD step.

    Returns (d/dλ z_c(θ − λ∇ℓ_i) at λ=0, −J_c J_iᵀ ∇_z ℓ_i, symbols): equal by the chain rule, which
    is the NTK linearization g_c = K(c, c_i)(e_y − q_i) with K = J_c J_iᵀ.
    """
    V, H, D = 2, 2, 1
    W = sp.Matrix(V, H, lambda i, j: sp.Symbol(f"W{i}{j}", real=True))
    U = sp.Matrix(H, D, lambda i, j: sp.Symbol(f"U{i}{j}", real=True))
    x_i, x_c = sp.Symbol("x_i", real=True), sp.Symbol("x_c", real=True)
    lam = sp.Symbol("lambda", real=True)
    params = list(W) + list(U)

    def logits(Wm, Um, x):
        return Wm * (Um * sp.Matrix([[x]])).applyfunc(sp.tanh)

    z_i = logits(W, U, x_i)
    loss = sp.log(sum(sp.exp(z_i[k]) for k in range(V))) - z_i[0]
    grad = [sp.diff(loss, p) for p in params]
    stepped = {p: p - lam * g for p, g in zip(params, grad)}
    z_c_after = logits(W.subs(stepped, simultaneous=True), U.subs(stepped, simultaneous=True), x_c)
    derivative = sp.Matrix([sp.diff(z_c_after[k], lam).subs(lam, 0) for k in range(V)])
    z_c = logits(W, U, x_c)
    J_c = z_c.jacobian(params)
    J_i = z_i.jacobian(params)
    q_i = sp.Matrix([sp.exp(z_i[k]) / sum(sp.exp(z_i[j]) for j in range(V)) for k in range(V)])
    grad_z = q_i - sp.Matrix([1, 0])
    ntk_form = -(J_c * J_i.T) * grad_z
    return derivative, ntk_form, {"W": W, "U": U, "x_i": x_i, "x_c": x_c, "params": params}
