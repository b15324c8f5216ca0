"""Where a run came from, and how each of its numbers was obtained.

Every run in a store has a ``source``: ``trained`` (lmscale's own trainer),
the tracker it was imported from (``mlflow``, ``tensorboard``, ``wandb``,
``csv``), or the trainer whose callback recorded it (``transformers``,
``lightning``). Imported and recorded runs also say where they are in that
source and, field by field, whether N, the token count, the FLOPs and the
losses were read or derived (and how).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: Sources a run in the store can have.
SOURCES = ("trained", "mlflow", "tensorboard", "wandb", "csv", "transformers", "lightning")

#: Sources read from elsewhere (not run on the machine that wrote the store).
IMPORTED = ("mlflow", "tensorboard", "wandb", "csv")


@dataclass(frozen=True)
class Provenance:
    """Where one run came from.

    Attributes:
        source: one of :data:`SOURCES`.
        uri: the tracking URI, log folder, project or file it was read from.
        run_id: the run's id in the source (the key of an idempotent re-import).
        run_name: its display name there.
        fields: field (``N``, ``tokens``, ``C``, ``loss``, ...) -> how it was
            obtained, in words (``"param 'n_params'"``, ``"6 N D ([K] 2.1)"``).
        derived: the fields computed by lmscale rather than read from the source.
    """

    source: str
    uri: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    derived: tuple[str, ...] = ()

    def columns(self) -> dict[str, Any]:
        """The ``runs`` columns this provenance fills."""
        body = {"fields": self.fields, "derived": list(self.derived)}
        # an imported run was not trained on this machine, by this lmscale, now
        elsewhere = dict.fromkeys(("machine", "device", "finished_at", "lmscale_version", "python_version"))
        return {
            **(elsewhere if self.source in IMPORTED else {}),
            "source": self.source, "source_uri": self.uri, "source_run_id": self.run_id,
            "source_run_name": self.run_name, "provenance_json": json.dumps(body, sort_keys=True),
            "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @staticmethod
    def describe(row: dict[str, Any], with_uri: bool = True) -> str:
        """One line for a run row of the store: source, location, run, derived fields."""

        def text(key: str) -> str | None:
            value = row.get(key)
            return value if isinstance(value, str) and value else None  # NULL reads as None or NaN

        source = text("source") or "trained"
        if source == "trained":
            return "trained by lmscale"
        parts = [source] + [t for t in (text("source_uri") if with_uri else None,) if t]
        run = text("source_run_name") or text("source_run_id")
        if run:
            parts.append(f"run {run}")
        try:
            derived = json.loads(text("provenance_json") or "{}").get("derived") or []
        except (TypeError, ValueError, AttributeError):
            derived = []
        return " ".join(parts) + (f" (derived: {', '.join(derived)})" if derived else "")
