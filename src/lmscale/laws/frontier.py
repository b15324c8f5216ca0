"""Compute-optimal frontier: N_opt(C) and D_opt(C), three ways ([H] section 3).

* approach 1: envelope of learning curves (:func:`envelope_frontier`),
* approach 2: IsoFLOP profiles, a parabola of loss in log N per budget
  (:func:`isoflop_frontier`),
* approach 3: the parametric [H] form, closed form (:func:`chinchilla_allocation`,
  :func:`parametric_frontier` for a fit with its bootstrap).

Each gives ``N_opt = k_N C^a`` and ``D_opt = k_D C^b`` (:class:`Frontier`), with
bootstrap intervals; :func:`compare_frontiers` reports how far they agree.
Every power law across budgets is fitted by :func:`fit_power_law`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmscale.errors import LmscaleError
from lmscale.laws.intervals import central_band

if TYPE_CHECKING:
    import pandas as pd


def chinchilla_exponents(params: Mapping[str, float]) -> tuple[float, float]:
    """(a, b) = (beta / (alpha + beta), alpha / (alpha + beta))  ([H] approach 3, eq. 4)."""
    alpha, beta = float(params["alpha"]), float(params["beta"])
    if not (alpha > 0 and beta > 0):
        raise LmscaleError(
            f"no compute-optimal allocation: the [H] form needs alpha > 0 and beta > 0 "
            f"(got alpha = {alpha:.4g}, beta = {beta:.4g})"
        )
    return beta / (alpha + beta), alpha / (alpha + beta)


def chinchilla_allocation(params: Mapping[str, float], C):
    """Compute-optimal (N_opt, D_opt) of the [H] form at compute C (FLOPs), C = 6 N D.

    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta))
    ([H] eq. 4 with appendix D.2). Floats in, floats out; arrays broadcast.
    """
    alpha, beta = float(params["alpha"]), float(params["beta"])
    A, B = float(params["A"]), float(params["B"])
    a, b = chinchilla_exponents(params)
    if not (A > 0 and B > 0):
        raise LmscaleError(f"no compute-optimal allocation: A and B must be positive (got A = {A:.4g}, B = {B:.4g})")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    x = np.asarray(C, dtype=float) / 6.0
    n_opt, d_opt = G * x**a, x**b / G
    if n_opt.ndim == 0:
        return float(n_opt), float(d_opt)
    return n_opt, d_opt


# ---------------------------------------------------------------------------
# The frontier object and the one power-law regression
# ---------------------------------------------------------------------------


#: The name [H] approach 2 (the budgets' parabola minima, fitted across budgets) goes by beside fitted laws.
APPROACH_2 = "approach 2"


def power_law(coef, exponent, x):
    """coef x^exponent, element-wise (overflow gives inf, not a warning): every N_opt = k C^a here."""
    with np.errstate(over="ignore", invalid="ignore"):
        return coef * np.asarray(x, dtype=float) ** exponent


@dataclass
class Frontier:
    """N_opt(C) = k_N C^a and D_opt(C) = k_D C^b (C in FLOPs), found one way.

    Attributes:
        method: ``"envelope"`` ([H] approach 1), ``"isoflop"`` (approach 2) or
            ``"parametric"`` (approach 3).
        a, k_N, b, k_D: exponents and coefficients.
        ci: 95% (``ci_level``) percentile intervals of a, k_N, b, k_D, when bootstrapped.
        points: the per-budget optima the power laws were fitted to (C, N_opt,
            D_opt, loss, and a standard error where known); None for approach 3.
        notes: what was done, in words.
    """

    method: str
    a: float
    k_N: float
    b: float
    k_D: float
    ci: dict[str, tuple[float, float]] | None = None
    points: pd.DataFrame | None = field(default=None, repr=False)
    notes: dict[str, Any] = field(default_factory=dict)
    ci_level: float = 0.95
    samples: np.ndarray | None = field(default=None, repr=False)

    def n_opt(self, C):
        """Compute-optimal parameters at compute C (FLOPs)."""
        return power_law(self.k_N, self.a, C)

    def d_opt(self, C):
        """Compute-optimal tokens at compute C (FLOPs)."""
        return power_law(self.k_D, self.b, C)

    def to_dict(self) -> dict[str, Any]:
        from lmscale.laws.result import _clean

        return _clean({
            "method": self.method, "a": self.a, "k_N": self.k_N, "b": self.b, "k_D": self.k_D,
            "ci": {k: list(v) for k, v in self.ci.items()} if self.ci else None, "ci_level": self.ci_level,
            "points": self.points.to_dict(orient="list") if self.points is not None else None,
            "notes": self.notes,
        })


def fit_power_law(x, y, weights=None) -> tuple[float, float]:
    """(k, a) of y = k x^a by (weighted) least squares of log y on log x.

    ``weights`` multiply the squared residuals (e.g. 1 / sd(log y)^2).
    """
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    w = np.ones_like(lx) if weights is None else np.asarray(weights, dtype=float)
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise LmscaleError(f"a power law needs at least 2 distinct x values; got {len(np.unique(lx))}")
    X = np.stack([np.ones_like(lx), lx], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], ly * sw, rcond=None)
    return float(np.exp(coef[0])), float(coef[1])


def _allocation(method: str, C, N, weights=None, **kw: Any) -> Frontier:
    """Frontier from per-budget optima: N = k_N C^a and D = C / (6 N) = k_D C^b."""
    C, N = np.asarray(C, dtype=float), np.asarray(N, dtype=float)
    k_n, a = fit_power_law(C, N, weights)
    k_d, b = fit_power_law(C, C / (6.0 * N), weights)
    return Frontier(method, a, k_n, b, k_d, **kw)


def sample_intervals(samples: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals of a, k_N, b, k_D from replicates (n, 4); failed (NaN) rows left out.

    Where every replicate failed, the bounds are NaN (no interval), without numpy's warning.
    """
    samples = np.asarray(samples, dtype=float).reshape(-1, 4)
    lo, hi = np.full(4, np.nan), np.full(4, np.nan)
    some = np.isfinite(samples).any(axis=0)
    if some.any():
        lo[some], hi[some] = central_band(samples[:, some], level, nan=True)
    return {name: (float(x), float(y)) for name, x, y in zip(("a", "k_N", "b", "k_D"), lo, hi)}


