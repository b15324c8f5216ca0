"""What fitting a study gives: :class:`StudyFits`, the held-out check, and the "not enough runs" error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.forms import get_form
from lmscale.laws.result import FitResult, LawSet

#: A per-position standard error (relative to the loss) below which L(t) is read as measured.
POSITION_SE_GOAL = 0.005


@dataclass
class HoldoutCheck:
    """The largest model's loss predicted by a law fitted on the smaller ones.

    Attributes:
        law: the law used (``kaplan_n`` by default).
        run_id: the held-out run.
        N, D: its size and data.
        loss: its measured final loss (nats/token).
        predicted: the law's prediction for it, fitted without it.
        n_fit: number of points the held-out fit used.
    """

    law: str
    run_id: str
    N: float
    D: float
    loss: float
    predicted: float
    n_fit: int
    predicted_ci: tuple[float, float] | None = None
    fitted_max: float | None = None

    @property
    def rel_error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted - self.loss) / self.loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law, "run_id": self.run_id, "N": self.N, "D": self.D, "loss": self.loss,
            "predicted": self.predicted, "rel_error": self.rel_error, "n_fit": self.n_fit,
            "predicted_ci": list(self.predicted_ci) if self.predicted_ci else None, "fitted_max": self.fitted_max,
        }

    def text(self) -> str:
        ci = (f" (95% interval [{self.predicted_ci[0]:.4f}, {self.predicted_ci[1]:.4f}])"
              if self.predicted_ci else "")
        beyond = (f", {np.log10(self.N / self.fitted_max):.2f} decades beyond the largest N fitted"
                  if self.fitted_max else "")
        return (f"held-out check: {self.law} fitted without the largest model (N = {self.N:.3g}) predicts "
                f"{self.predicted:.4f} nats/token{ci}{beyond}, measured {self.loss:.4f}: {self.rel_error:+.2%}")


#: For each law, the runs that would identify it (shown when a law is not fitted or not identified).
NEEDS = {
    "kaplan_n": "Transformers trained to convergence (early-stopped, or >= 20 tokens/param) at 8 or more "
                "sizes spanning 2.5 decades or more (a 'converge' group)",
    "kaplan_d": "a 'data' group: the largest model early-stopped at 5 or more dataset sizes (enough epochs "
                "for its test loss to turn up)",
    "kaplan_nd": "'data' groups: 3 or more model sizes x 3 or more dataset sizes, each early-stopped",
    "chinchilla": "single-pass runs at the reference batch over a grid of N and D: an 'isoflop' group with "
                  "3 or more budgets x 5 or more sizes; the irreducible loss E and B also need D over 2 "
                  "decades or more (runs far past the compute-optimal tokens per parameter), where the "
                  "loss at fixed N levels off",
    "kaplan_c": "learning curves at the reference batch of more sizes, spanning more compute",
    "kaplan_cmin": "learning curves of more sizes spanning more compute, and a fitted B_crit(L)",
    "kaplan_ns": "learning curves of 3 or more sizes after warm-up, and a fitted B_crit(L)",
    "bcrit": "noise-scale estimates from longer runs (longer windows of steps) over a wider range of loss",
    "bcrit_empirical": "a batch-size sweep: one model at 3 or more batch sizes (a factor 4 or more apart), "
                       "with learning curves dense enough to time each loss level, whose levels span a "
                       "wider range of loss (the slope of ln B_crit against ln L needs levels far apart; a "
                       "constant learning rate stalls the small batches on its noise floor, which puts the "
                       "lower levels outside the relation)",
    "transfer": "runs over a wider range of training loss, evaluated on that distribution",
    "envelope": "learning curves at the reference batch of 5 or more sizes that win between the smallest and "
                "the largest trained (whose wins are bounds, not fitted), each running past the compute where "
                "the next larger one overtakes it",
    "envelope_cmin": "learning curves of 5 or more sizes that win between the smallest and the largest trained, "
                     "each running past the compute where the next larger one overtakes it, and a fitted "
                     "B_crit(L)",
    "isoflop": "an 'isoflop' group: 3 or more budgets, each with 5 or more sizes around its optimum",
    "parametric": "an [H] fit whose exponents alpha and beta are determined (see chinchilla)",
    "position": "a longer final evaluation (final_eval_tokens, or a larger test split) for lower-noise "
                "per-position losses",
}


def _common_interval(exponents: dict[str, dict[str, Any]]) -> tuple[list[str], float, float] | None:
    """The [H] approaches fitted in C whose a is identified, and the intersection of their intervals.

    None with fewer than two; ``lo > hi`` when the intervals do not overlap.
    """
    rows = [(name.split(":")[0].replace("approach ", ""), row["ci"]) for name, row in exponents.items()
            if name.startswith("approach") and row.get("compute", "C") == "C" and row.get("identified", True)
            and row.get("ci") is not None]
    if len(rows) < 2:
        return None
    return [n for n, _ in rows], max(ci[0] for _, ci in rows), min(ci[1] for _, ci in rows)


def needs_for(key: str) -> str:
    """The runs that would identify the law under ``key`` (``transfer:...``: its family)."""
    return NEEDS.get(key, NEEDS.get(key.split(":")[0], "more runs spanning a wider range of its inputs"))


@dataclass
class StudyFits:
    """Every law fitted to one study, with what each was fitted on.

    Attributes:
        laws: the fitted laws (key -> FitResult); keys are law names
            (``kaplan_n``, ``bcrit``, ...), ``transfer:<distribution>`` and
            ``position:<run_id>`` for the per-distribution and per-run laws.
            ``laws.extras["allocation"]`` holds the fitted compute-optimal
            frontier when there is one, so ``lmscale plan`` can use the set.
        points: key -> the rows each law was fitted on (its input columns and
            ``loss``/``B``, with ``run_id`` where the rows are runs).
        rules: key -> the selection rule that chose those rows, in words.
        missing: key -> why a law was not fitted (which runs are missing).
        holdout: the largest model predicted from the others, when possible.
        exponents: approach -> ``{"a", "b", "ci", "published", "how"}``:
            N_opt ~ C^a and D_opt ~ C^b from each compute-optimal method.
        frontiers: approach (``envelope``, ``isoflop``, ``parametric``) ->
            its ``lmscale.laws.frontier.Frontier``.
        accounting: how N, D, C and the loss were counted.
        flops: the accounting of C the fits used (``"6N"`` or ``"exact"``).
        checks: consistency checks: ``envelope_stability`` (approach 1
            without each group), ``bcrit_agreement`` (empirical against
            noise-scale B_crit), ``bcrit_scatter`` (how much of B_crit(L)'s
            scatter the estimates' errors explain), ``other_accounting`` (the compute laws with
            the other FLOP count), ``positions`` (per-position standard errors).
        crossing: the [K] 6.3 crossing with its interval
            (``lmscale.laws.contradiction.Crossing``), when the laws allow it.
    """

    laws: LawSet
    points: dict[str, pd.DataFrame] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    holdout: HoldoutCheck | None = None
    exponents: dict[str, dict[str, Any]] = field(default_factory=dict)
    frontiers: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, str] = field(default_factory=dict)
    flops: str = "6N"
    checks: dict[str, Any] = field(default_factory=dict)
    crossing: Any = None

    def add(self, key: str, fit: FitResult, points: pd.DataFrame, rule: str) -> None:
        """Record one fitted law with its points and selection rule."""
        fit.notes.setdefault("selection_rule", rule)
        self.laws.laws[key] = fit
        self.points[key] = points
        self.rules[key] = rule
        self.missing.pop(key, None)

    def identified(self, key: str) -> bool:
        """Whether the law ``key`` was fitted and its runs identify it (no verdict counts as identified)."""
        fit = self.laws.laws.get(key)
        return fit is not None and fit.identified is not False

    def not_identified(self) -> dict[str, str]:
        """Fitted laws the rule does not identify: key -> the reasons."""
        from lmscale.laws.identification import short

        return {k: short(f.identification) for k, f in self.laws.laws.items() if f.identified is False}

    def summary_rows(self, published: tuple[str, ...] = ("kaplan2020", "hoffmann2022")) -> list[dict[str, Any]]:
        """One row per fitted parameter: law, parameter, value, 95% interval, the published value.

        ``published`` names catalog law sets (``lmscale.laws.catalog``); the
        first that has the law gives ``published`` and ``published_in``.
        ``identified`` is the law's verdict; intervals of unidentified laws
        are left out (``lo``, ``hi`` None).
        """
        from lmscale.laws import catalog

        sets = [catalog.load(name) for name in published]
        rows = []
        for key, fit in self.laws.laws.items():
            ref = next((s for s in sets if key in s.laws), None)
            ok = fit.identified is not False
            for name in fit.form.params:
                lo, hi = ((fit.ci or {}).get(name) or (None, None)) if ok else (None, None)
                rows.append({
                    "law": key, "param": name, "value": fit.params[name], "lo": lo, "hi": hi,
                    "published": ref.laws[key].params.get(name) if ref is not None else None,
                    "published_in": ref.name if ref is not None else None, "n_points": fit.n_points,
                    "identified": ok,
                })
        return rows

    def summary(self) -> str:
        """Plain text: the identified laws beside the paper's, the others with what they need, the checks."""
        lines = [f"{'law':<26} {'param':<12} {'fitted':>11} {'95% interval':>25} {'published':>11}"]
        for r in self.summary_rows():
            if not r["identified"]:
                continue
            ci = f"[{r['lo']:.4g}, {r['hi']:.4g}]" if r["lo"] is not None else "-"
            pub = f"{r['published']:.4g}" if r["published"] is not None else "-"
            lines.append(f"{r['law']:<26} {r['param']:<12} {r['value']:>11.4g} {ci:>25} {pub:>11}")
        lines += self.check_lines()
        from lmscale.laws.identification import edge_note

        for key, fit in self.laws.laws.items():
            edge = edge_note(fit.identification)
            if edge and fit.identified is not False:
                lines.append(f"{key}: identified, {edge}")
        for key, why in self.not_identified().items():
            lines.append(f"{key}: {why}; would need: {needs_for(key)}")
        for key, why in self.missing.items():
            lines.append(f"not fitted: {key}: {why}")
        return "\n".join(lines)

    def check_lines(self) -> list[str]:
        """The held-out check, the frontier exponents, the crossing and the consistency checks, in words."""
        lines = []
        law_n = self.laws.laws.get("kaplan_n")
        if law_n is not None:
            sizes = self.points["kaplan_n"]["N"]
            span = np.log10(sizes.max() / sizes.min())
            lines.append(f"L(N): R^2 = {law_n.stats.get('r2', float('nan')):.4f} over {law_n.n_points} converged "
                         f"runs, {sizes.nunique()} sizes spanning {span:.2f} decades"
                         + ("" if law_n.identified is not False else " (not identified, see below)"))
        if self.holdout is not None:
            lines.append(self.holdout.text())
        for name, row in self.exponents.items():
            ci = row.get("ci")
            if row.get("identified", True):
                lines.append(f"{name}: a = {row['a']:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] (N_opt ~ "
                             f"{row.get('compute', 'C')}^a; published {row['published']:g})"
                             + (f"; {row['note']}" if row.get("note") else ""))
            else:
                lines.append(f"{name}: a not identified: {row.get('why')}; would need: "
                             f"{needs_for(row.get('method', ''))}")
        common = _common_interval(self.exponents)
        if common is not None:
            names, lo, hi = common
            lines.append(f"approaches {', '.join(names)} in C: the 95% intervals of a "
                         + (f"overlap on [{lo:.3g}, {hi:.3g}]" if lo <= hi else
                            f"do NOT overlap (gap {lo:.3g} to {hi:.3g})"))
        stab = self.checks.get("envelope_stability")
        envelope = next((row for row in self.exponents.values() if row.get("method") == "envelope"), None)
        if stab and envelope is not None and not envelope.get("identified", True):
            lines.append("approach 1 stability: not judged: approach 1's exponent is not identified (above)")
        elif stab:
            moved = ", ".join(f"without '{g}' {a:.3g}" if isinstance(a, float) else f"without '{g}': {a}"
                              for g, a in stab["without"].items())
            off = (f" ('{', '.join(stab['not_on_it'])}' not on it: other batch sizes)"
                   if stab.get("not_on_it") else "")
            lines.append(f"approach 1 stability: a = {stab['a']:.3g} [{stab['ci'][0]:.3g}, {stab['ci'][1]:.3g}]; "
                         f"{moved}: {'inside' if stab['stable'] else 'OUTSIDE'} its interval{off}")
        agree = self.checks.get("bcrit_agreement")
        if agree:
            lines.append(f"B_crit two ways: empirical / noise-scale = {agree['ratio_median']:.2f} (median; "
                         f"{agree['ratio_min']:.2f} to {agree['ratio_max']:.2f} over {agree['levels']} loss "
                         f"levels): {'within' if agree['within_2x'] else 'NOT within'} a factor 2"
                         + _left_out_levels(agree.get("left_out") or [])
                         + _outside_levels(agree.get("outside") or []))
        scatter = self.checks.get("bcrit_scatter")
        if scatter and "r2" in scatter:
            lines.append(f"B_crit(L) from the noise scale: R^2 = {scatter['r2']:.3f} (of ln B, {scatter['points']} "
                         f"windows); the estimates' own standard errors explain {scatter['explained_share']:.0%} "
                         f"of the scatter about the fit, so error-free estimates of these windows would reach "
                         f"R^2 = {scatter['r2_ceiling']:.2f} at most"
                         + ("" if scatter["r2_ceiling"] >= 0.9 else
                            ": the rest varies between windows in ways B_crit(L) has no term for (the run, its "
                            "learning-rate schedule), which longer windows alone would not remove"))
        pos = self.checks.get("positions")
        if pos:
            if pos.get("max_rel_se") is None:
                lines.append(f"per-position loss: {pos.get('note')}")
            else:
                shape = (f"; of the profile L(t) - mean L: {pos['max_rel_se_shape']:.2%}"
                         if pos.get("max_rel_se_shape") is not None else "")
                need = _position_need(pos["max_rel_se"], pos.get("documents"))
                lines.append(f"per-position loss ({pos['runs']} runs{_fitted(pos.get('r2'), pos['runs'])}): "
                             "largest standard error "
                             f"{pos['max_rel_se']:.2%} of the loss (clustered by the test documents scored, "
                             f"each with its own difficulty{need}){shape}{_position_fits(pos.get('r2') or [])}")
        arch = self.checks.get("architectures")
        if arch and arch.get("runs"):
            lines.append(_architecture_line(arch) + ("" if self.identified("kaplan_n") else
                                                     " (L(N) is not identified: indicative only)"))
        gaps = self.checks.get("position_gaps")
        if gaps and gaps.get("pairs"):
            lines.append("along the context ([K] figure 7, right; the same test sequences): " + "; ".join(
                f"{p['architecture']} N = {p['N']:,.0f} vs the Transformer of N = {p['transformer_N']:,.0f}: "
                + ", ".join(f"{g['gap']:+.1%} (t {g['from']}-{g['to']})" for g in p["gaps"])
                for p in gaps["pairs"]))
        other = self.checks.get("other_accounting")
        if other:
            lines += [f"with {other['flops']} FLOPs: {t}" for t in other["lines"]]
        cross = self.crossing
        inputs = [k for k in ("kaplan_cmin", "kaplan_d") if not self.identified(k)]
        if cross is not None and (inputs or not self.exponents.get(
                "[K] table 6: envelope in C_min", {}).get("identified", True)):
            lines.append(f"[K] 6.3 crossing: not identified (its laws are not: {', '.join(inputs) or 'envelope_cmin'})")
        elif cross is not None:
            ci = cross.ci.get("C_star") if cross.ci else None
            if cross.identification():
                span = f"its 95% interval spans {np.log10(ci[1] / ci[0]):.1f} decades" if ci else "it has no interval"
                lines.append(f"[K] 6.3 crossing: C* not identified ({span}; more sizes and dataset sizes would "
                             "narrow it)")
                return lines
            ci_text = f" [{ci[0]:.2g}, {ci[1]:.2g}]"
            if cross.decades_beyond is None:
                where = ""
            elif cross.decades_beyond > 0:
                where = (f", an extrapolation {cross.decades_beyond:.1f} decades beyond the largest C_min "
                         f"fitted ({cross.data_max:.2g})")
            else:
                where = ", inside the compute range fitted"
            lines.append(f"[K] 6.3 crossing: C* = {cross.C_star:.2g} FLOPs{ci_text}, L* = {cross.L_star:.3g}"
                         f"{where}")
        return lines


