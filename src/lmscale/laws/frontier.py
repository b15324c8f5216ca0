"""Compute-optimal frontier: N_opt(C) and D_opt(C), three ways ([H] section 3).

* approach 1: envelope of learning curves (:func:`envelope_frontier`),
* approach 2: IsoFLOP profiles, a parabola of loss in log N per budget
  (:func:`isoflop_frontier`),
* approach 3: the parametric [H] form, closed form (:func:`chinchilla_allocation`).

Each gives ``N_opt = k_N C^a`` and ``D_opt = k_D C^b`` (:class:`Frontier`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def chinchilla_exponents(params: Mapping[str, float]) -> tuple[float, float]:
    """(a, b) = (beta / (alpha + beta), alpha / (alpha + beta))  ([H] approach 3, eq. 4)."""
    alpha, beta = float(params["alpha"]), float(params["beta"])
    return beta / (alpha + beta), alpha / (alpha + beta)


def chinchilla_allocation(params: Mapping[str, float], C):
    """Compute-optimal (N_opt, D_opt) of the [H] form at compute C (FLOPs), C = 6 N D.

    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta))
    ([H] eq. 4 with appendix D.2). Floats in, floats out; arrays broadcast.
    """
    alpha, beta = float(params["alpha"]), float(params["beta"])
    A, B = float(params["A"]), float(params["B"])
    a, b = chinchilla_exponents(params)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    x = np.asarray(C, dtype=float) / 6.0
    n_opt, d_opt = G * x**a, x**b / G
    if n_opt.ndim == 0:
        return float(n_opt), float(d_opt)
    return n_opt, d_opt
