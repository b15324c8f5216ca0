"""Bootstrap intervals: refit on resampled points (or whole runs), in parallel.

A replicate is a vector of resampling counts w (how often each point, or
each run's points, is drawn); its fit minimises ``sum_i w_i Huber(r_i)``,
the same as fitting the resampled rows. The grid objective of every
replicate is one matrix product (per-point grid losses @ counts); then
every replicate descends at once (``fitting.minimise_batch``) from the
full-data fit and from its own best grid starts, the lowest objective
winning. Replicates are split into chunks run by worker threads (the
descent spends its time in large numpy operations, which release the GIL,
so threads use the cores without pickling or start-up costs). Seeds come
from one ``SeedSequence``, so the samples do not depend on the number of
workers. Intervals are percentiles of the refitted parameters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from lmscale.errors import LmscaleError
from lmscale.laws.fitting import (
    _BAD,
    FitOptions,
    best_starts,
    grid_objectives,
    minimise_batch,
    start_grid,
    theta_bounds,
)
from lmscale.laws.forms import LawForm
from lmscale.laws.intervals import central_band

Array = np.ndarray


@dataclass
class BootstrapResult:
    """Refitted parameters of every replicate.

    Attributes:
        thetas: (n_ok, k) fitting parameters of the replicates that succeeded.
        params: (n_ok, len(form.params)) natural parameters, ``form.params`` order.
        n_requested: replicates asked for; ``n_failed`` = requested - ok.
        unit: ``"points"`` or ``"runs"`` (what was resampled).
    """

    thetas: Array
    params: Array
    n_requested: int
    unit: str

    @property
    def n_failed(self) -> int:
        return self.n_requested - len(self.thetas)


def resample_counts(n: int, n_boot: int, seed: int | np.random.SeedSequence,
                    groups: Array | None = None) -> Array:
    """Counts (n, n_boot): column b says how often each point is drawn in replicate b.

    With ``groups`` (a run id per point) whole runs are drawn with replacement,
    every point of a run getting its run's count.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, n, size=(n_boot, n))
        counts = np.zeros((n_boot, n))
        np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
        return counts.T
    labels, inverse = np.unique(groups, return_inverse=True)
    m = len(labels)
    idx = rng.integers(0, m, size=(n_boot, m))
    run_counts = np.zeros((n_boot, m))
    np.add.at(run_counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return run_counts[:, inverse].T


def _refit_chunk(form: LawForm, X: Mapping[str, Array], logy: Array, W: Array, starts: Array,
                 delta: float, max_elements: int = 4_000_000, space: str = "log",
                 upper: Array | None = None) -> Array:
    """Refit replicates (columns of W) from their starts (r, s, k); the best start wins.

    Rows of NaN mark replicates whose every start failed.
    """
    r, s, k = starts.shape
    flat = starts.reshape(r * s, k)
    weights = np.repeat(W.T, s, axis=0)  # (r * s, n)
    step = max(1, max_elements // max(1, len(logy) * k))
    thetas = np.empty_like(flat)
    values = np.empty(len(flat))
    for lo in range(0, len(flat), step):
        thetas[lo:lo + step], values[lo:lo + step] = minimise_batch(
            form, X, logy, weights[lo:lo + step], flat[lo:lo + step], delta, space=space, upper=upper)
    values = values.reshape(r, s)
    best = np.argmin(values, axis=1)
    out = thetas.reshape(r, s, k)[np.arange(r), best]
    failed = (values[np.arange(r), best] >= _BAD) | ~np.all(np.isfinite(out), axis=1)
    out[failed] = np.nan
    return out


def bootstrap(
    form: LawForm, X: Mapping[str, Array], y: Array, options: FitOptions, center: Array,
    n_boot: int, seed: int = 0, groups: Array | None = None, n_jobs: int | None = None,
    n_refine: int = 1, progress: bool = False, weights: Array | None = None,
) -> BootstrapResult:
    """Refit ``n_boot`` resamples of the points (or of the runs, given ``groups``).

    Each replicate starts from the full-data fit ``center`` and from its own
    ``n_refine`` best grid starts; the lowest objective wins. Threads:
    ``n_jobs`` (default: all cores; 1 runs in the calling thread).
    ``weights`` (n,): fixed point weights (compute weighting) multiplying the
    resampling counts; the residual space and bounds come from ``options``.
    """
    if n_boot < 1:
        raise LmscaleError(f"bootstrap = {n_boot}: expected a positive number of replicates")
    logy = np.log(y)
    n = len(logy)
    W = resample_counts(n, n_boot, np.random.SeedSequence(seed), groups)
    if weights is not None:
        W = W * np.asarray(weights, dtype=float)[:, None]
    delta, space = options.huber_delta, options.residuals
    upper = theta_bounds(form, options, logy)
    grid = start_grid(form, options)
    if upper is not None:
        grid = np.minimum(grid, upper)
    values = grid_objectives(form, grid, X, logy, delta, W, space=space)  # (n_grid, n_boot)
    starts = np.stack([
        np.vstack([best_starts(grid, values[:, b], n_refine), center[None, :]]) for b in range(n_boot)
    ])
    n_jobs = 1 if n_boot < 64 else max(1, min(n_jobs or os.cpu_count() or 1, n_boot))
    # chunks big enough for the vectorised descent, enough of them to balance the workers
    n_chunks = max(n_jobs, min(4 * n_jobs, n_boot // 64)) if n_jobs > 1 else (
        max(1, min(10, n_boot // 64)) if progress else 1)
    bounds = np.linspace(0, n_boot, n_chunks + 1).astype(int)
    thetas = np.full((n_boot, len(center)), np.nan)
    bar = _bar(n_boot, progress)
    chunks = list(zip(bounds[:-1], bounds[1:]))
    with threadpool_limits(1):  # the workers are the parallelism; BLAS stays serial
        if n_jobs == 1:
            for lo, hi in chunks:
                thetas[lo:hi] = _refit_chunk(form, X, logy, W[:, lo:hi], starts[lo:hi], delta,
                                             space=space, upper=upper)
                bar.update(hi - lo)
        else:
            with ThreadPoolExecutor(n_jobs) as pool:
                futures = {pool.submit(_refit_chunk, form, X, logy, W[:, lo:hi], starts[lo:hi], delta,
                                       space=space, upper=upper): (lo, hi)
                           for lo, hi in chunks}
                for fut in as_completed(futures):
                    lo, hi = futures[fut]
                    thetas[lo:hi] = fut.result()
                    bar.update(hi - lo)
    bar.close()
    ok = np.all(np.isfinite(thetas), axis=1)
    thetas = thetas[ok]
    params = np.array([[form.from_theta(t)[p] for p in form.params] for t in thetas]).reshape(
        len(thetas), len(form.params))
    return BootstrapResult(thetas, params, n_boot, "points" if groups is None else "runs")


def percentile_intervals(form: LawForm, samples: Array, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile interval of each parameter at ``level``: NaN where replicates ran off to
    infinity (the identification rule then reports the parameter as not identified)."""
    with np.errstate(invalid="ignore"):
        lo, hi = central_band(samples, level)
    return {p: (float(a), float(b)) for p, a, b in zip(form.params, lo, hi)}


def bootstrap_stderr(form: LawForm, samples: Array) -> dict[str, float]:
    """Standard deviation of each parameter over the replicates."""
    with np.errstate(invalid="ignore", over="ignore"):  # replicates at infinity: NaN, as above
        sd = np.std(samples, axis=0, ddof=1) if len(samples) > 1 else np.full(len(form.params), np.nan)
    return {p: float(s) for p, s in zip(form.params, sd)}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, progress: bool):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="bootstrap", unit="fit", file=sys.stderr)