# ---------------------------------------------------------------------------
# Approach 3: the parametric form
# ---------------------------------------------------------------------------


def parametric_frontier(fit: Any, ci_level: float = 0.95) -> Frontier:
    """[H] approach 3 from a ``chinchilla`` FitResult (intervals from its bootstrap samples)."""
    if fit.law != "chinchilla":
        raise LmscaleError(f"approach 3 needs a chinchilla fit; got law {fit.law}")

    def row(p: Mapping[str, float]) -> list[float]:
        a, b = chinchilla_exponents(p)
        n6, d6 = chinchilla_allocation(p, 6.0)  # N_opt(C) = n6 (C/6)^a = n6 6^-a C^a
        return [a, n6 * 6.0**-a, b, d6 * 6.0**-b]

    a, k_n, b, k_d = row(fit.params)
    ci = samples = None
    notes: dict[str, Any] = {"formula": "N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, "
                             "G = (alpha A / (beta B))^(1/(alpha+beta))", "fit": dict(fit.params)}
    if fit.bootstrap_params is not None and len(fit.bootstrap_params) > 1:
        names = fit.form.params
        rows = []
        for s in fit.bootstrap_params:
            try:  # a replicate without an allocation (alpha or beta <= 0) is counted, not fatal
                rows.append(row(dict(zip(names, s))))
            except LmscaleError:
                continue
        notes["bootstrap_failed"] = len(fit.bootstrap_params) - len(rows)
        notes["bootstrap_used"] = len(rows)
        if len(rows) > 1:
            samples = np.array(rows)
            ci = sample_intervals(samples, ci_level)
    return Frontier("parametric", a, k_n, b, k_d, ci=ci, ci_level=ci_level, samples=samples, notes=notes)


