"""Where runs may go, what they cost, and the reference designs ``next`` is compared with.

A :class:`DesignSpace` is a log grid of model sizes N times tokens per
parameter D / N, capped at the compute of the largest run one may train
(``c_max``). A run costs its training compute C = 6 N D ([K] section 2.1).
The reference designs spend a given total compute the ways studies
usually do:

* :func:`loguniform_design`: a grid log-uniform in N and in D / N, from the
  space's smallest size up to the size the total affords;
* :func:`isoflop_design`: [H] approach 2, several log-spaced compute budgets
  with a few model sizes around 20 tokens per parameter at each;
* :func:`seed_grid`: a small grid at the cheap corner, where ``next`` starts.

:func:`compute_optimal` gives the compute-optimal (N, D) of a law at a
compute C (the target of ``--target-compute``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar

from lmscale.errors import LmscaleError
from lmscale.laws.forms import LawForm
from lmscale.laws.frontier import chinchilla_allocation


def run_cost(N, D):
    """Training compute C = 6 N D in FLOPs ([K] section 2.1)."""
    return 6.0 * np.asarray(N, dtype=float) * np.asarray(D, dtype=float)


@dataclass(frozen=True)
class DesignSpace:
    """The runs a design may choose from.

    Attributes:
        n_min, n_max: smallest and largest model size (non-embedding N).
        ratio_min, ratio_max: fewest and most tokens per parameter D / N.
        c_max: compute of the largest single run allowed (FLOPs, 6 N D).
        n_sizes, n_ratios: points of the log grid along N and along D / N.
        d_min: fewest tokens of a candidate run (e.g. the smallest run's D: fewer
            steps than any run trained so far are not worth a forecast).
        d_max: most tokens of a candidate run (e.g. the training tokens the data has).
    """

    n_min: float
    n_max: float
    ratio_min: float = 2.0
    ratio_max: float = 200.0
    c_max: float = float("inf")
    n_sizes: int = 14
    n_ratios: int = 9
    d_min: float = 0.0
    d_max: float = float("inf")

    def __post_init__(self) -> None:
        for name in ("n_min", "n_max", "ratio_min", "ratio_max", "c_max"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise LmscaleError(f"design space: {name} = {value!r}: expected a positive number")
        if self.n_max < self.n_min or self.ratio_max < self.ratio_min:
            raise LmscaleError(f"design space: empty range (N {self.n_min:g}..{self.n_max:g}, "
                               f"D/N {self.ratio_min:g}..{self.ratio_max:g})")
        if self.n_sizes < 1 or self.n_ratios < 1:
            raise LmscaleError("design space: n_sizes and n_ratios must be at least 1")

    def candidates(self) -> pd.DataFrame:
        """Every grid run with C <= c_max: columns N, D, C."""
        N = np.geomspace(self.n_min, self.n_max, self.n_sizes)
        r = np.geomspace(self.ratio_min, self.ratio_max, self.n_ratios)
        NN, RR = np.meshgrid(N, r, indexing="ij")
        frame = pd.DataFrame({"N": NN.ravel(), "D": (NN * RR).ravel()})
        frame["C"] = run_cost(frame["N"], frame["D"])
        keep = (frame["C"] <= self.c_max * (1 + 1e-9)) & (frame["D"] >= self.d_min * (1 - 1e-9))
        frame = frame[keep & (frame["D"] <= self.d_max * (1 + 1e-9))]
        frame = frame.reset_index(drop=True)
        if frame.empty:
            raise LmscaleError(f"design space: no run fits under c_max = {self.c_max:.3g} FLOPs (the cheapest "
                               f"costs {6 * self.n_min**2 * self.ratio_min:.3g})")
        return frame

    @property
    def cheapest(self) -> float:
        return float(6.0 * self.n_min * self.n_min * self.ratio_min)


def seed_grid(space: DesignSpace, n_sizes: int = 3, ratios: tuple[float, ...] = (5.0, 20.0, 80.0),
              size_step: float = 2.0) -> pd.DataFrame:
    """The cheap corner: ``n_sizes`` sizes from ``n_min`` (each ``size_step`` x the last) x ``ratios``."""
    N = space.n_min * size_step ** np.arange(n_sizes)
    NN, RR = np.meshgrid(N, np.asarray(ratios, dtype=float), indexing="ij")
    frame = pd.DataFrame({"N": NN.ravel(), "D": (NN * RR).ravel()})
    frame["C"] = run_cost(frame["N"], frame["D"])
    return frame


def _solve_top(build, lo: float, hi: float, total: float) -> pd.DataFrame:
    """The design ``build(x)`` whose total compute is ``total``, x in [lo, hi] (log bisection)."""
    top = build(hi)
    if top["C"].sum() <= total:
        return top
    if build(lo)["C"].sum() > total:
        return build(lo)

    def gap(x: float) -> float:
        return float(np.log(build(np.exp(x))["C"].sum() / total))

    x = brentq(gap, np.log(lo), np.log(hi), xtol=1e-6)
    out = build(np.exp(x))
    while out["C"].sum() > total * (1 + 1e-6):  # brentq's side of the root may be over
        x -= 1e-6
        out = build(np.exp(x))
    return out


def loguniform_design(space: DesignSpace, total: float, sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8),
                      n_top_steps: int = 200) -> pd.DataFrame:
    """A grid log-uniform in N and in D / N over the space, spending (at most) ``total`` FLOPs.

    m sizes log-uniform from ``n_min`` to N_top, each at m ratios log-uniform
    over the space's D / N range, runs above ``c_max`` left out. Of every m in
    ``sizes`` and N_top on a log scan up to ``n_max``, the grid spending the
    most without exceeding ``total`` is returned.
    """
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    tops = np.geomspace(space.n_min * 1.5, space.n_max, n_top_steps)
    for m in sizes:
        ratios = np.geomspace(space.ratio_min, space.ratio_max, m)
        N = space.n_min * (tops[:, None] / space.n_min) ** np.linspace(0.0, 1.0, m)[None, :]  # (steps, m)
        C = run_cost(N[:, :, None], N[:, :, None] * ratios[None, None, :])  # (steps, m, m)
        keep = C <= space.c_max * (1 + 1e-9)
        spent = np.where(keep, C, 0.0).sum(axis=(1, 2))
        spent[spent > total * (1 + 1e-9)] = -1.0
        i = int(np.argmax(spent))
        if spent[i] > 0 and (best is None or spent[i] > best[0]):
            NN = np.broadcast_to(N[i][:, None], (m, m))
            best = (float(spent[i]), NN[keep[i]], (NN * ratios[None, :])[keep[i]])
    if best is None:
        raise LmscaleError(f"log-uniform grid: even the smallest grid costs more than {total:.3g} FLOPs")
    frame = pd.DataFrame({"N": best[1], "D": best[2]})
    frame["C"] = run_cost(frame["N"], frame["D"])
    return frame


def isoflop_design(space: DesignSpace, total: float, n_budgets: int = 4, n_sizes: int = 5,
                   decades: float = 3.0, ratio: float = 20.0, spread: float = 4.0) -> pd.DataFrame:
    """[H] approach 2: ``n_budgets`` compute budgets over ``decades`` decades up to C_top, at each
    ``n_sizes`` sizes log-spaced within ``spread`` x of sqrt(C / (6 ratio)); totals ``total`` FLOPs."""

    def build(c_top: float) -> pd.DataFrame:
        budgets = c_top * np.geomspace(10.0 ** -decades, 1.0, n_budgets)
        rows = []
        for c in budgets:
            center = np.sqrt(c / (6.0 * ratio))
            for N in center * np.geomspace(1.0 / spread, spread, n_sizes):
                rows.append({"N": N, "D": c / (6.0 * N), "C": c})
        return pd.DataFrame(rows)

    return _solve_top(build, space.cheapest, space.c_max, total)


def compute_optimal(form: LawForm, params: Mapping[str, float], C: float) -> tuple[float, float]:
    """The (N, D) with 6 N D = C of least predicted loss.

    The [H] form uses its closed form (:func:`lmscale.laws.frontier.chinchilla_allocation`);
    other laws of N and D are minimised over log N numerically.
    """
    if not C > 0:
        raise LmscaleError(f"target compute = {C!r}: expected a positive number of FLOPs")
    if form.name == "chinchilla":
        N, D = chinchilla_allocation(params, C)
        return float(N), float(D)
    theta = form.to_theta(params)

    def loss(log_n: float) -> float:
        N = np.exp(log_n)
        return float(form.log_predict(theta, {"N": np.array([N]), "D": np.array([C / (6.0 * N)])})[0])

    lo, hi = np.log(C) * 0.1, np.log(C / 6.0)
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    N = float(np.exp(res.x))
    if abs(res.x - lo) < 1e-3 or abs(res.x - hi) < 1e-3:
        raise LmscaleError(f"law {form.name}: no compute-optimal model size at C = {C:.3g} FLOPs "
                           "(the loss keeps falling to the edge); give the target as --target N,D")
    return N, C / (6.0 * N)
