"""Data-constrained scaling: repeated tokens and excess parameters (Muennighoff et al. 2023).

The [H] form evaluated at *effective* data and parameters ([M] eqs. 5-7,
cited as [M] = Muennighoff et al. 2023, "Scaling Data-Constrained Language
Models", arXiv 2305.16264):

    L(N, D, U) = E + A / N'^alpha + B / D'^beta
    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),  U_D = min(D, U),  R_D = D / U_D - 1
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  U_N = min(N, N_opt(U_D)), R_N = N / U_N - 1

with U the unique tokens available, R_D the repeated epochs, and N_opt(U_D)
the model size for which U_D tokens are compute-optimal under the [H]
closed form (:func:`lmscale.laws.frontier.chinchilla_allocation`). The
last step reuses the [H] form itself (``forms.CHINCHILLA``). Importing this
module registers the form as ``data_constrained``. Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lmscale.errors import LmscaleError
from lmscale.laws.forms import CHINCHILLA, LawForm, register_form
from lmscale.laws.frontier import chinchilla_allocation, chinchilla_exponents

_BASE = ("E", "A", "B", "alpha", "beta")


def optimal_params_for_data(params: Mapping[str, float], D):
    """N whose compute-optimal data is D under [H] approach 3 (inverse of D_opt(C)).

    D_opt(C) = G^-1 (C / 6)^b and N_opt(C) = G (C / 6)^a with b = alpha / (alpha + beta),
    G = (alpha A / (beta B))^(1/(alpha+beta)) (:func:`~lmscale.laws.frontier.chinchilla_allocation`),
    so N = G (G D)^(beta / alpha) ([M] eq. 6, "U_N").
    """
    chinchilla_exponents(params)  # the clear error for alpha or beta <= 0
    theta = CHINCHILLA.to_theta(params)
    return np.exp(_log_params_for_data(theta, np.log(np.asarray(D, dtype=float))))


def _log_params_for_data(theta: np.ndarray, log_d):
    """log N with log D compute-optimal (see :func:`optimal_params_for_data`); theta (..., >= 5).

    log N = (1 + beta/alpha) log G + (beta/alpha) log D = (log(alpha A / (beta B)) + beta log D) / alpha.
    """
    a, b, alpha, beta = theta[..., 0:1], theta[..., 1:2], theta[..., 3:4], theta[..., 4:5]
    if theta.ndim == 1:
        a, b, alpha, beta = a[0], b[0], alpha[0], beta[0]
    return (np.log(alpha) + a - np.log(beta) - b + beta * log_d) / alpha


def effective_repeats(unique, repeats, r_star):
    """U + U R* (1 - exp(-R / R*)): the worth of R repeats of U unique items ([M] eqs. 5, 6)."""
    unique = np.asarray(unique, dtype=float)
    return unique + unique * r_star * (1.0 - np.exp(-np.asarray(repeats, dtype=float) / r_star))


def effective_data_and_params(params: Mapping[str, float], N, D, U):
    """(N', D') of [M] eq. 7: effective parameters and effective data."""
    theta = DATA_CONSTRAINED.to_theta(params)
    N, D, U = (np.asarray(x, dtype=float) for x in (N, D, U))
    shape = np.broadcast_shapes(N.shape, D.shape, U.shape)
    flat = [np.broadcast_to(x, shape).ravel() for x in (N, D, U)]
    log_n, log_d = _log_effective(theta, *flat)
    return np.exp(log_n).reshape(shape), np.exp(log_d).reshape(shape)


def _log_effective(theta: np.ndarray, N, D, U, jac: bool = False):
    """(log N', log D') of [M] eq. 7 for fitting parameters theta (..., 7), vectorised.

    U_D = min(D, U), U_N = min(N, N_opt(U_D)) (:func:`optimal_params_for_data`), then
    :func:`effective_repeats` of each. With ``jac``, also d log N' / d theta and
    d log D' / d theta (each (..., n, 7)).
    """
    r_d, r_n = np.exp(theta[..., 5:6]), np.exp(theta[..., 6:7])
    log_n, log_d, log_u = np.log(N), np.log(D), np.log(U)
    log_ud = np.minimum(log_d, log_u)
    rep_d = np.expm1(log_d - log_ud)
    log_d_eff = np.log(effective_repeats(np.exp(log_ud), rep_d, r_d))
    log_opt = _log_params_for_data(theta, log_ud)
    log_un = np.minimum(log_n, log_opt)
    rep_n = np.expm1(log_n - log_un)
    log_n_eff = np.log(effective_repeats(np.exp(log_un), rep_n, r_n))
    if not jac:
        return log_n_eff, log_d_eff
    # d log(1 + R* (1 - q)) with q = exp(-R / R*): by log R*, r_star (1 - q - (R / R*) q) / S;
    # by log U (R = e^(log X - log U) - 1), -q (R + 1) / S.
    q_d, q_n = np.exp(-rep_d / r_d), np.exp(-rep_n / r_n)
    s_d, s_n = np.exp(log_d_eff - log_ud), np.exp(log_n_eff - log_un)
    shape = (*np.broadcast_shapes(log_n_eff.shape, log_d_eff.shape), theta.shape[-1])
    jd, jn = np.zeros(shape), np.zeros(shape)
    jd[..., 5] = r_d * (1.0 - q_d - rep_d / r_d * q_d) / s_d
    jn[..., 6] = r_n * (1.0 - q_n - rep_n / r_n * q_n) / s_n
    alpha, beta = theta[..., 3:4], theta[..., 4:5]
    bound = (log_opt < log_n) * (1.0 - q_n * (rep_n + 1.0) / s_n)  # d log N' / d log U_N where U_N = N_opt
    jn[..., 0] = bound / alpha
    jn[..., 1] = -bound / alpha
    jn[..., 3] = bound * (1.0 / alpha - log_opt) / alpha
    jn[..., 4] = bound * (log_ud - 1.0 / beta) / alpha
    return log_n_eff, log_d_eff, jn, jd


@dataclass(frozen=True)
class DataConstrainedLaw(LawForm):
    """[M] eq. 7; theta = (a, b, e, alpha, beta, log R_D*, log R_N*).

    Vectorised over theta like every form, with the analytic Jacobian (U_N
    depends on A, B, alpha and beta through the [H] allocation where it is
    below N: a min() with a kink, differentiated on either side).
    """

    def log_predict(self, theta, X, jac=False):
        theta = np.asarray(theta, dtype=float)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            eff = _log_effective(theta, X["N"], X["D"], X["U"], jac=jac)
            inner = {"N": np.exp(eff[0]), "D": np.exp(eff[1])}
            alpha, beta = theta[..., 3:4], theta[..., 4:5]
            ok = (alpha > 0) & (beta > 0) & np.all(np.isfinite(theta), axis=-1, keepdims=True)
            if not jac:
                f = CHINCHILLA.log_predict(theta[..., :5], inner)
                return np.where(ok & np.isfinite(f), f, np.inf)  # inf: outside the form's domain
            f, J5 = CHINCHILLA.log_predict(theta[..., :5], inner, jac=True)
            # the [H] form's own derivatives, then through log N' and log D' (chain rule)
            J = np.concatenate([J5, np.zeros((*J5.shape[:-1], 2))], axis=-1)
            J += (-alpha * J5[..., 0])[..., None] * eff[2] + (-beta * J5[..., 1])[..., None] * eff[3]
        bad = ~(ok & np.isfinite(f))
        return np.where(bad, np.inf, f), np.where(bad[..., None] | ~np.isfinite(J), 0.0, J)

    def to_theta(self, params):
        base = CHINCHILLA.to_theta(params)
        return np.concatenate([base, np.log([params["R_D_star"], params["R_N_star"]])])

    def from_theta(self, theta):
        out = CHINCHILLA.from_theta(theta[:5])
        out["R_D_star"] = float(np.exp(theta[5]))
        out["R_N_star"] = float(np.exp(theta[6]))
        return out

    def check_params(self, params):
        super().check_params(params)
        for name in ("R_D_star", "R_N_star", "alpha", "beta", "A", "B"):
            if not float(params[name]) > 0:
                raise LmscaleError(f"law {self.name}: parameter {name} = {params[name]!r} must be positive")


DATA_CONSTRAINED = register_form(DataConstrainedLaw(
    name="data_constrained", title="L(N, D, U), repeated data",
    equation="Muennighoff et al. 2023 eq. 7 ([H] eq. 2 at effective N', D')",
    params=(*_BASE, "R_D_star", "R_N_star"), inputs=("N", "D", "U"), output="loss",
    units={"N": "parameters", "D": "tokens seen (all epochs)", "U": "unique tokens available",
           "E": "nats/token", "A": "nats/token * params^alpha", "B": "nats/token * tokens^beta",
           "R_D_star": "epochs", "R_N_star": "multiples of U_N", "loss": "nats/token"},
    theta_names=("a", "b", "e", "alpha", "beta", "log_R_D_star", "log_R_N_star"),
    grid=((5.0, 7.0), (5.0, 7.5), (0.0, 0.6), (0.35,), (0.35,), (np.log(5.0), np.log(15.0)),
          (np.log(2.0), np.log(5.0))),
    formula="L = E + A/N'^alpha + B/D'^beta, D' = U_D(1 + R_D*(1 - e^(-R_D/R_D*))), "
            "N' = U_N(1 + R_N*(1 - e^(-R_N/R_N*)))",
))


def data_constrained_allocation(params: Mapping[str, float], C: float, U: float) -> tuple[float, float]:
    """(N, D) minimising [M] eq. 7 on the line C = 6 N D with U unique tokens.

    A bounded search in log N (the loss along the IsoFLOP line has one
    minimum); without repetition (U >= D) it agrees with the [H] closed form.
    """
    from scipy.optimize import minimize_scalar

    if not (C > 0 and U > 0):
        raise LmscaleError(f"data-constrained allocation needs C > 0 and U > 0; got C = {C!r}, U = {U!r}")
    n_free, _ = chinchilla_allocation(params, C)

    def loss(log_n: float) -> float:
        N = np.exp(log_n)
        return float(DATA_CONSTRAINED.predict(params, N=N, D=C / (6.0 * N), U=U))

    center = np.log(n_free)
    res = minimize_scalar(loss, bounds=(center - 12.0, center + 6.0), method="bounded",
                          options={"xatol": 1e-7})
    N = float(np.exp(res.x))
    return N, C / (6.0 * N)


__all__ = [
    "DATA_CONSTRAINED",
    "DataConstrainedLaw",
    "data_constrained_allocation",
    "effective_data_and_params",
    "effective_repeats",
    "optimal_params_for_data",
]
