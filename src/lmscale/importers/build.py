"""A :class:`SourceRun` and a MAP -> a run record for the store, every derived number labelled.

The curve has one point per step at which the loss metric was logged. At
each point: tokens from the token counter (linear interpolation in step
between its logged values, labelled) or step x batch tokens; FLOPs from
the logged counter or C = 6 N D ([K] 2.1); the other distributions' losses
and the training loss where they were logged at that step.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmscale.accounting import embedding_params, non_embedding_params
from lmscale.errors import LmscaleError
from lmscale.importers.mapping import ImportMap, Value
from lmscale.importers.source import SourceRun
from lmscale.models.spec import ModelSpec
from lmscale.store.provenance import Provenance
from lmscale.training.record import CurvePoint, RunRecord


@dataclass
class Imported:
    """One run ready for :meth:`lmscale.store.Store.write_records`."""

    record: RunRecord
    provenance: Provenance
    spec: dict[str, Any]
    group: str
    rule: str
    study: str | None
    budget_flops: float | None

    def entry(self) -> dict[str, Any]:
        return {"record": self.record, "provenance": self.provenance, "spec": self.spec, "group": self.group,
                "rule": self.rule, "study": self.study, "budget_flops": self.budget_flops}


def store_run_id(kind: str, key: str) -> str:
    """The store's id of an imported run: the same source run always gets the same id."""
    return f"{kind[:3]}-" + hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:16]