# ---------------------------------------------------------------------------
# Approach 2: IsoFLOP profiles
# ---------------------------------------------------------------------------


def _budgets(C: np.ndarray, rtol: float) -> np.ndarray:
    """Cluster labels: compute values within ``rtol`` of their neighbour share a budget."""
    order = np.argsort(C, kind="stable")
    labels = np.empty(len(C), dtype=int)
    lc = np.log(C[order])
    labels[order] = np.concatenate([[0], np.cumsum(np.diff(lc) > np.log1p(rtol))]) if len(C) else []
    return labels


def _with_compute(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    need = [c for c in ("N", "loss") if c not in frame.columns]
    if need:
        raise LmscaleError(f"{where}: needs column(s) {', '.join(need)}; columns: {', '.join(map(str, frame.columns))}")
    if "C" in frame.columns:
        return frame
    tokens = "D" if "D" in frame.columns else ("tokens" if "tokens" in frame.columns else None)
    if tokens is None:
        raise LmscaleError(f"{where}: needs column C, or D (or tokens) to compute C = 6 N D")
    return frame.assign(C=6.0 * frame["N"] * frame[tokens])


def isoflop_optima(frame: pd.DataFrame, half_window: int = 3, rtol: float = 0.02) -> pd.DataFrame:
    """Per budget, the minimum of a parabola of loss in log N ([H] approach 2).

    Rows whose C agree within ``rtol`` form one budget (the lowest loss per N is
    kept). The parabola is fitted to the ``half_window`` sizes either side of the
    lowest observed loss (the parabola is a local form; far sizes bend it);
    budgets whose parabola opens downwards or whose minimum lies outside those
    sizes are dropped (``status`` says why). ``se_log_n`` is the delta-method
    standard error of log N_opt, floored at a third of the median log-spacing of
    the sizes. Columns: C, N_opt, D_opt, loss, se_log_n, n_sizes, status.
    """
    frame = _with_compute(frame, "isoflop")
    C = frame["C"].to_numpy(dtype=float)
    labels = _budgets(C, rtol)
    rows = []
    for label in np.unique(labels):
        g = frame.loc[labels == label]
        budget = float(np.exp(np.mean(np.log(g["C"].to_numpy(dtype=float)))))
        prof = g.groupby("N", sort=True)["loss"].min()
        x, y = np.log(prof.index.to_numpy(dtype=float)), prof.to_numpy(dtype=float)
        row = {"C": budget, "N_opt": np.nan, "D_opt": np.nan, "loss": np.nan, "se_log_n": np.nan,
               "n_sizes": int(len(x)), "status": "ok"}
        i = int(np.argmin(y)) if len(y) else 0
        lo, hi = max(0, i - half_window), min(len(x), i + half_window + 1)
        xx, yy = x[lo:hi], y[lo:hi]
        if len(xx) < 3:
            row["status"] = f"only {len(xx)} sizes near the minimum (need 3)"
            rows.append(row)
            continue
        p = np.polyfit(xx, yy, 2)
        v = -p[1] / (2 * p[0]) if p[0] > 0 else np.nan
        if not (p[0] > 0 and xx.min() <= v <= xx.max()):
            row["status"] = "parabola has no minimum inside the sizes fitted"
            rows.append(row)
            continue
        floor = np.median(np.diff(x)) / 3.0 if len(x) > 1 else 0.0
        se = floor
        if len(xx) > 3:
            X = np.stack([xx**2, xx, np.ones_like(xx)], axis=1)
            s2 = float(np.sum((yy - X @ p) ** 2)) / (len(xx) - 3)
            cov = s2 * np.linalg.pinv(X.T @ X)
            grad = np.array([p[1] / (2 * p[0] ** 2), -1.0 / (2 * p[0]), 0.0])
            se = max(float(np.sqrt(max(grad @ cov @ grad, 0.0))), floor)
        n_opt = float(np.exp(v))
        row.update(N_opt=n_opt, D_opt=budget / (6.0 * n_opt), loss=float(np.polyval(p, v)), se_log_n=se)
        rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows)


