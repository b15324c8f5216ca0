"""What fitting a study gives: :class:`StudyFits`, the held-out check, and the "not enough runs" error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.forms import get_form
from lmscale.laws.result import FitResult, LawSet


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

    @property
    def rel_error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted - self.loss) / self.loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law, "run_id": self.run_id, "N": self.N, "D": self.D, "loss": self.loss,
            "predicted": self.predicted, "rel_error": self.rel_error, "n_fit": self.n_fit,
        }


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
    """

    laws: LawSet
    points: dict[str, pd.DataFrame] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    holdout: HoldoutCheck | None = None
    exponents: dict[str, dict[str, Any]] = field(default_factory=dict)
    frontiers: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, fit: FitResult, points: pd.DataFrame, rule: str) -> None:
        """Record one fitted law with its points and selection rule."""
        fit.notes.setdefault("selection_rule", rule)
        self.laws.laws[key] = fit
        self.points[key] = points
        self.rules[key] = rule
        self.missing.pop(key, None)

    def summary_rows(self, published: tuple[str, ...] = ("kaplan2020", "hoffmann2022")) -> list[dict[str, Any]]:
        """One row per fitted parameter: law, parameter, value, 95% interval, the published value.

        ``published`` names catalog law sets (``lmscale.laws.catalog``); the
        first that has the law gives ``published`` and ``published_in``.
        """
        from lmscale.laws import catalog

        sets = [catalog.load(name) for name in published]
        rows = []
        for key, fit in self.laws.laws.items():
            ref = next((s for s in sets if key in s.laws), None)
            for name in fit.form.params:
                lo, hi = (fit.ci or {}).get(name) or (None, None)
                rows.append({
                    "law": key, "param": name, "value": fit.params[name], "lo": lo, "hi": hi,
                    "published": ref.laws[key].params.get(name) if ref is not None else None,
                    "published_in": ref.name if ref is not None else None, "n_points": fit.n_points,
                })
        return rows

    def summary(self) -> str:
        """Plain-text table of every fitted constant beside the paper's, and the held-out check."""
        lines = [f"{'law':<26} {'param':<12} {'fitted':>11} {'95% interval':>25} {'published':>11}"]
        for r in self.summary_rows():
            ci = f"[{r['lo']:.4g}, {r['hi']:.4g}]" if r["lo"] is not None else "-"
            pub = f"{r['published']:.4g}" if r["published"] is not None else "-"
            lines.append(f"{r['law']:<26} {r['param']:<12} {r['value']:>11.4g} {ci:>25} {pub:>11}")
        if self.holdout is not None:
            h = self.holdout
            lines.append(f"held-out check: {h.law} fitted without the largest model (N = {h.N:.3g}) predicts "
                         f"{h.predicted:.4f} nats/token, measured {h.loss:.4f}: {h.rel_error:+.2%}")
        for key, why in self.missing.items():
            lines.append(f"not fitted: {key}: {why}")
        return "\n".join(lines)


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