class _Series:
    """A metric's values by step (the last value logged at a step wins)."""

    def __init__(self, pairs: list[tuple[float, float]]):
        by_step: dict[float, float] = {}
        for step, value in pairs:
            by_step[float(step)] = float(value)
        self.steps = np.array(sorted(by_step), dtype=float)
        self.values = np.array([by_step[s] for s in self.steps], dtype=float)
        self.duplicates = len(pairs) - len(by_step)
        self.exact = dict(zip(self.steps.tolist(), self.values.tolist()))

    def at(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values at ``steps`` (NaN outside the logged range) and which ones were interpolated."""
        if len(self.steps) == 0:
            return np.full(len(steps), np.nan), np.zeros(len(steps), dtype=bool)
        out = np.interp(steps, self.steps, self.values)
        outside = (steps < self.steps[0]) | (steps > self.steps[-1])
        out[outside] = np.nan
        exact = np.array([s in self.exact for s in steps.tolist()], dtype=bool)
        return out, ~exact & ~outside


def _series(run: SourceRun, metric: str, what: str, where: str) -> _Series:
    if metric not in run.series or not run.series[metric]:
        have = ", ".join(run.all_metrics()) or "none"
        raise LmscaleError(f"{where}: run {run.label} has no metric {metric!r} ({what}); its metrics: {have}")
    return _Series(run.series[metric])


def _number(raw: Any, what: str, run: SourceRun, where: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise LmscaleError(f"{where}: run {run.label}: {what} = {raw!r}: expected a positive finite number")
    return value


def resolve(value: Value, run: SourceRun, what: str, where: str, *, numeric: bool = True) -> Any:
    """The value of ``value`` for ``run`` (a number unless ``numeric=False``)."""
    if value.kind == "value":
        raw = value.ref
    elif value.kind == "param":
        if value.ref not in run.params:
            have = ", ".join(sorted(run.params)) or "none"
            raise LmscaleError(f"{where}: run {run.label} has no parameter {value.ref!r} ({what}); "
                               f"its parameters: {have}")
        if value.ref in run.varying:
            raise LmscaleError(f"{where}: run {run.label}: column {value.ref!r} ({what}) changes within the "
                               "run; a param must be constant (use metric = ... for a logged series)")
        raw = run.params[value.ref]
    else:
        raw = _series(run, value.ref, what, where).values[-1]
    return _number(raw, f"{what} ({value.describe()})", run, where) if numeric else raw


def _count_n(m: ImportMap, run: SourceRun) -> tuple[float, str, dict[str, Any] | None, int | None]:
    """N, how it was obtained, the model config it was counted from (if so), embedding params."""
    if m.n is not None:
        return resolve(m.n, run, "N", m.where), m.n.describe(), None, None
    fields: dict[str, Any] = {}
    for key, value in (m.n_model or {}).items():
        raw = resolve(value, run, f"N.model.{key}", m.where, numeric=key not in ("architecture",
                                                                                   "tied_embeddings"))
        fields[key] = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
    fields.setdefault("n_head", 1)  # N does not depend on the heads; 1 always divides d_model
    try:
        spec = ModelSpec.from_dict(fields)
    except LmscaleError as exc:
        raise LmscaleError(f"{m.where}: run {run.label}: [N.model]: {exc}") from None
    n = non_embedding_params(spec)
    counted = ", ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    how = f"counted from the model config ({counted}) by lmscale.accounting.non_embedding_params ([K] table 1)"
    emb = embedding_params(spec) if {"n_vocab", "n_ctx"} <= set(m.n_model or {}) else None
    model = {"architecture": spec.architecture, **{k: getattr(spec, k) for k in fields}}
    return float(n), how, model, emb


def to_record(run: SourceRun, m: ImportMap, kind: str, uri: str, default_group: str) -> Imported:
    """Build the store's record of ``run`` as ``m`` says; errors name the run and the metric."""
    where = m.where
    loss = _series(run, m.loss, "MAP 'loss'", where)
    native = loss.steps
    if len(native) == 0:
        raise LmscaleError(f"{where}: run {run.label}: metric {m.loss!r} has no values")
    fields: dict[str, str] = {"loss": f"metric {m.loss!r}, final = {m.final}"}
    derived: list[str] = []

    steps = native
    if m.step:
        step_values, interp = _series(run, m.step, "MAP 'step'", where).at(native)
        if np.isnan(step_values).any() or interp.any():
            raise LmscaleError(f"{where}: run {run.label}: metric {m.step!r} (MAP 'step') is not logged at every "
                               f"step of {m.loss!r}")
        steps = step_values
        fields["step"] = f"metric {m.step!r}"
    if np.any(steps < 0):
        raise LmscaleError(f"{where}: run {run.label}: negative steps")

    n, n_how, model, emb = _count_n(m, run)
    fields["N"] = n_how
    if model is not None:
        derived.append("N")

    tokens, tokens_how, tokens_derived = _tokens(run, m, native, steps)
    fields["tokens"] = tokens_how
    if tokens_derived:
        derived.append("tokens")

    if m.flops_metric:
        flops, interp = _series(run, m.flops_metric, "MAP 'flops'", where).at(native)
        if np.isnan(flops).any():
            raise LmscaleError(f"{where}: run {run.label}: metric {m.flops_metric!r} (MAP 'flops') has no value "
                               f"at step {steps[np.isnan(flops)][0]:g} of {m.loss!r}")
        fields["C"] = f"metric {m.flops_metric!r}" + (f"; {int(interp.sum())} of {len(native)} points "
                                                      "interpolated linearly in step" if interp.any() else "")
        if interp.any():
            derived.append("C")
    else:
        flops = 6.0 * n * tokens
        fields["C"] = "C = 6 N D ([K] 2.1)"
        derived.append("C")

    others = {name: _series(run, metric, f"MAP [losses] {name}", where) for name, metric in m.losses.items()}
    for name, metric in m.losses.items():
        fields[f"loss:{name}"] = f"metric {metric!r}"
    train = _series(run, m.train_loss, "MAP 'train_loss'", where) if m.train_loss else None
    lr = _series(run, m.lr, "MAP 'lr'", where) if m.lr else None

    curve = []
    for i, s in enumerate(native.tolist()):
        test = {m.distribution: loss.values[i]}
        test.update({name: ser.exact[s] for name, ser in others.items() if s in ser.exact})
        curve.append(CurvePoint(
            step=int(round(steps[i])), tokens=int(round(tokens[i])), flops=float(flops[i]), flops_exact=None,
            lr=lr.exact.get(s) if lr else None, train_loss=train.exact.get(s) if train else None,
            test_loss=test,
        ))
    final = {m.distribution: _final(loss.values, m.final)}
    for name, ser in others.items():
        final[name] = _final(ser.values, m.final)
    finite = loss.values[np.isfinite(loss.values)]
    batch = _batch_tokens(run, m) if m.batch_tokens else None
    record = RunRecord(
        run_id=store_run_id(kind, run.key or run.run_id), config={}, status=run.status,
        non_embedding_params=int(round(n)), exact_non_embedding_params=None, embedding_params=emb,
        flops_per_token=None, train_distribution=m.distribution, curve=curve, final_test_loss=final,
        best_test_loss=float(finite.min()) if len(finite) else None, steps=curve[-1].step,
        tokens=curve[-1].tokens, batch_tokens=int(round(batch)) if batch else None,
    )
    spec = {"source": kind, "source_uri": uri, "source_run_id": run.run_id, "params": _jsonable(run.params)}
    if model is not None:
        spec["model"] = model
    group = resolve(m.group, run, "group", where, numeric=False) if m.group else default_group
    provenance = Provenance(source=kind, uri=uri, run_id=run.run_id, run_name=run.name, fields=fields,
                            derived=tuple(derived))
    return Imported(record=record, provenance=provenance, spec=spec, group=str(group), rule=m.rule,
                    study=m.study, budget_flops=float(flops[-1]) if m.flops_metric else None)


def _final(values: np.ndarray, how: str) -> float | None:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    return float(finite.min() if how == "min" else finite[-1])


def _batch_tokens(run: SourceRun, m: ImportMap) -> float:
    product = 1.0
    for factor in m.batch_tokens:
        product *= resolve(factor, run, "tokens.batch_tokens", m.where)
    return product


def _tokens(run: SourceRun, m: ImportMap, native: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, str, bool]:
    """Tokens at each curve point, how they were obtained, and whether any were derived."""
    where = m.where
    tokens = np.full(len(native), np.nan)
    interp = np.zeros(len(native), dtype=bool)
    how = []
    if m.tokens_metric is not None:
        if m.tokens_metric in run.series and run.series[m.tokens_metric]:
            tokens, interp = _Series(run.series[m.tokens_metric]).at(native)
            how.append(f"metric {m.tokens_metric!r}")
            if interp.any():
                how.append(f"{int(interp.sum())} of {len(native)} points interpolated linearly in step")
        elif not m.batch_tokens:
            raise LmscaleError(f"{where}: run {run.label}: no token count: it has no metric {m.tokens_metric!r} "
                               "(MAP [tokens] metric) and the MAP gives no batch_tokens to derive tokens = "
                               f"step x batch tokens; its metrics: {', '.join(run.all_metrics()) or 'none'}")
    missing = np.isnan(tokens)
    if missing.any():
        if not m.batch_tokens:
            first = steps[missing][0]
            raise LmscaleError(f"{where}: run {run.label}: no token count at step {first:g}: metric "
                               f"{m.tokens_metric!r} is logged only from step {run.series[m.tokens_metric][0][0]:g}"
                               " on, and the MAP gives no batch_tokens to derive tokens = step x batch tokens")
        batch = _batch_tokens(run, m)
        tokens[missing] = steps[missing] * batch
        factors = " x ".join(f.describe() for f in m.batch_tokens)
        count = "" if missing.all() else f" at {int(missing.sum())} of {len(native)} points"
        how.append(f"step x batch tokens{count} (B = {batch:g}: {factors})")
    return tokens, "; ".join(how), bool(missing.any() or interp.any())


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.item() if hasattr(value, "item") else str(value)  # numpy scalars, then anything

    return json.loads(json.dumps(params, default=plain))
