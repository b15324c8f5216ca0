"""Bring your own runs: MLflow, TensorBoard, W&B and CSV runs into a results store, curves and all.

>>> from lmscale.importers import import_runs
>>> result = import_runs("mlflow", "sqlite:///mlflow.db", "study.sqlite", "map.toml")
>>> result.runs, result.points, result.derived

The MAP (:mod:`lmscale.importers.mapping`) says which metric is the loss,
where N, the token count and the FLOPs come from; what lmscale derives is
labelled in the store (``runs.provenance_json``). Every run is read and
checked before the store is touched, and all are written in one
transaction: an import either lands whole or not at all. Re-importing the
same runs replaces them (a run's store id hashes its id in the source).
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.importers.build import Imported, store_run_id, to_record
from lmscale.importers.mapping import ImportMap
from lmscale.importers.source import SourceRun

#: Importer kinds: module and the extra its client needs (None: the core).
KINDS = {
    "mlflow": ("lmscale.importers.mlflow", "mlflow"),
    "tensorboard": ("lmscale.importers.tensorboard", "tensorboard"),
    "wandb": ("lmscale.importers.wandb", "wandb"),
    "csv": ("lmscale.importers.csv", None),
}


@dataclass
class ImportResult:
    """What an import wrote."""

    kind: str
    uri: str
    store: str
    runs: int
    points: int
    statuses: dict[str, int]
    derived: dict[str, int]
    skipped: int = 0
    run_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        lines = [f"{self.store}: imported {self.runs} runs ({statuses}) with {self.points} curve points "
                 f"from {self.kind} {self.uri}"]
        if self.skipped:
            lines.append(f"skipped {self.skipped} runs whose names do not match the MAP's include")
        for name, n in sorted(self.derived.items()):
            lines.append(f"derived: {name} in {n} runs (see the report's run table for how)")
        unfit = sum(n for s, n in self.statuses.items() if s not in ("finished", "early_stopped"))
        if unfit:
            lines.append(f"note: {unfit} runs are not finished in the source; the fits use finished runs only")
        return "\n".join(lines)


def read_runs(kind: str, source: str | Path, mapping: ImportMap) -> tuple[str, str, list[SourceRun]]:
    """``(uri, default group, runs)`` read from ``source`` by the ``kind`` importer."""
    if kind not in KINDS:
        raise LmscaleError(f"import kind {kind!r}: expected one of {', '.join(KINDS)}")
    module, _ = KINDS[kind]
    return importlib.import_module(module).read(source, mapping)


def build(kind: str, source: str | Path, mapping: ImportMap | str | Path | dict) -> tuple[str, list[Imported], int]:
    """Read and check every run (no store involved): ``(uri, records, skipped)``."""
    m = mapping if isinstance(mapping, ImportMap) else ImportMap.load(mapping)
    if m.run is not None and kind != "csv":
        raise LmscaleError(f"{m.where}: run = {m.run!r} is for CSV files only (the other sources name their runs)")
    if m.experiments and kind != "mlflow":
        raise LmscaleError(f"{m.where}: experiments is for MLflow only")
    uri, default_group, runs = read_runs(kind, source, m)
    chosen = [r for r in runs if m.selects(r.name)]
    if not chosen:
        raise LmscaleError(f"{uri}: no runs to import" + (f" (none of {len(runs)} matches include = "
                                                         f"{m.include!r})" if runs else ""))
    records = [to_record(r, m, kind, uri, default_group) for r in chosen]
    seen: dict[str, str] = {}
    for rec, run in zip(records, chosen):
        if rec.record.run_id in seen:
            raise LmscaleError(f"{uri}: runs {seen[rec.record.run_id]!r} and {run.label!r} have the same id")
        seen[rec.record.run_id] = run.label
    return uri, records, len(runs) - len(chosen)


def import_runs(kind: str, source: str | Path, store: Any, mapping: ImportMap | str | Path | dict) -> ImportResult:
    """Import every run of ``source`` into ``store`` (a Store or a path), in one transaction."""
    from lmscale.store import Store

    uri, records, skipped = build(kind, source, mapping)
    st = store if isinstance(store, Store) else Store(store)
    try:
        st.write_records([r.entry() for r in records])
    finally:
        if st is not store:
            st.close()
    derived: Counter[str] = Counter(d for r in records for d in r.provenance.derived)
    return ImportResult(
        kind=kind, uri=uri, store=str(getattr(st, "path", store)), runs=len(records),
        points=sum(len(r.record.curve) for r in records),
        statuses=dict(Counter(r.record.status for r in records)), derived=dict(derived), skipped=skipped,
        run_ids=[r.record.run_id for r in records],
    )


__all__ = ["KINDS", "ImportMap", "ImportResult", "Imported", "SourceRun", "build", "import_runs", "read_runs",
           "store_run_id"]
