"""Fitting a law: Huber loss of log-residuals, a grid of starts, L-BFGS ([H] appendix D.2).

The objective is ``sum_i Huber_delta(log f(x_i; theta) - log y_i)`` ([H] eq. 11
for the Chinchilla form; every form of :mod:`lmscale.laws.forms` alike), in
the form's fitting parameters theta (log-scales and exponents). The search:

1. the objective of every grid start at once (``log_predict`` is vectorised
   over leading axes of theta); the per-point losses of the grid form a
   matrix, so the grid objective of any re-weighting of the points (a
   bootstrap replicate) is one matrix product;
2. :func:`minimise_batch` descends from the ``n_screen`` best starts together
   (damped Gauss-Newton steps on the Huber objective, all starts in each
   array operation);
3. L-BFGS-B (``scipy.optimize.minimize``, analytic gradient from the form's
   Jacobian) from the best grid starts and the best screened points; the
   lowest objective wins.

Stopping rule and reduction: scipy's L-BFGS-B stops when the objective's
change falls below ``ftol * max(|f|, 1)``, an *absolute* threshold for the
small objectives met here. ``reduction="sum"`` ([H]'s sum) with scipy's
default tolerances reproduces Besiroglu et al.'s exact replication of [H]
(E = 1.8172, A = 477.8, B = 2143.9, alpha = 0.3473, beta = 0.3672 on the 240
Epoch points). ``reduction="mean"`` divides the objective by n, which makes
the same absolute threshold n times looser: with scipy's defaults the search
stops early, which is how Besiroglu et al.'s averaged fit (A = 482.0,
B = 2085.4, from numerical gradients) came to differ from the sum. Here,
by default (``ftol=None``, ``gtol=None``), the tolerances are divided by n
for ``"mean"`` too, so both reductions reach the same optimum (the sum's);
pass ``ftol``/``gtol`` to choose the stopping rule yourself.

Goodness of fit and Gauss-Newton standard errors are in
:mod:`~lmscale.laws.goodness`. Above this module: :mod:`~lmscale.laws.bootstrap` (refits of resampled points),
:mod:`~lmscale.laws.estimate` (a minimum, its statistics and intervals as a
:class:`~lmscale.laws.result.FitResult`), :mod:`~lmscale.laws.extrapolation`
(fit the smaller runs, predict the largest) and :mod:`~lmscale.laws.api`
(tables in, results out).
BLAS threads are limited to one during L-BFGS: its tiny BLAS calls are
otherwise slowed by thread hand-offs on a busy machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from lmscale.errors import LmscaleError
from lmscale.laws.forms import LawForm

Array = np.ndarray

#: scipy's L-BFGS-B defaults (factr = 1e7 times machine epsilon; pgtol).
SCIPY_FTOL = 2.220446049250313e-09
SCIPY_GTOL = 1e-05
#: objective value used where the prediction overflows.
_BAD = 1e30
#: residual spaces of the objective.
RESIDUALS = ("log", "linear")
#: theta names that hold log E, the irreducible loss.
_LOG_E_NAMES = ("e", "log_E", "log_L_inf")


@dataclass(frozen=True, eq=False)
class FitOptions:
    """How a law is fitted.

    Attributes:
        huber_delta: Huber threshold on log-residuals ([H] eq. 11: 1e-3).
        reduction: ``"sum"`` (as in [H]) or ``"mean"`` of the per-point losses;
            the same minimiser, see the module docstring for the stopping rule.
        n_screen: this many best grid starts are descended at once
            (:func:`minimise_batch`) before L-BFGS; 0 skips this stage.
        n_refine: L-BFGS runs from this many best grid starts, and from as
            many best results of the screening stage.
        ftol: L-BFGS-B relative-reduction tolerance; None: scipy's default,
            divided by n for ``"mean"``.
        gtol: L-BFGS-B projected-gradient tolerance; None: as ``ftol``.
        maxiter: iteration cap of each L-BFGS run.
        grid: starting points, shape (n_starts, k) in the form's theta; None:
            the form's own grid (``form.theta_grid()``).
        residuals: ``"log"`` (log f - log y, [H] eq. 11) or ``"linear"``
            (f - y in nats: the Huber threshold is then in nats too).
        weight_power: points weighted by compute, w_i = (C_i / C_max)^p
            normalised to mean 1 (0: unweighted; applied by the callers that
            know C, :func:`compute_weights`).
        e_below_min_loss: bound the irreducible loss E below the lowest
            observed loss (for forms with an ``e`` / ``log_E`` parameter).
        extend_at_edge: where the bootstrap puts the identification verdict
            at the rule's edge, draw ``EDGE_REPLICATES`` times the replicates
            and judge again (``lmscale.laws.identification``); False keeps
            the bootstrap at the size asked for, for callers that use the
            draws as a predictive sample of a fixed size (the design loop).
    """

    huber_delta: float = 1e-3
    reduction: str = "sum"
    n_screen: int = 128
    n_refine: int = 4
    ftol: float | None = None
    gtol: float | None = None
    maxiter: int = 15000
    grid: Array | None = field(default=None, repr=False)
    residuals: str = "log"
    weight_power: float = 0.0
    e_below_min_loss: bool = False
    extend_at_edge: bool = True

    def __post_init__(self) -> None:
        if not (self.huber_delta > 0 and np.isfinite(self.huber_delta)):
            raise LmscaleError(f"huber_delta = {self.huber_delta!r}: expected a positive number")
        if self.reduction not in ("sum", "mean"):
            raise LmscaleError(f"reduction = {self.reduction!r}: expected 'sum' or 'mean'")
        if self.n_refine < 1:
            raise LmscaleError(f"n_refine = {self.n_refine!r}: expected at least 1")
        if self.residuals not in RESIDUALS:
            raise LmscaleError(f"residuals = {self.residuals!r}: expected one of {', '.join(RESIDUALS)}")
        if not (np.isfinite(self.weight_power) and self.weight_power >= 0):
            raise LmscaleError(f"weight_power = {self.weight_power!r}: expected a number >= 0")

    def describe(self) -> str:
        """The variant in words, e.g. ``"Huber 1e-3 on log residuals"``."""
        parts = [f"Huber {self.huber_delta:g} on {self.residuals} residuals"]
        if self.weight_power:
            parts.append(f"points weighted by (C / C_max)^{self.weight_power:g}")
        if self.e_below_min_loss:
            parts.append("E below the lowest observed loss")
        return ", ".join(parts)


@dataclass
class Minimum:
    """The best point found: theta, objective (in the chosen reduction), L-BFGS report."""

    theta: Array
    objective: float
    converged: bool
    message: str
    n_iter: int
    start: Array


def huber(r: Array, delta: float) -> tuple[Array, Array]:
    """Huber loss of residuals and its derivative (psi), elementwise ([H] eq. 11)."""
    a = np.abs(r)
    loss = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    return loss, np.clip(r, -delta, delta)


def residuals(f: Array, logy: Array, space: str = "log") -> tuple[Array, Array | None]:
    """Residuals of log-predictions ``f`` and d r / d f (None when it is 1).

    ``"log"``: r = f - log y; ``"linear"``: r = e^f - y (nats), d r / d f = e^f.
    """
    if space == "log":
        return f - logy, None
    pred = np.exp(f)
    return pred - np.exp(logy), pred


def theta_bounds(form: LawForm, options: FitOptions, logy: Array) -> Array | None:
    """Upper bounds on theta (k,), inf where free; None when nothing is bounded.

    With ``e_below_min_loss`` the log E component stays below log min(y).
    """
    if not options.e_below_min_loss:
        return None
    idx = [i for i, name in enumerate(form.theta_names) if name in _LOG_E_NAMES]
    if not idx:
        raise LmscaleError(f"law {form.name} has no irreducible loss E to bound (e_below_min_loss)")
    upper = np.full(len(form.theta_names), np.inf)
    upper[idx[0]] = float(np.min(logy)) - 1e-9
    return upper


def compute_weights(size: Array, power: float) -> Array | None:
    """w_i = (C_i / C_max)^power, normalised to mean 1; None for power 0."""
    if not power:
        return None
    size = np.asarray(size, dtype=float)
    w = np.exp(power * (np.log(size) - np.log(size.max())))
    return w / w.mean()


def pointwise_losses(form: LawForm, theta: Array, X: Mapping[str, Array], logy: Array, delta: float,
                     space: str = "log") -> Array:
    """Huber loss of each point for each theta: shape (..., n); no gradient."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = form.log_predict(np.asarray(theta, dtype=float), X)
        loss, _ = huber(residuals(f, logy, space)[0], delta)
    return np.where(np.isfinite(loss), loss, _BAD)


