"""One fitted law: the minimum, its goodness of fit and standard errors, bootstrap intervals.

:func:`fit_points` combines the search of :mod:`lmscale.laws.fitting` with the
refits of :mod:`lmscale.laws.bootstrap` into a
:class:`~lmscale.laws.result.FitResult`; everything that fits a table
(``lmscale.laws.api.fit``, the extrapolation checks, the study fits) ends here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lmscale.laws.bootstrap import bootstrap as run_bootstrap
from lmscale.laws.bootstrap import bootstrap_stderr, percentile_intervals
from lmscale.laws.fitting import FitOptions, compute_weights, minimise, start_grid
from lmscale.laws.forms import LawForm
from lmscale.laws.goodness import gauss_newton_stderr, goodness
from lmscale.laws.identification import EDGE_MARGIN, EDGE_REPLICATES, at_edge, verdict
from lmscale.laws.io import Points
from lmscale.laws.result import FitResult


def fit_points(
    form: LawForm, points: Points, options: FitOptions, bootstrap: int = 0, seed: int = 0,
    ci_level: float = 0.95, n_jobs: int | None = None, progress: bool = False,
    bootstrap_refine: int = 1,
) -> FitResult:
    """Fit ``form`` to prepared points; bootstrap intervals when ``bootstrap > 0``.

    ``options.weight_power`` weights the points by compute (``points.size``).
    Where the bootstrap puts the identification verdict at the rule's edge
    (``lmscale.laws.identification.at_edge``), it is extended to
    ``EDGE_REPLICATES`` times as many replicates and judged again
    (``stats["bootstrap_extended"]`` says so), unless ``options.extend_at_edge``
    is False.
    """
    t0 = time.perf_counter()
    logy = np.log(points.y)
    grid = start_grid(form, options)
    weights = compute_weights(points.size, options.weight_power)
    best = minimise(form, points.X, logy, options, weights=weights)
    params = form.from_theta(best.theta)
    stats: dict[str, Any] = {
        "objective": best.objective, "huber_delta": options.huber_delta, "reduction": options.reduction,
        "converged": best.converged, "optimizer_message": best.message, "n_iter": best.n_iter,
        "grid_starts": int(len(grid)), "refined_starts": int(min(options.n_refine, len(grid))),
        **goodness(form, best.theta, points.X, points.y),
    }
    if options.residuals != "log" or options.weight_power or options.e_below_min_loss:
        stats["variant"] = options.describe()
    stderr = gauss_newton_stderr(form, best.theta, points.X, points.y)
    stats["stderr_method"] = "gauss_newton"
    inputs = {x: points.X[x] for x in form.inputs}
    gauss_newton = stderr

    def judged(n: int) -> tuple[Any, Any, Any, dict[str, Any]]:
        """A bootstrap of ``n`` replicates (one seed: the same first draws for any n), its
        intervals, standard errors and verdict."""
        boot = run_bootstrap(form, points.X, points.y, options, best.theta, n, seed=seed,
                             groups=points.groups, n_jobs=n_jobs, n_refine=bootstrap_refine,
                             progress=progress, weights=weights)
        ok = len(boot.params) >= 2
        ci_n = percentile_intervals(form, boot.params, ci_level) if ok else None
        se = bootstrap_stderr(form, boot.params) if ok else gauss_newton
        return boot, ci_n, se, verdict(params, inputs, points.y, ci=ci_n, stderr=se, samples=boot.params,
                                       n_requested=n)

    ci = None
    samples = None
    if not bootstrap:
        identification = verdict(params, inputs, points.y, stderr=stderr)
    else:
        n_boot = bootstrap
        boot, ci, stderr, identification = judged(n_boot)
        edge = at_edge(identification)
        if edge and options.extend_at_edge:
            n_boot = bootstrap * EDGE_REPLICATES
            stats["bootstrap_extended"] = (f"{bootstrap} replicates put {', '.join(edge)} within "
                                           f"{EDGE_MARGIN:.0%} of the rule's limit: judged on {n_boot}")
            boot, ci, stderr, identification = judged(n_boot)
        samples = boot.params
        if len(samples) >= 2:
            stats.update(stderr_gauss_newton=gauss_newton, stderr_method="bootstrap")
        stats.update(n_bootstrap=n_boot, bootstrap_unit=boot.unit, bootstrap_failed=boot.n_failed,
                     bootstrap_seed=seed, ci_method="percentile")
    stats["time_s"] = time.perf_counter() - t0
    notes = dict(points.notes)
    notes.update(equation=form.equation, units=dict(form.units), extrapolation_size=points.size_by)
    if "N" in points.X and "D" in points.X:  # the extent of the data, for plans beyond it
        notes["data_range"] = {"N_max": float(points.X["N"].max()), "D_max": float(points.X["D"].max()),
                               "C_max": float((6.0 * points.X["N"] * points.X["D"]).max()),
                               "compute": "6 N D (FLOPs)"}
    return FitResult(law=form.name, params=params, ci=ci, stderr=stderr, n_points=len(points),
                     stats=stats, source="fit", notes=notes, ci_level=ci_level, bootstrap_params=samples,
                     identification=identification)