class NotEnough(LmscaleError):
    """The study lacks the runs a law needs; the message says which."""


def rule_text(frame: pd.DataFrame, fallback: str) -> str:
    """The selection record of ``lmscale.laws.selection`` in words."""
    parts = []
    for step in frame.attrs.get("selection", []) or []:
        if isinstance(step, Mapping):
            details = ", ".join(f"{k} {v}" for k, v in step.items() if k not in ("rule", "criterion"))
            parts.append(f"{step.get('rule')}: {step.get('criterion', '')} ({details})")
        else:
            parts.append(str(step))
    return "; ".join(parts) or fallback


def enough(frame: pd.DataFrame, law: str, need: int, what: str) -> pd.DataFrame:
    n_params = len(get_form(law).params)
    if len(frame) < max(need, n_params + 1):
        raise NotEnough(f"needs {what}: at least {max(need, n_params + 1)} (the study has {len(frame)})")
    return frame


#: A run this many decades or more outside the sizes L(N) was fitted on is said to be.
BEYOND_FITTED_DECADES = 0.05


def _architecture_line(arch: dict) -> str:
    """The LSTM and Universal Transformer runs against the Transformers' L(N); the runs cut off
    before the L(N) runs' training named after them."""
    ref = arch.get("reference_tokens")
    line = ("vs the Transformers' L(N) at equal N" + (f" (its runs: {ref:,.0f} tokens)" if ref else "") + ": "
            + ", ".join(f"{r['architecture']} N = {r['N']:,.0f} {r['ratio']:+.1%}"
                        + (f" (L(N) extrapolated {r['beyond_decades']:.2f} decades beyond its sizes)"
                           if r.get("beyond_decades", 0.0) >= BEYOND_FITTED_DECADES else "") for r in arch["runs"]))
    short = [r for r in arch["runs"] if not r.get("equal_training", True)]
    if short:
        line += (f"; not trained alike (neither early-stopped nor on {arch.get('share', 0.9):.0%} of those "
                 "tokens: the gap is their shorter training as much as their architecture): " + ", ".join(
                     f"{r['architecture']} N = {r['N']:,.0f} on {r['tokens']:,.0f}" for r in short))
    return line