def isoflop_frontier(
    frame: pd.DataFrame, half_window: int = 3, weighted: bool = True, bootstrap: int = 1000,
    seed: int = 0, ci_level: float = 0.95, rtol: float = 0.02,
) -> Frontier:
    """[H] approach 2: per-budget parabola minima, then N_opt = k C^a across budgets.

    ``weighted``: weights 1 / se(log N_opt)^2 in the power-law fit. Intervals:
    ``bootstrap`` replicates that resample the budgets and move each optimum by
    its standard error.
    """
    optima = isoflop_optima(frame, half_window, rtol)
    ok = optima[optima["status"] == "ok"]
    if len(ok) < 2:
        raise LmscaleError(f"isoflop: {len(ok)} budget(s) with a usable parabola; need at least 2")
    C, N, se = (ok[c].to_numpy(dtype=float) for c in ("C", "N_opt", "se_log_n"))
    w = 1.0 / se**2 if weighted else None
    ci = samples = None
    failed = 0
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.empty((bootstrap, 4))
        for r in range(bootstrap):
            idx = rng.integers(0, len(C), len(C))
            n_r = N[idx] * np.exp(se[idx] * rng.standard_normal(len(idx)))
            try:
                f = _allocation("isoflop", C[idx], n_r, None if w is None else w[idx])
                samples[r] = [f.a, f.k_N, f.b, f.k_D]
            except LmscaleError:  # every draw the same budget: counted, left out
                samples[r] = np.nan
                failed += 1
        ci = sample_intervals(samples, ci_level)
    return _allocation(
        "isoflop", C, N, w, ci=ci, points=optima, ci_level=ci_level, samples=samples,
        notes={"budgets_used": int(len(ok)), "budgets_dropped": int(len(optima) - len(ok)), "bootstrap_failed": failed,
               "half_window": half_window, "weighted": weighted,
               "parabola": "loss = p0 + p1 log N + p2 (log N)^2 per budget"},
    )


# ---------------------------------------------------------------------------
# Approach 1: the envelope of learning curves
# ---------------------------------------------------------------------------


