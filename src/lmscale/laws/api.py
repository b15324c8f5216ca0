"""Tables in, results out: :func:`fit` (one law, or the one chosen by extrapolation).

The facade above the parts it combines: reading and cleaning the columns
(:mod:`lmscale.laws.io`), the fit with its intervals
(:mod:`lmscale.laws.estimate`), and the extrapolation checks and selection
(:mod:`lmscale.laws.extrapolation`). ``ls.fit`` is :func:`fit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.estimate import fit_points
from lmscale.laws.extrapolation import extrapolation_check, select_law
from lmscale.laws.fitting import FitOptions
from lmscale.laws.forms import get_form
from lmscale.laws.io import parse_columns, prepare_points
from lmscale.laws.result import FitResult


def fit(
    frame: pd.DataFrame, law: str = "chinchilla", *, huber_delta: float = 1e-3, reduction: str = "sum",
    bootstrap: int = 0, seed: int = 0, columns: Mapping[str, str] | str | None = None,
    drop_highest_loss: int = 0, holdout: float | None = None, select: str | None = None,
    ci_level: float = 0.95, n_refine: int = 4, n_jobs: int | None = None, progress: bool = False,
    options: FitOptions | None = None, candidates: Sequence[str] | None = None,
) -> FitResult:
    """Fit a law to a table of runs: ``ls.fit(frame, law="chinchilla", bootstrap=1000)``.

    Args:
        frame: rows with the law's columns (``N``, ``D`` or ``C``, ``loss``, ...;
            see :mod:`lmscale.laws.io`). ``frame.attrs["selection"]`` (set by the
            selection rules of :mod:`lmscale.laws.selection`) is kept in the notes.
        law: a name of ``lmscale.laws.FORMS``.
        huber_delta, reduction, n_refine: see :class:`FitOptions` (or pass ``options``).
        bootstrap: number of bootstrap replicates (0: none); resamples points,
            or whole runs when ``run_id`` repeats.
        seed: seed of the bootstrap.
        columns: ``{"N": "Model Size", ...}`` or ``"N=Model Size,C=Training FLOP"``.
        drop_highest_loss: drop this many rows with the highest output first.
        holdout: also fit on all but the largest runs (by compute) and report the
            relative error on them: a count (>= 1) or a fraction (< 1).
        select: ``"extrapolation"``: choose the law and variant whose fits on the
            smaller runs best predict the larger ones (``law`` is then ignored
            unless ``candidates`` is empty; see :func:`select_law`).
        ci_level: coverage of the percentile intervals.
        n_jobs: bootstrap worker threads (default: all cores).
        progress: a progress bar on stderr for the bootstrap.
    """
    options = options or FitOptions(huber_delta=huber_delta, reduction=reduction, n_refine=n_refine)
    columns = parse_columns(columns)
    selection_notes = list(getattr(frame, "attrs", {}).get("selection", []) or [])
    if select is not None:
        if select != "extrapolation":
            raise LmscaleError(f"select = {select!r}: expected 'extrapolation'")
        result = select_law(frame, candidates=candidates, holdout=0.2 if holdout is None else holdout,
                            columns=columns, drop_highest_loss=drop_highest_loss, base=options,
                            bootstrap=bootstrap, seed=seed, ci_level=ci_level, n_jobs=n_jobs,
                            progress=progress)
    else:
        form = get_form(law)
        points = prepare_points(frame, form, columns, drop_highest_loss)
        result = fit_points(form, points, options, bootstrap, seed, ci_level, n_jobs, progress)
        if holdout is not None:
            result.stats["extrapolation"] = extrapolation_check(form, points, options, holdout)
    if columns:
        result.notes["columns"] = dict(columns)
    if selection_notes:
        result.notes["selection"] = selection_notes
    return result
