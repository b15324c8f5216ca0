"""Record a run trained by someone else's trainer into a results store, as lmscale's trainer would.

The callbacks of :mod:`lmscale.integrations` drive one :class:`CurveRecorder`:
N is counted on the model by :mod:`lmscale.accounting` (non-embedding
weight matrices; biases and norms in the exact count), the curve has its
points at lmscale's own log-spaced steps (:func:`lmscale.training.plan.log_spaced_steps`),
and the store holds the run (status ``running``) from its first step, each
new point rewriting it in one transaction, so a killed run keeps its curve.
"""

from __future__ import annotations

import uuid
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.store.provenance import Provenance
from lmscale.training.plan import log_spaced_steps
from lmscale.training.record import CurvePoint, RunRecord

#: Curve points per decade of steps, as ``TrainConfig.curve_points_per_decade`` defaults.
PER_DECADE = 8


def count_params(model: Any) -> dict[str, int]:
    """N (weight matrices), N exact (with biases and norms), embedding params of a torch model."""
    from lmscale.accounting import exact_non_embedding_params

    n = exact_non_embedding_params(model, include_biases_and_norms=False)
    exact = exact_non_embedding_params(model)
    total = sum(p.numel() for p in model.parameters())
    return {"N": int(n), "N_exact": int(exact), "embedding": int(total - exact)}


class CurveRecorder:
    """One run's record, written into ``store`` point by point.

    Args:
        store: a :class:`lmscale.store.Store` or its path.
        source: ``transformers`` or ``lightning`` (the run's provenance).
        run_name: the name shown in the report (default: the run id).
        group, rule, study: the run's tags in the store.
        train_distribution: name of the loss the curve is fitted on.
        per_decade: curve points per decade of steps.
        fields: how the trainer's numbers were obtained (provenance).
        uri: where the trainer writes (its output folder), if any.
    """

    def __init__(self, store: Any, *, source: str, run_name: str | None = None, group: str | None = None,
                 rule: str = "plain", study: str | None = None, train_distribution: str = "eval",
                 per_decade: int = PER_DECADE, fields: dict[str, str] | None = None, uri: str | None = None):
        from lmscale.store import Store

        self.store = store if isinstance(store, Store) else Store(store)
        self.source = source
        self.run_id = f"{source[:2]}-{uuid.uuid4().hex[:14]}"
        self.run_name = run_name or self.run_id
        self.tags = {"group": group or source, "rule": rule, "study": study}
        self.train_distribution = train_distribution
        self.per_decade = per_decade
        self.fields = dict(fields or {})
        self.uri = uri
        self.steps: frozenset[int] = frozenset()
        self.record: RunRecord | None = None

    def begin(self, model: Any, total_steps: int, config: dict[str, Any], *, batch_tokens: int | None = None,
              versions: dict[str, str] | None = None) -> None:
        """Count N on ``model``, plan the log-spaced steps of a ``total_steps`` run, write it as running."""
        if not isinstance(total_steps, int) or total_steps < 1:
            raise LmscaleError(f"the trainer's total steps = {total_steps!r}: set max_steps (or a finite number "
                               "of epochs) so that lmscale can place log-spaced curve points")
        counts = count_params(model)
        self.steps = frozenset(log_spaced_steps(total_steps, self.per_decade))
        self.fields.setdefault("N", "counted on the model by lmscale.accounting.exact_non_embedding_params "
                                    "(weight matrices; no embeddings, no output head)")
        self.fields.setdefault("C", "C = 6 N D ([K] 2.1)")
        self.record = RunRecord(
            run_id=self.run_id, config=config, status="running", non_embedding_params=counts["N"],
            exact_non_embedding_params=counts["N_exact"], embedding_params=counts["embedding"],
            train_distribution=self.train_distribution, batch_tokens=batch_tokens or 0, total_steps=total_steps,
            versions=dict(versions or {}),
        )
        self._write()

    def wants(self, step: int) -> bool:
        """Whether ``step`` is one of the curve's log-spaced steps."""
        return step in self.steps

    def point(self, step: int, tokens: int, test_loss: dict[str, float], *, train_loss: float | None = None,
              lr: float | None = None, wall_time_s: float = 0.0) -> None:
        """Add (or complete) the curve point of ``step`` and rewrite the run."""
        rec = self._rec()
        if rec.curve and rec.curve[-1].step == step:  # another evaluation set of the same step
            last = rec.curve[-1]
            last.test_loss.update(test_loss)
            last.train_loss = train_loss if train_loss is not None else last.train_loss
        else:
            n = rec.non_embedding_params
            rec.curve.append(CurvePoint(step=step, tokens=int(tokens), flops=6.0 * n * tokens, flops_exact=None,
                                        lr=lr, train_loss=train_loss, test_loss=dict(test_loss),
                                        wall_time_s=wall_time_s))
        rec.steps, rec.tokens = step, int(tokens)
        self._write()

    def end(self, status: str = "finished", error: str | None = None, wall_time_s: float | None = None) -> None:
        """The final losses (the last point's), the best loss; write the finished run."""
        rec = self._rec()
        rec.status, rec.error = status, error
        if wall_time_s is not None:
            rec.wall_time_s = wall_time_s
        if rec.curve:
            rec.final_test_loss = dict(rec.curve[-1].test_loss)
            losses = [p.test_loss[self.train_distribution] for p in rec.curve if self.train_distribution in p.test_loss]
            rec.best_test_loss = min(losses) if losses else None
        self._write()

    def _rec(self) -> RunRecord:
        if self.record is None:
            raise LmscaleError("the recorder has not begun (the trainer never started training)")
        return self.record

    def _write(self) -> None:
        rec = self._rec()
        provenance = Provenance(source=self.source, uri=self.uri, run_id=self.run_id, run_name=self.run_name,
                                fields=self.fields, derived=("C",))
        self.store.write_record(rec, provenance=provenance, **self.tags)
