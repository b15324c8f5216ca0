"""Goodness of fit, Gauss-Newton standard errors and the variance of predictions.

``goodness``: RMSE and R^2 of log loss, R^2 of loss, mean relative error.
``gauss_newton_cov`` / ``gauss_newton_stderr``: parameter uncertainty from the
curvature of the squared log residuals, carried to the natural parameters by
the delta method; ``prediction_variance``: what that uncertainty means for a
log-prediction elsewhere (used to net the parameter part out of validation
residuals, :mod:`lmscale.laws.intervals`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lmscale.laws.forms import LawForm

Array = np.ndarray




def goodness(form: LawForm, theta: Array, X: Mapping[str, Array], y: Array) -> dict[str, float]:
    """Fit statistics on the points.

    ``rmse_log``: RMSE of log y - log f; ``r2`` (= ``r2_log``): R^2 of log y;
    ``r2_loss``: R^2 of y itself; ``mean_abs_rel_error``: mean |f / y - 1|.
    """
    logy = np.log(y)
    f = form.log_predict(np.asarray(theta, dtype=float), X)
    r = logy - f
    ss_log = float(np.sum((logy - logy.mean()) ** 2))
    pred = np.exp(f)
    ss_y = float(np.sum((y - y.mean()) ** 2))
    r2_log = 1.0 - float(np.sum(r**2)) / ss_log if ss_log > 0 else float("nan")
    return {
        "rmse_log": float(np.sqrt(np.mean(r**2))),
        "r2": r2_log,
        "r2_log": r2_log,
        "r2_loss": 1.0 - float(np.sum((y - pred) ** 2)) / ss_y if ss_y > 0 else float("nan"),
        "mean_abs_rel_error": float(np.mean(np.abs(pred / y - 1.0))),
    }


def natural_jacobian(form: LawForm, theta: Array) -> Array:
    """d params / d theta (k, k) by central differences of ``from_theta``."""
    theta = np.asarray(theta, dtype=float)
    k = len(theta)
    J = np.empty((len(form.params), k))
    for j in range(k):
        h = 1e-6 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        pu, pd_ = form.from_theta(up), form.from_theta(down)
        J[:, j] = [(pu[p] - pd_[p]) / (2 * h) for p in form.params]
    return J


def gauss_newton_cov(form: LawForm, theta: Array, X: Mapping[str, Array], y: Array) -> Array | None:
    """cov(theta) = s^2 (J^T J)^-1, s^2 = sum r^2 / (n - k), J = d log f / d theta at the fit.

    None when there are no more points than parameters. (The Huber objective's
    own Hessian vanishes for residuals beyond delta, so the least-squares
    curvature stands in for it.)
    """
    theta = np.asarray(theta, dtype=float)
    f, J = form.log_predict(theta, X, jac=True)
    n, k = J.shape
    if n <= k or not np.all(np.isfinite(J)):
        return None
    s2 = float(np.sum((np.log(y) - f) ** 2)) / (n - k)
    return s2 * np.linalg.pinv(J.T @ J)


def gauss_newton_stderr(form: LawForm, theta: Array, X: Mapping[str, Array], y: Array) -> dict[str, float]:
    """Standard errors of the natural parameters: :func:`gauss_newton_cov` by the delta method."""
    cov = gauss_newton_cov(form, theta, X, y)
    if cov is None:
        return {p: float("nan") for p in form.params}
    G = natural_jacobian(form, theta)
    var = np.einsum("ij,jk,ik->i", G, cov, G)
    return {p: float(np.sqrt(v)) if v >= 0 else float("nan") for p, v in zip(form.params, var)}


def prediction_variance(form: LawForm, theta: Array, X: Mapping[str, Array], y: Array,
                        X_new: Mapping[str, Array]) -> Array:
    """Variance of the log-prediction at ``X_new`` from the fit's parameter uncertainty.

    var_i = j_i^T cov j_i with cov from :func:`gauss_newton_cov` and j_i = d log f(x_i) / d theta;
    zeros where the covariance is not defined.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        cov = gauss_newton_cov(form, theta, X, y)
        _, J_new = form.log_predict(np.asarray(theta, dtype=float), X_new, jac=True)
    if cov is None or not np.all(np.isfinite(J_new)):
        return np.zeros(len(J_new))
    return np.maximum(np.einsum("ik,kl,il->i", J_new, cov, J_new), 0.0)
