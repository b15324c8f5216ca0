"""A study's results as plain DataFrames, and the filters every law's selection shares.

:class:`StudyFrames` is the data object between the results store and
everything downstream (fits, figures, report). It is built from a
``lmscale.store.Store`` (or its path), from a mapping of DataFrames, or from
a single DataFrame of final points (another lab's ``N, D, loss`` table), so
a study can be fitted without a training stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.io import modal_batch

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

    def restricted_to(self, run_ids: Iterable[str]) -> StudyFrames:
        """The same tables holding the runs ``run_ids`` only (one study's runs in a store that
        also holds others: runs of an earlier version of its study file, or of another study)."""
        keep = {str(r) for r in run_ids}

        def only(table: pd.DataFrame) -> pd.DataFrame:
            if table.empty or "run_id" not in table:
                return table
            return table[table["run_id"].astype(str).isin(keep)].reset_index(drop=True)

        return replace(self, **{name: only(getattr(self, name)) for name in TABLES})

    def results(self, architecture: str | None = "transformer") -> pd.DataFrame:
        """Final points of one architecture (all when ``None``); no architecture column = all."""
        frame = self.final_points
        if architecture is None or frame.empty or "architecture" not in frame:
            return frame
        arch = frame["architecture"].fillna("transformer")
        return frame[arch == architecture]


def finished_only(frames: StudyFrames, table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``table`` that belong to runs with a result (those in ``final_points``)."""
    if table.empty or "run_id" not in table or "run_id" not in frames.final_points:
        return table
    return table[table["run_id"].isin(set(frames.final_points["run_id"]))]


def transformer_curves(frames: StudyFrames) -> pd.DataFrame:
    """Learning-curve points of finished Transformer runs with positive loss and compute."""
    curves = finished_only(frames, frames.curves)
    if curves.empty or "loss" not in curves:
        return pd.DataFrame()
    arch = curves["architecture"].fillna("transformer") if "architecture" in curves else "transformer"
    ok = (arch == "transformer") & (curves["loss"] > 0) & (curves["C"] > 0)
    return curves[ok]


def after_warmup(curves: pd.DataFrame) -> pd.DataFrame:
    """Curve points after each run's learning-rate peak (the end of warm-up; all when lr is unknown)."""
    if curves.empty or "lr" not in curves or not curves["lr"].notna().any():
        return curves
    peak_at = curves.loc[curves["lr"].fillna(-np.inf).groupby(curves["run_id"]).idxmax()]
    peak = peak_at.set_index("run_id")["step"]
    return curves[(curves["step"] >= curves["run_id"].map(peak)) & (curves["step"] > 0)]


def rule_of(frame: pd.DataFrame) -> pd.Series:
    return frame["rule"].fillna("plain") if "rule" in frame else pd.Series("plain", index=frame.index)


def tolerance_groups(values: pd.Series, rtol: float = 0.05) -> np.ndarray:
    """Group number of each value: in sorted order, a value within ``rtol`` of its neighbour joins
    the neighbour's group (so the groups are the distinct values of :func:`count_distinct`)."""
    x = np.log(values.to_numpy(dtype=float))
    order = np.argsort(x, kind="stable")
    groups = np.zeros(len(x), dtype=int)
    groups[order[1:]] = np.cumsum(np.diff(x[order]) > np.log1p(rtol))
    return groups


def count_distinct(values: pd.Series, rtol: float = 0.05) -> int:
    """Distinct values, those within ``rtol`` of a neighbour counted once."""
    groups = tolerance_groups(values, rtol)
    return int(groups.max()) + 1 if len(groups) else 0


def peak_learning_rates(frames: StudyFrames) -> pd.Series:
    """Each run's peak learning rate (the largest its curve records), by run id; empty without curves."""
    curves = frames.curves
    if curves.empty or not {"run_id", "lr"} <= set(curves.columns):
        return pd.Series(dtype=float)
    return pd.to_numeric(curves["lr"], errors="coerce").groupby(curves["run_id"]).max().dropna()


#: Accountings of training compute a study can be fitted in.
ACCOUNTINGS = {
    "6N": "C = 6 N x tokens ([K] section 2.1: no attention, logits or embedding terms)",
    "exact": "C = 3 x forward FLOPs x tokens with every term of [K] table 1 (attention, logits, embedding)",
}


def with_accounting(frames: StudyFrames, flops: str) -> StudyFrames:
    """The frames with ``C`` counted one way: ``"6N"`` (as stored) or ``"exact"`` (``C_exact``)."""
    if flops not in ACCOUNTINGS:
        raise LmscaleError(f"flops = {flops!r}: expected one of {', '.join(ACCOUNTINGS)}")
    if flops == "6N":
        return frames
    tables = {}
    for name in ("final_points", "curves"):
        table = getattr(frames, name)
        if not table.empty and "C_exact" in table:
            table = table.assign(C=table["C_exact"].where(table["C_exact"] > 0, table["C"]))
        tables[name] = table
    return StudyFrames(**{**{n: getattr(frames, n) for n in TABLES}, **tables}, source=frames.source)


def reference_batch(frames: StudyFrames) -> int | None:
    """The batch size (tokens) most Transformer runs use: the study's reference batch."""
    return modal_batch(frames.results("transformer"))


def first_epoch(frames: StudyFrames, curves: pd.DataFrame) -> pd.DataFrame:
    """Curve points on fresh data: for runs repeating a dataset, those within its first pass."""
    pts = frames.final_points
    if curves.empty or pts.empty or "dataset_tokens" not in pts or "D" not in curves:
        return curves
    size = pd.to_numeric(curves["run_id"].map(pts.set_index("run_id")["dataset_tokens"]), errors="coerce")
    return curves[size.isna() | (curves["D"] <= size)]


def data_limited(runs: pd.DataFrame) -> pd.Series:
    """Runs whose test loss stopped improving (early-stopped): their loss is limited by their D or N."""
    status = runs["status"] if "status" in runs else pd.Series("finished", index=runs.index)
    return status == "early_stopped"
