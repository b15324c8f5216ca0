"""Synthetic runs drawn from a known law: the ground truth that checks selection and intervals.

:func:`simulate_runs` evaluates a law form (``lmscale.laws.forms``) at a grid
of model sizes and tokens per parameter and multiplies each loss by
exp(noise x standard normal), the log-normal scatter of real runs about a
law. :data:`TRUE_LAWS` holds one parameter set per candidate form, each
from the papers: [H] approach 3 for ``chinchilla``, the same with the
exponents tied at their mean for ``chinchilla_tied``, [K] section 4 for
``kaplan_nd``, and Muennighoff et al.'s C4 fit for ``data_constrained``
(whose runs then repeat a fixed budget of unique tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws import data_constrained as _data_constrained  # noqa: F401  (registers its form)
from lmscale.laws.forms import get_form

#: Known parameters of each candidate form ([H] eq. 10, [K] section 4, [M] C4 fit).
TRUE_LAWS: dict[str, dict[str, float]] = {
    "chinchilla": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "chinchilla_tied": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.31},
    "kaplan_nd": {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103},
    "data_constrained": {"E": float(np.exp(0.6254804)), "A": float(np.exp(6.255414)),
                         "B": float(np.exp(7.3049974)), "alpha": 0.3526596, "beta": 0.3526596,
                         "R_D_star": 15.387756, "R_N_star": 5.309743},
}

#: Default grid: model sizes and tokens per parameter (0.5x to 8x of 20 tokens/param, as ladders run).
SIZES = (1e7, 2e7, 5e7, 1e8, 2e8, 5e8)
MULTIPLES = (10.0, 20.0, 40.0, 80.0, 160.0)


def simulate_runs(law: str, params: Mapping[str, float] | None = None, sizes: Sequence[float] = SIZES,
                  multiples: Sequence[float] = MULTIPLES, noise: float = 0.002, seed: int = 0,
                  unique_tokens: float | None = None) -> pd.DataFrame:
    """Runs ``N, D, loss`` (and ``U``) on the grid sizes x multiples (D = multiple x N).

    ``noise``: sd of the log-normal scatter. ``unique_tokens``: the unique
    tokens every run draws from (``U``; a law with a ``U`` input defaults to
    the tokens of the smallest grid point, so larger runs repeat data).
    """
    form = get_form(law)
    params = dict(TRUE_LAWS[law] if params is None else params)
    if not (noise >= 0 and np.isfinite(noise)):
        raise LmscaleError(f"noise = {noise!r}: expected a standard deviation >= 0")
    N = np.repeat(np.asarray(sizes, dtype=float), len(multiples))
    D = N * np.tile(np.asarray(multiples, dtype=float), len(sizes))
    inputs = {"N": N, "D": D}
    frame = pd.DataFrame({"N": N, "D": D})
    if "U" in form.inputs:
        U = float(unique_tokens if unique_tokens is not None else D.min() * 4.0)
        inputs["U"] = np.full_like(N, U)
        frame["U"] = U
    rng = np.random.default_rng(seed)
    loss = np.asarray(form.predict(params, **inputs), dtype=float)
    frame["loss"] = loss * np.exp(noise * rng.standard_normal(len(N)))
    return frame


def true_loss(law: str, N, D, U=None, params: Mapping[str, float] | None = None) -> np.ndarray:
    """The noise-free loss of the known law at (N, D[, U])."""
    form = get_form(law)
    inputs = {"N": N, "D": D}
    if "U" in form.inputs:
        inputs["U"] = D if U is None else U
    return np.asarray(form.predict(dict(TRUE_LAWS[law] if params is None else params), **inputs), dtype=float)


__all__ = ["MULTIPLES", "SIZES", "TRUE_LAWS", "simulate_runs", "true_loss"]