def _position_need(rel_se: float, docs: dict[str, int] | None) -> str:
    """What a per-position error above :data:`POSITION_SE_GOAL` would take: the error of a mean
    over documents falls as 1 / sqrt(documents scored), so (rel_se / goal)^2 times as many; where
    the corpus holds fewer (``docs``: its test and total documents), a larger corpus."""
    more = (rel_se / POSITION_SE_GOAL) ** 2
    if more <= 1:
        return ""
    head = f"; {POSITION_SE_GOAL:.1%} would need about {more:.1f}x as many documents scored"
    if not docs or more <= docs["corpus"] / docs["test"]:
        return head + ": a larger test split, and final_eval_tokens to score it"
    every = rel_se * (docs["test"] / docs["corpus"]) ** 0.5
    return (f"{head}, and the corpus holds {docs['corpus']:,} in all, {docs['corpus'] / docs['test']:.1f}x the "
            f"{docs['test']:,} of its test split (all of them held out would give about {every:.2%}): it takes "
            "a larger corpus")


def _fitted(r2: list[dict] | None, runs: int) -> str:
    """' fitted with L(t)' or ', 1 fitted with L(t)' where fewer runs were fitted than measured."""
    if r2 is None or len(r2) == runs:
        return " fitted with L(t)"
    return f", {len(r2)} fitted with L(t)"


