"""What every importer reads a run into, before the MAP turns it into a run record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceRun:
    """One run as a tracker holds it.

    Attributes:
        run_id: its id in the source (MLflow run id, W&B run id, TensorBoard
            run folder, CSV run name): with ``key`` it names the run in the store.
        name: its display name.
        params: hyper-parameters / config / constant columns (name -> value).
        series: metric name -> ``[(step, value), ...]`` in logging order.
        status: the lmscale status it maps to (``finished``, ``failed``,
            ``running``, ``interrupted``).
        key: what makes the run unique across sources of this kind (the run
            id for MLflow and W&B, the folder or file plus the run name otherwise).
        varying: CSV only: columns whose value changes within the run (they
            cannot be used as a ``param``).
        metric_names: every metric the run has (the series hold only those
            the MAP reads), for messages.
    """

    run_id: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    status: str = "finished"
    key: str = ""
    varying: set[str] = field(default_factory=set)
    metric_names: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        """``name (id)`` for messages."""
        return self.name if self.name == self.run_id else f"{self.name} ({self.run_id})"

    def all_metrics(self) -> list[str]:
        return sorted(self.metric_names | set(self.series))