def objective(
    form: LawForm, theta: Array, X: Mapping[str, Array], logy: Array, delta: float,
    weights: Array | None = None, scale: float = 1.0, space: str = "log",
) -> tuple[float, Array]:
    """``scale * sum_i w_i Huber(r_i)`` and its gradient, for one theta (k,); r as :func:`residuals`."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f, J = form.log_predict(theta, X, jac=True)
        r, drdf = residuals(f, logy, space)
        loss, psi = huber(r, delta)
        if drdf is not None:
            J = J * drdf[:, None]
        if weights is not None:
            loss, psi = loss * weights, psi * weights
        value = scale * float(loss.sum())
        grad = scale * (psi @ J)
    if not np.isfinite(value) or not np.all(np.isfinite(grad)):
        return _BAD, np.zeros_like(theta)
    return value, grad


def _scipy_objective(theta, form, X, logy, delta, weights, scale, space):
    return objective(form, theta, X, logy, delta, weights, scale, space)


def scale_of(options: FitOptions, weights_total: float) -> float:
    """Multiplier of the summed loss: 1 for ``"sum"``, 1/n for ``"mean"``."""
    return 1.0 if options.reduction == "sum" else 1.0 / weights_total


def start_grid(form: LawForm, options: FitOptions) -> Array:
    """The grid of starting points (n_starts, k)."""
    grid = form.theta_grid() if options.grid is None else np.asarray(options.grid, dtype=float)
    if grid.ndim != 2 or grid.shape[1] != len(form.theta_names):
        raise LmscaleError(
            f"law {form.name}: grid must have shape (n, {len(form.theta_names)}) for {form.theta_names}"
        )
    return grid


def lbfgs(
    form: LawForm, X: Mapping[str, Array], logy: Array, starts: Sequence[Array] | Array,
    options: FitOptions, weights: Array | None = None,
) -> Minimum:
    """L-BFGS-B from each start (analytic gradient); the lowest objective wins."""
    total = float(len(logy) if weights is None else np.sum(weights))
    scale = scale_of(options, total)
    shrink = 1.0 if options.reduction == "sum" else scale
    ftol = SCIPY_FTOL * shrink if options.ftol is None else options.ftol
    gtol = SCIPY_GTOL * shrink if options.gtol is None else options.gtol
    delta = options.huber_delta
    upper = theta_bounds(form, options, logy)
    bounds = None if upper is None else [(None, None if not np.isfinite(u) else u) for u in upper]
    best: Minimum | None = None
    with threadpool_limits(1):
        for start in starts:
            start = np.asarray(start, dtype=float)
            if upper is not None:
                start = np.minimum(start, upper)
            res = minimize(
                _scipy_objective, start, args=(form, X, logy, delta, weights, scale, options.residuals),
                jac=True, method="L-BFGS-B", bounds=bounds,
                options={"ftol": ftol, "gtol": gtol, "maxiter": options.maxiter},
            )
            if best is None or res.fun < best.objective:
                best = Minimum(np.asarray(res.x), float(res.fun), bool(res.success), str(res.message),
                               int(res.nit), start)
    assert best is not None
    return best


def batch_objectives(form: LawForm, theta: Array, X: Mapping[str, Array], logy: Array, W: Array,
                     delta: float, space: str = "log") -> Array:
    """``sum_i W[r, i] Huber(r_i(theta[r]))`` for many problems at once: theta (R, k), W (R, n)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, _ = huber(residuals(form.log_predict(theta, X), logy, space)[0], delta)
        value = np.einsum("rn,rn->r", loss, W)
    return np.where(np.isfinite(value), value, _BAD)


