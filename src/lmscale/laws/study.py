"""The tables of one study, as DataFrames: what the fits and the figures read.

:class:`StudyFrames` is the plain data object between the results store and
everything downstream (fits, figures, report). It is built from a
``lmscale.store.Store`` (or its path), from a mapping of DataFrames, or from
a single DataFrame of final points (another lab's ``N, D, loss`` table), so
a study can be fitted without a training stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.result import FitResult, LawSet

#: Store read methods, one per table of :class:`StudyFrames`.
TABLES = (
    "final_points", "runs", "curves", "distribution_losses",
    "final_distribution_losses", "per_position", "noise_scale",
)


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass
class StudyFrames:
    """A study's results as DataFrames (columns as ``lmscale.store.Store`` reads them).

    Attributes:
        final_points: one row per finished run: ``N, D, C, loss, run_id,
            group, rule, architecture, batch_tokens, n_layer, d_model, ...``.
        runs: every run with its status (including failed and pending ones).
        curves: learning curves, one row per point (``run_id, N, D, C, loss,
            step, batch_tokens, lr, noise_scale``).
        distribution_losses: test loss per distribution at every curve point.
        final_distribution_losses: final test loss per run and distribution.
        per_position: final loss per context position (``run_id, position, loss``).
        noise_scale: gradient-noise-scale estimates along the curves.
        source: where the frames came from (a store path, a file, ``"frames"``).
    """

    final_points: pd.DataFrame = field(default_factory=_empty)
    runs: pd.DataFrame = field(default_factory=_empty)
    curves: pd.DataFrame = field(default_factory=_empty)
    distribution_losses: pd.DataFrame = field(default_factory=_empty)
    final_distribution_losses: pd.DataFrame = field(default_factory=_empty)
    per_position: pd.DataFrame = field(default_factory=_empty)
    noise_scale: pd.DataFrame = field(default_factory=_empty)
    source: str = "frames"

    @classmethod
    def from_store(cls, store: Any) -> StudyFrames:
        """Read every table of a ``Store`` (anything with the store's read methods)."""
        tables = {}
        for name in TABLES:
            reader = getattr(store, name, None)
            tables[name] = reader() if callable(reader) else _empty()
        return cls(**tables, source=str(getattr(store, "path", "store")))

    @classmethod
    def load(cls, store_or_frames: Any) -> StudyFrames:
        """StudyFrames from a Store, a store path, a mapping of frames or one final-points frame."""
        obj = store_or_frames
        if isinstance(obj, StudyFrames):
            return obj
        if isinstance(obj, str | Path):
            from lmscale.store import Store

            path = Path(obj)
            if not path.exists():
                raise LmscaleError(f"{path}: no such store (run 'lmscale sweep run STUDY --store {path}')")
            store = Store(path, create=False)
            try:
                return cls.from_store(store)
            finally:
                store.close()
        if isinstance(obj, pd.DataFrame):
            return cls(final_points=obj.copy())
        if isinstance(obj, Mapping):
            known = {f.name for f in fields(cls)} - {"source"}
            unknown = sorted(set(obj) - known)
            if unknown:
                raise LmscaleError(f"unknown study table(s) {', '.join(unknown)}; expected some of {', '.join(TABLES)}")
            return cls(**{k: v.copy() for k, v in obj.items()})
        if callable(getattr(obj, "final_points", None)):
            return cls.from_store(obj)
        raise LmscaleError(
            f"expected a results store, its path, or DataFrames of final points; got {type(obj).__name__}"
        )

    def results(self, architecture: str | None = "transformer") -> pd.DataFrame:
        """Final points of one architecture (all when ``None``); no architecture column = all."""
        frame = self.final_points
        if architecture is None or frame.empty or "architecture" not in frame:
            return frame
        arch = frame["architecture"].fillna("transformer")
        return frame[arch == architecture]


# ---------------------------------------------------------------------------
# What fitting a study gives
# ---------------------------------------------------------------------------


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
        frontiers: approach -> its frontier points (``C``, ``N``, ``D``, ``loss``).
        accounting: how N, D, C and the loss were counted.
    """

    laws: LawSet
    points: dict[str, pd.DataFrame] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    holdout: HoldoutCheck | None = None
    exponents: dict[str, dict[str, Any]] = field(default_factory=dict)
    frontiers: dict[str, pd.DataFrame] = field(default_factory=dict)
    accounting: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, fit: FitResult, points: pd.DataFrame, rule: str) -> None:
        """Record one fitted law with its points and selection rule."""
        fit.notes.setdefault("selection_rule", rule)
        self.laws.laws[key] = fit
        self.points[key] = points
        self.rules[key] = rule
        self.missing.pop(key, None)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per fitted parameter: law, parameter, value, 95% interval."""
        rows = []
        for key, fit in self.laws.laws.items():
            for name in fit.form.params:
                lo, hi = (fit.ci or {}).get(name) or (None, None)
                rows.append({"law": key, "param": name, "value": fit.params[name], "lo": lo, "hi": hi,
                             "n_points": fit.n_points})
        return rows