def _position_fits(r2: list[dict]) -> str:
    """'; L(t) R^2: transformer N = ... 0.991, ...' (largest N of each architecture first)."""
    if not r2:
        return ""
    return "; L(t) R^2 (of log loss): " + ", ".join(
        f"{r['architecture']} N = {r['N']:,.0f} {r['r2']:.3f}"
        + ("" if r.get("identified", True) else " (not identified)") for r in r2)


def _outside_levels(outside: list[dict]) -> str:
    """The sweep's loss levels outside S = S_min + E_min / B, in words (not fitted, not compared)."""
    if not outside:
        return ""
    each = ", ".join(f"L = {x['L']:.3f} (N = {x['N']:,.0f})" for x in outside)
    return (f"; {len(outside)} level(s) outside the relation S = S_min + E_min / B, not compared: {each} "
            "(there a smaller batch needs more tokens than a larger one, which the relation forbids: "
            "something besides the batch trade-off, such as a constant learning rate's noise floor, sets its steps)")


def _left_out_levels(left: list[dict[str, float]]) -> str:
    """The B_crit levels the agreement leaves out, in words (their own interval exceeds a factor 2)."""
    if not left:
        return ""
    each = ", ".join(f"L = {x['L']:.3f}: {x['ratio']:.2f} (x/{x['factor']:.1f})" for x in left)
    return f"; {len(left)} level(s) left out, the sweep's own 95% interval wider than 2x: {each}"