def minimise_batch(
    form: LawForm, X: Mapping[str, Array], logy: Array, W: Array, starts: Array, delta: float,
    maxiter: int = 500, tol: float = 1e-10, space: str = "log", upper: Array | None = None,
) -> tuple[Array, Array]:
    """Minimise many weighted Huber objectives at once (bootstrap replicates).

    Problem r minimises ``sum_i W[r, i] Huber(log f(x_i; theta_r) - log y_i)``
    from ``starts[r]``. Levenberg-Marquardt steps on the Huber objective: the
    gradient ``J^T (w psi(r))`` and the curvature ``J^T U J`` with the Huber
    IRLS weights ``U = w min(1, delta / |r|)``, damped by ``lam diag(J^T U J)``;
    a step is kept only where it lowers that problem's objective. Every
    array operation covers all problems still running, so a thousand refits
    cost a few dozen vectorised evaluations. ``space``: the residuals (see
    :func:`residuals`); ``upper``: bounds on theta (k,), steps are clipped to them.
    Returns (theta (R, k), objective (R,)).
    """
    theta = np.array(starts, dtype=float)
    if upper is not None:
        theta = np.minimum(theta, upper)
    R, k = theta.shape
    value = batch_objectives(form, theta, X, logy, W, delta, space)
    lam = np.full(R, 1e-3)
    active = np.ones(R, dtype=bool)
    eye = np.eye(k)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        th, w = theta[idx], W[idx]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f, J = form.log_predict(th, X, jac=True)
            r, drdf = residuals(f, logy, space)
            if drdf is not None:
                J = J * drdf[..., None]
            a = np.abs(r)
            u = w * np.where(a > delta, delta / np.maximum(a, 1e-300), 1.0)
            Jt = np.swapaxes(J, 1, 2)  # (R, k, n)
            g = (Jt @ (w * np.clip(r, -delta, delta))[..., None])[..., 0]
            H = (Jt * u[:, None, :]) @ J
        diag = np.einsum("rkk->rk", H)
        A = H + lam[idx, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)
        A = np.where(np.isfinite(A), A, 0.0)
        g = np.where(np.isfinite(g), g, 0.0)
        try:
            step = np.linalg.solve(A, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular system somewhere: least squares for all
            step = np.stack([np.linalg.lstsq(A[i], -g[i], rcond=None)[0] for i in range(len(idx))])
        trial = th + step
        if upper is not None:
            trial = np.minimum(trial, upper)
        new = batch_objectives(form, trial, X, logy, w, delta, space)
        ok = new < value[idx]
        gain = (value[idx] - new) / np.maximum(np.abs(value[idx]), 1e-300)
        theta[idx[ok]] = trial[ok]
        value[idx[ok]] = new[ok]
        lam[idx[ok]] = np.maximum(lam[idx[ok]] / 3.0, 1e-12)
        lam[idx[~ok]] *= 4.0
        active[idx[(ok & (gain < tol)) | (lam[idx] > 1e12)]] = False
    return theta, value


def grid_objectives(
    form: LawForm, grid: Array, X: Mapping[str, Array], logy: Array, delta: float,
    W: Array | None = None, chunk_elements: int = 2_000_000, space: str = "log",
) -> Array:
    """Summed Huber loss of every grid start, for one or many weightings.

    ``W`` (n, r) holds r weightings of the n points (bootstrap counts); the
    result has shape (n_starts, r), or (n_starts,) when ``W`` is None. The grid
    is evaluated in chunks of about ``chunk_elements`` predictions.
    """
    n = len(logy)
    step = max(1, chunk_elements // max(n, 1))
    out = []
    for i in range(0, len(grid), step):
        losses = pointwise_losses(form, grid[i:i + step], X, logy, delta, space)
        out.append(losses.sum(axis=-1) if W is None else losses @ W)
    return np.concatenate(out, axis=0)


def best_starts(grid: Array, values: Array, k: int) -> Array:
    """The ``k`` grid starts with the lowest objective, best first."""
    k = min(k, len(grid))
    idx = np.argpartition(values, k - 1)[:k] if k < len(grid) else np.arange(len(grid))
    return grid[idx[np.argsort(values[idx], kind="stable")]]


def minimise(
    form: LawForm, X: Mapping[str, Array], logy: Array, options: FitOptions,
    weights: Array | None = None, warm: Sequence[Array] = (),
) -> Minimum:
    """Grid, then vectorised descent from the best starts, then L-BFGS; the best wins.

    1. the objective of every grid start (one vectorised evaluation);
    2. :func:`minimise_batch` from the ``n_screen`` best starts at once;
    3. L-BFGS-B from the ``n_refine`` best results of step 2, the ``n_refine``
       best grid starts themselves, and ``warm``.
    """
    grid = start_grid(form, options)
    upper = theta_bounds(form, options, logy)
    if upper is not None:
        grid = np.minimum(grid, upper)
    values = grid_objectives(form, grid, X, logy, options.huber_delta,
                             None if weights is None else weights[:, None], space=options.residuals)
    values = values if weights is None else values[:, 0]
    starts = list(best_starts(grid, values, options.n_refine))
    if options.n_screen:
        screen = best_starts(grid, values, options.n_screen)
        w = np.ones(len(logy)) if weights is None else weights
        thetas, found = minimise_batch(form, X, logy, np.broadcast_to(w, (len(screen), len(w))), screen,
                                       options.huber_delta, space=options.residuals, upper=upper)
        order = np.argsort(found, kind="stable")
        starts += [thetas[i] for i in order[:options.n_refine] if found[i] < _BAD]
    return lbfgs(form, X, logy, [*starts, *warm], options, weights)
