"""Which runs to buy: expected variance reduction at the target per FLOP, from predictive draws.

The forecaster's draws of log loss at the target points t and at every
candidate run j give an ensemble covariance S (the spread the forecast has
now). Measuring candidate j (loss with residual noise variance s^2 in log
loss) would, to first order, change it as a linear-Gaussian (Kalman,
ensemble) update does:

    S' = S - S[:, j] S[j, :] / (S_jj + s^2)

so the variance of the forecast at the targets falls by
``gain_j = sum_t S_tj^2 / (S_jj + s^2)``. :func:`greedy_select` buys the
candidate with the largest ``gain_j / cost_j`` (cost: its training FLOPs
6 N D) among those the remaining budget affords, applies the update, and
repeats; the forecast interval's width scales with the standard deviation,
so the expected narrowing after the picks is ``1 - sqrt(V' / V)``.

Why the draws and not the Fisher information: the update needs only the
predictive draws, so it works unchanged for any forecaster (bootstrap
refits, a model average, draws that carry calibrated extrapolation error),
needs no Jacobian of the law, and sees the curved, skewed spread of a law
whose E and B trade off on few runs, which the linearised Fisher matrix at
one fit does not. Its limits: the ensemble has rank B - 1 (B draws), so it
is meant for a handful of runs per round, refitted between rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmscale.errors import LmscaleError

Array = np.ndarray


@dataclass
class Selection:
    """The runs chosen, in the order bought.

    Attributes:
        picks: indices into the candidates.
        gains: variance of the target forecast removed by each pick (log loss^2, summed over targets).
        costs: FLOPs of each pick.
        variance_before: target variance before any pick (summed over targets).
        variance_after: target variance after each pick.
    """

    picks: list[int]
    gains: list[float]
    costs: list[float]
    variance_before: float
    variance_after: list[float]

    @property
    def narrowing(self) -> list[float]:
        """Expected narrowing of the interval after each pick: 1 - sqrt(V_after / V_before)."""
        if self.variance_before <= 0:
            return [0.0 for _ in self.picks]
        return [1.0 - float(np.sqrt(max(v, 0.0) / self.variance_before)) for v in self.variance_after]

    @property
    def cost(self) -> float:
        return float(sum(self.costs))


#: How :func:`greedy_select` ranks candidates.
RULES = ("auto", "per_flop", "gain")


def greedy_select(
    target_draws: Array, candidate_draws: Array, costs: Array, noise_sd: float, budget: float,
    k: int | None = None, rule: str = "auto",
) -> Selection:
    """Buy candidates for the least expected variance at the targets within ``budget`` FLOPs.

    Two greedy passes over the same ensemble: one buys the largest gain per
    FLOP, the other the largest gain the remaining budget affords; the pass
    that leaves the smaller variance wins (the rule for budgeted submodular
    selection: the per-FLOP pass alone can fill the budget with cheap runs
    when ``k`` caps their number).

    Args:
        target_draws: log-loss draws at the target points (B, T).
        candidate_draws: log-loss draws at the candidate runs (B, M), same draws.
        costs: FLOPs of each candidate (M,).
        noise_sd: residual sd of one run's log loss.
        budget: FLOPs to spend.
        k: at most this many runs (None: as many as the budget affords).
        rule: ``"auto"`` (both passes, the better wins), ``"per_flop"`` or ``"gain"`` (one pass).
    """
    if rule not in RULES:
        raise LmscaleError(f"rule = {rule!r}: expected one of {', '.join(RULES)}")
    target_draws = np.atleast_2d(np.asarray(target_draws, dtype=float))
    candidate_draws = np.atleast_2d(np.asarray(candidate_draws, dtype=float))
    costs = np.asarray(costs, dtype=float)
    B, T = target_draws.shape
    M = candidate_draws.shape[1]
    if candidate_draws.shape[0] != B or costs.shape != (M,):
        raise LmscaleError(f"draws and costs disagree: targets {target_draws.shape}, candidates "
                           f"{candidate_draws.shape}, costs {costs.shape}")
    if B < 2:
        raise LmscaleError("the criterion needs at least 2 predictive draws")
    if not np.all(costs > 0):
        raise LmscaleError("every candidate run must cost a positive number of FLOPs")
    Z = np.concatenate([target_draws, candidate_draws], axis=1)
    Z = Z - Z.mean(axis=0)
    S = Z.T @ Z / (B - 1)  # (T + M, T + M)
    kinds = {"auto": (True, False), "per_flop": (True,), "gain": (False,)}[rule]
    passes = [_greedy(S.copy(), T, costs, float(noise_sd) ** 2, float(budget), k, per_flop) for per_flop in kinds]
    return min(passes, key=lambda sel: (sel.variance_after[-1] if sel.picks else sel.variance_before, sel.cost))


def _greedy(S: Array, T: int, costs: Array, s2: float, budget: float, k: int | None,
            per_flop: bool) -> Selection:
    M = len(costs)
    before = float(np.trace(S[:T, :T]))
    picks: list[int] = []
    gains: list[float] = []
    spent: list[float] = []
    after: list[float] = []
    remaining = budget
    available = np.ones(M, dtype=bool)
    limit = M if k is None else int(k)
    while len(picks) < limit:
        ok = np.flatnonzero(available & (costs <= remaining * (1 + 1e-9)))
        if len(ok) == 0:
            break
        cols = T + ok
        gain = np.sum(S[:T, cols] ** 2, axis=0) / (np.diag(S)[cols] + s2)
        best = int(np.argmax(gain / costs[ok] if per_flop else gain))
        j, g = int(ok[best]), float(gain[best])
        if not g > 0:
            break
        v = S[:, T + j].copy()
        S -= np.outer(v, v) / (S[T + j, T + j] + s2)
        picks.append(j)
        gains.append(g)
        spent.append(float(costs[j]))
        after.append(float(np.trace(S[:T, :T])))
        remaining -= float(costs[j])
        available[j] = False
    return Selection(picks=picks, gains=gains, costs=spent, variance_before=before, variance_after=after)
