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

    D_opt(C) = D_opt(6) (C / 6)^b is a power law in C, so
    C = 6 (D / D_opt(6))^(1/b) and N = N_opt(C) ([M] eq. 6, "U_N").
    """
    _, b = chinchilla_exponents(params)
    _, d_at_6 = chinchilla_allocation(params, 6.0)
    C = 6.0 * (np.asarray(D, dtype=float) / d_at_6) ** (1.0 / b)
    return chinchilla_allocation(params, C)[0]


def effective_repeats(unique, repeats, r_star):
    """U + U R* (1 - exp(-R / R*)): the worth of R repeats of U unique items ([M] eqs. 5, 6)."""
    unique = np.asarray(unique, dtype=float)
    return unique + unique * r_star * (1.0 - np.exp(-np.asarray(repeats, dtype=float) / r_star))


def effective_data_and_params(params: Mapping[str, float], N, D, U):
    """(N', D') of [M] eq. 7: effective parameters and effective data."""
    N, D, U = (np.asarray(x, dtype=float) for x in (N, D, U))
    u_d = np.minimum(D, U)
    d_eff = effective_repeats(u_d, D / u_d - 1.0, params["R_D_star"])
    u_n = np.minimum(N, optimal_params_for_data(params, u_d))
    n_eff = effective_repeats(u_n, N / u_n - 1.0, params["R_N_star"])
    return n_eff, d_eff


@dataclass(frozen=True)
class DataConstrainedLaw(LawForm):
    """[M] eq. 7; theta = (a, b, e, alpha, beta, log R_D*, log R_N*).

    The Jacobian is taken by central differences in theta (U_N depends on
    A, B, alpha and beta through the [H] allocation, a min() with a kink).
    """

    def _log_row(self, row: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        p = self.from_theta(row)
        if not (p["alpha"] > 0 and p["beta"] > 0 and np.all(np.isfinite(row))):
            return np.full(len(np.asarray(X["N"])), np.inf)  # outside the form's domain (a trial step)
        n_eff, d_eff = effective_data_and_params(p, X["N"], X["D"], X["U"])
        return CHINCHILLA.log_predict(row[:5], {"N": n_eff, "D": d_eff})

    def log_predict(self, theta, X, jac=False):
        theta = np.asarray(theta, dtype=float)
        lead = theta.shape[:-1]
        rows = theta.reshape(-1, theta.shape[-1])
        n = len(np.asarray(X["N"]))
        f = np.stack([self._log_row(r, X) for r in rows]).reshape(*lead, n)
        if not jac:
            return f
        J = np.empty((len(rows), n, rows.shape[1]))
        for i, r in enumerate(rows):
            for k in range(rows.shape[1]):
                h = 1e-6 * max(1.0, abs(r[k]))
                up, down = r.copy(), r.copy()
                up[k] += h
                down[k] -= h
                J[i, :, k] = (self._log_row(up, X) - self._log_row(down, X)) / (2 * h)
        return f, J.reshape(*lead, n, rows.shape[1])

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