@dataclass
class _Envelope:
    """Every run's curve interpolated in log-log on one log-spaced compute grid (see :func:`envelope_points`)."""

    grid: np.ndarray
    L: np.ndarray  # log loss (runs x grid), inside each run's range only
    record_at: np.ndarray  # lowest log loss each run reached at or below each grid value
    started: np.ndarray  # whether each run has started at each grid value
    sizes: np.ndarray
    min_runs: int

    @classmethod
    def of(cls, curves: pd.DataFrame, n_grid: int, min_runs: int, compute: str) -> _Envelope:
        curves = _with_compute(curves, "envelope")
        if compute not in curves.columns:
            raise LmscaleError(f"envelope: needs column {compute}; columns: {', '.join(map(str, curves.columns))}")
        if "run_id" not in curves.columns:
            raise LmscaleError("envelope: needs column run_id (one learning curve per run)")
        curves = curves[(curves[compute] > 0) & (curves["loss"] > 0)]
        groups = list(curves.groupby("run_id", sort=True))
        if len(groups) < 2:
            raise LmscaleError(f"envelope: needs at least 2 runs; got {len(groups)}")
        grid = np.geomspace(curves[compute].min(), curves[compute].max(), n_grid)
        lg = np.log(grid)
        L = np.full((len(groups), n_grid), np.nan)
        record_at = np.full((len(groups), n_grid), np.inf)
        started = np.zeros((len(groups), n_grid), dtype=bool)
        sizes = np.empty(len(groups))
        for i, (_, g) in enumerate(groups):
            g = g.sort_values(compute)
            lc, ll = np.log(g[compute].to_numpy(dtype=float)), np.log(g["loss"].to_numpy(dtype=float))
            inside = (lg >= lc[0]) & (lg <= lc[-1])
            L[i, inside] = np.interp(lg[inside], lc, ll)
            started[i] = lg >= lc[0]
            reached = np.minimum.accumulate(ll)  # best loss of the run up to each of its points
            last = np.searchsorted(lc, lg, side="right") - 1  # its last point at or below each grid value
            record_at[i] = np.where(last >= 0, reached[np.maximum(last, 0)], np.inf)
            record_at[i, inside] = np.minimum(record_at[i, inside], L[i, inside])
            sizes[i] = float(g["N"].iloc[0])
        return cls(grid, L, record_at, started, sizes, min_runs)

    def winners(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Compute, winning size, loss, and whether each point is censored (won by the smallest or
        the largest size among ``rows``: the optimum there may lie beyond the sizes)."""
        n_grid = len(self.grid)
        sub = self.L[rows]
        has = np.isfinite(sub).any(axis=0) & (self.started[rows].sum(axis=0) >= self.min_runs)
        best = np.argmin(np.where(np.isfinite(sub), sub, np.inf), axis=0)
        best_loss = sub[best, np.arange(n_grid)]
        record = np.minimum.accumulate(self.record_at[rows].min(axis=0))
        keep = has & (best_loss <= record + 1e-12)
        span = self.sizes[rows]
        won = span[best[keep]]
        censored = np.isclose(won, span.min(), rtol=1e-9) | np.isclose(won, span.max(), rtol=1e-9)
        return self.grid[keep], won, np.exp(best_loss[keep]), censored


def envelope_points(curves: pd.DataFrame, n_grid: int = 100, min_runs: int = 2, compute: str = "C") -> pd.DataFrame:
    """The lower envelope of learning curves: at each of ``n_grid`` log-spaced values of ``compute``
    (``C``, or ``C_min``), the run of lowest loss (``N_opt``, ``D_opt = C / (6 N_opt)``, ``loss``).

    Each run's curve (``run_id``, ``N``, ``loss``, ``compute``) is interpolated
    in log-log inside its own range: a run counts only where it has data. A
    grid value is on the envelope when its best run there is also the lowest
    loss any run reached at that compute or less (the record so far): where
    the winning run's curve ends, the next run takes over only once it
    overtakes the loss the ended run reached, never by default. It needs
    ``min_runs`` runs started at or below it. ``censored``: won by the
    smallest or the largest size trained, where the optimum may lie beyond
    the sizes (a bound on N_opt, not an estimate). The loss column is [K]'s
    L(C) frontier (figure 13) whatever wins.
    """
    env = _Envelope.of(curves, n_grid, min_runs, compute)
    return _points_frame(*env.winners(np.arange(len(env.sizes))), compute)


def _points_frame(C: np.ndarray, N: np.ndarray, loss: np.ndarray, censored: np.ndarray, compute: str) -> pd.DataFrame:
    import pandas as pd

    points = pd.DataFrame({compute: C, "N_opt": N, "D_opt": C / (6.0 * N), "loss": loss, "censored": censored})
    return points if compute == "C" else points.rename(columns={compute: "C"}).assign(compute=compute)


def _interior(C: np.ndarray, N: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The envelope's points won by a size between the smallest and the largest trained."""
    if len(np.unique(N[~censored])) < 2:
        raise LmscaleError(
            "envelope: fewer than 2 sizes win between the smallest and the largest trained (where those win, "
            "the optimum may lie beyond the sizes); train sizes further apart around the frontier")
    return C[~censored], N[~censored]


def envelope_frontier(
    curves: pd.DataFrame, n_grid: int = 100, min_runs: int = 2, bootstrap: int = 200, seed: int = 0,
    ci_level: float = 0.95, compute: str = "C",
) -> Frontier:
    """[H] approach 1: at each compute, the run of lowest loss (:func:`envelope_points`); then N_opt = k C^a,
    fitted where a size between the smallest and the largest trained wins (where one of those wins,
    the optimum may lie beyond the sizes trained: a bound, not an estimate; kept in ``points`` with
    ``censored`` true). D_opt = C / (6 N_opt). Intervals: ``bootstrap`` replicates that resample whole
    runs (failed replicates are counted in ``notes["bootstrap_failed"]`` and left out).
    """
    env = _Envelope.of(curves, n_grid, min_runs, compute)
    runs = len(env.sizes)
    C, N, loss, censored = env.winners(np.arange(runs))
    if len(np.unique(N)) < 2:
        raise LmscaleError("envelope: a single run is best at every compute; need runs of several sizes")
    C_fit, N_fit = _interior(C, N, censored)
    ci = samples = None
    failed = 0
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.full((bootstrap, 4), np.nan)
        for r in range(bootstrap):
            rows = np.unique(rng.integers(0, runs, runs))
            try:
                c_r, n_r, _, cens_r = env.winners(rows)
                f = _allocation("envelope", *_interior(c_r, n_r, cens_r))
                samples[r] = [f.a, f.k_N, f.b, f.k_D]
            except (LmscaleError, ValueError):
                failed += 1
        ci = sample_intervals(samples, ci_level)
    points = _points_frame(C, N, loss, censored, compute)
    return _allocation("envelope", C_fit, N_fit, ci=ci, points=points, ci_level=ci_level, samples=samples,
                       notes={"runs": runs, "grid": n_grid, "min_runs": min_runs, "compute": compute,
                              "bootstrap_failed": failed, "censored_points": int(censored.sum()),
                              "envelope": f"lowest interpolated loss in {compute} among runs with data there, "
                                          "kept where it is the lowest loss reached at that compute or less; "
                                          "fitted where a size between the smallest and the largest trained "
                                          "wins (where those win, the optimum may lie beyond the sizes)"})


# ---------------------------------------------------------------------------
# Consistency of the three
# ---------------------------------------------------------------------------


def compare_frontiers(frontiers: list[Frontier], budgets=(1e21, 1e23, 1e25)) -> dict[str, Any]:
    """How far the approaches agree: exponents, intervals, N_opt at ``budgets``.

    ``a_interval_overlap[i, j]`` says whether the a-intervals of two methods
    overlap; ``n_opt_spread`` is max / min N_opt across methods at each budget;
    ``consistent`` is True when every pair of a-intervals overlaps (None
    without intervals).
    """
    rows = []
    for f in frontiers:
        rows.append({"method": f.method, "a": f.a, "b": f.b, "k_N": f.k_N, "k_D": f.k_D,
                     "a_ci": f.ci["a"] if f.ci else None,
                     "n_opt": {f"{c:.3g}": float(f.n_opt(c)) for c in budgets}})
    pairs = {}
    consistent: bool | None = True
    for i, f in enumerate(frontiers):
        for g in frontiers[i + 1:]:
            key = f"{f.method}-{g.method}"
            entry: dict[str, Any] = {"delta_a": abs(f.a - g.a)}
            if f.ci and g.ci:
                entry["a_interval_overlap"] = bool(f.ci["a"][0] <= g.ci["a"][1] and g.ci["a"][0] <= f.ci["a"][1])
                consistent = consistent and entry["a_interval_overlap"]
            else:
                consistent = None if consistent is not False else False
            pairs[key] = entry
    spread = {f"{c:.3g}": float(max(f.n_opt(c) for f in frontiers) / min(f.n_opt(c) for f in frontiers))
              for c in budgets}
    return {"methods": rows, "pairs": pairs, "n_opt_spread": spread, "consistent": consistent}
