"""The MAP file of ``lmscale import``: which logged value is the loss, N, the tokens, the FLOPs.

A MAP is a TOML file (or a mapping with the same keys)::

    loss = "eval/loss"              # metric: test loss of the training distribution, nats/token
    distribution = "webtext"        # its name in the store (default: the metric's name)
    train_loss = "train/loss"       # optional metric
    lr = "train/learning_rate"      # optional metric
    final = "last"                  # final loss of a run: "last" point or "min" over the curve
    group = "sizes"                 # group of the runs (or { param = "sweep" }); default: the source
    rule = "converge"               # rule tag (converge, data, isoflop, plain)

    [losses]                        # other distributions' test losses: name = metric
    books = "eval/books_loss"

    [N]                             # one of: param, metric, value, model
    param = "n_params"
    # model = { n_layer = { param = "n_layer" }, d_model = { param = "d_model" } }

    [tokens]                        # metric, or batch_tokens (tokens = step x batch tokens), or both
    metric = "train/tokens"
    batch_tokens = { param = "batch_tokens" }   # or a number, or a list whose product it is

    [flops]                         # optional; without it C = 6 N D ([K] 2.1), labelled derived
    metric = "train/flops"

A *value* (N, a batch size, a model field) is a number, ``{ value = x }``,
``{ param = "name" }`` (a hyper-parameter / config entry / constant CSV
column) or ``{ metric = "name" }`` (its last logged value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FINALS = ("last", "min")
TOP_KEYS = ("loss", "distribution", "train_loss", "lr", "step", "final", "group", "rule", "study",
            "losses", "N", "tokens", "flops", "run", "experiments", "include")
MODEL_FIELDS = ("architecture", "n_layer", "d_model", "n_head", "d_ff", "n_ctx", "n_vocab", "tied_embeddings")


@dataclass(frozen=True)
class Value:
    """A number known per run: a literal, a parameter, or a metric's last value."""

    kind: str  # "value", "param" or "metric"
    ref: Any   # the number, or the parameter / metric name

    def describe(self) -> str:
        return f"{self.ref:g}" if self.kind == "value" and isinstance(self.ref, int | float) \
            else f"{self.kind} {self.ref!r}"


@dataclass(frozen=True)
class ImportMap:
    """A parsed MAP (see the module docstring for every key).

    Attributes:
        loss: metric of the test loss on the training distribution.
        distribution: the training distribution's name in the store.
        losses: other distributions: name -> metric.
        train_loss, lr, step: optional metrics (``step``: a metric to use as
            the step instead of the source's own step counter).
        final: ``last`` or ``min``: which curve point is the run's final loss.
        n: how N is obtained (a :class:`Value`, or ``model``: fields -> Value).
        n_model: ModelSpec fields -> :class:`Value` when N is counted from a config.
        tokens_metric: the logged token counter, if any.
        batch_tokens: factors of the batch size in tokens (tokens = step x B).
        flops_metric: the logged training FLOPs, if any (else C = 6 N D).
        group, rule, study: tags of the imported runs (``group`` may be a Value).
        run: CSV only: the column naming each row's run (none: one run per row).
        experiments: MLflow only: experiment names to import (empty: all).
        include: a regular expression the run names must match.
        where: the MAP file, for messages.
    """

    loss: str
    distribution: str
    losses: dict[str, str] = field(default_factory=dict)
    train_loss: str | None = None
    lr: str | None = None
    step: str | None = None
    final: str = "last"
    n: Value | None = None
    n_model: dict[str, Value] | None = None
    tokens_metric: str | None = None
    batch_tokens: tuple[Value, ...] = ()
    flops_metric: str | None = None
    group: Value | None = None
    rule: str = "plain"
    study: str | None = None
    run: str | None = None
    experiments: tuple[str, ...] = ()
    include: str | None = None
    where: str = "MAP"

    def metrics(self) -> set[str]:
        """Every metric name the map reads (the importers fetch only these)."""
        names = {self.loss, *self.losses.values()}
        names |= {m for m in (self.train_loss, self.lr, self.step, self.tokens_metric, self.flops_metric) if m}
        values = [self.n, self.group, *self.batch_tokens, *(self.n_model or {}).values()]
        names |= {v.ref for v in values if v is not None and v.kind == "metric"}
        return names

    def selects(self, name: str) -> bool:
        return self.include is None or re.search(self.include, name) is not None

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> ImportMap:
        """Parse a MAP file (TOML) or mapping; every error names the file and the key."""
        if isinstance(source, Mapping):
            return cls.from_dict(source, "MAP")
        path = Path(source)
        if not path.is_file():
            raise LmscaleError(f"--map {path}: no such file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise LmscaleError(f"{path}: not valid TOML ({exc})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "MAP") -> ImportMap:
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise LmscaleError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TOP_KEYS)}")
        loss = _name(data, "loss", where, required=True)
        losses = data.get("losses", {})
        if not isinstance(losses, Mapping) or not all(isinstance(v, str) and v for v in losses.values()):
            raise LmscaleError(f"{where}: [losses]: expected a table of distribution = \"metric\"")
        final = data.get("final", "last")
        if final not in FINALS:
            raise LmscaleError(f"{where}: final = {final!r}: expected one of {', '.join(FINALS)}")
        n, n_model = _parse_n(data.get("N"), where)
        tokens_metric, batch = _parse_tokens(data.get("tokens"), where)
        if tokens_metric is None and not batch:
            raise LmscaleError(f"{where}: missing [tokens]: no token count and no way to derive one (metric = "
                               "\"...\" for a logged counter, or batch_tokens = ... for tokens = step x batch tokens)")
        flops = data.get("flops")
        if isinstance(flops, Mapping):
            extra = sorted(set(flops) - {"metric"})
            if extra or not isinstance(flops.get("metric"), str):
                raise LmscaleError(f"{where}: [flops]: expected metric = \"name\" (omit [flops] for C = 6 N D)")
            flops = flops["metric"]
        elif flops is not None and not isinstance(flops, str):
            raise LmscaleError(f"{where}: flops = {flops!r}: expected a metric name or a [flops] table")
        group = data.get("group")
        group_value = None if group is None else (Value("value", group) if isinstance(group, str)
                                                  else _value(group, "group", where))
        experiments = data.get("experiments", ())
        if isinstance(experiments, str):
            experiments = (experiments,)
        if not all(isinstance(e, str) for e in experiments):
            raise LmscaleError(f"{where}: experiments: expected a list of MLflow experiment names")
        include = _name(data, "include", where)
        if include is not None:
            try:
                re.compile(include)
            except re.error as exc:
                raise LmscaleError(f"{where}: include = {include!r}: not a regular expression ({exc})") from None
        return cls(
            loss=loss, distribution=_name(data, "distribution", where) or loss,
            losses={str(k): v for k, v in losses.items()}, train_loss=_name(data, "train_loss", where),
            lr=_name(data, "lr", where), step=_name(data, "step", where), final=final, n=n, n_model=n_model,
            tokens_metric=tokens_metric, batch_tokens=batch, flops_metric=flops, group=group_value,
            rule=_name(data, "rule", where) or "plain", study=_name(data, "study", where),
            run=_name(data, "run", where), experiments=tuple(experiments), include=include, where=where,
        )


def _name(data: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise LmscaleError(f"{where}: missing key {key!r} (the metric of the test loss, e.g. "
                               f"{key} = \"eval/loss\")")
        return None
    if not isinstance(value, str) or not value:
        raise LmscaleError(f"{where}: {key} = {value!r}: expected a non-empty string")
    return value


def _value(raw: Any, key: str, where: str) -> Value:
    """A number, or a table with exactly one of value / param / metric."""
    if isinstance(raw, bool):
        raise LmscaleError(f"{where}: {key} = {raw!r}: expected a number or {{ param = \"name\" }}")
    if isinstance(raw, int | float):
        return Value("value", raw)
    if isinstance(raw, Mapping):
        given = [k for k in ("value", "param", "metric") if k in raw]
        extra = sorted(set(raw) - {"value", "param", "metric"})
        if len(given) == 1 and not extra:
            ref = raw[given[0]]
            if given[0] != "value" and not (isinstance(ref, str) and ref):
                raise LmscaleError(f"{where}: {key}.{given[0]} = {ref!r}: expected a name")
            return Value(given[0], ref)
    raise LmscaleError(f"{where}: {key} = {raw!r}: expected a number or a table with exactly one of "
                       "value, param, metric")


def _parse_n(raw: Any, where: str) -> tuple[Value | None, dict[str, Value] | None]:
    if raw is None:
        raise LmscaleError(f"{where}: missing [N]: say where N (non-embedding parameters) comes from: "
                           "param = \"...\", metric = \"...\", value = ..., or model = { n_layer = ..., "
                           "d_model = ... } to count it with lmscale.accounting")
    if isinstance(raw, Mapping) and "model" in raw:
        if set(raw) != {"model"} or not isinstance(raw["model"], Mapping):
            raise LmscaleError(f"{where}: [N] model: expected a table of model fields alone "
                               f"({', '.join(MODEL_FIELDS)})")
        model = raw["model"]
        unknown = sorted(set(model) - set(MODEL_FIELDS))
        if unknown:
            raise LmscaleError(f"{where}: [N.model]: unknown field(s) {', '.join(unknown)}; known: "
                               f"{', '.join(MODEL_FIELDS)}")
        for needed in ("n_layer", "d_model"):
            if needed not in model:
                raise LmscaleError(f"{where}: [N.model]: missing {needed}")
        fields_ = {}
        for k, v in model.items():
            fields_[k] = Value("value", v) if isinstance(v, str | bool) else _value(v, f"N.model.{k}", where)
        return None, fields_
    return _value(raw, "N", where), None


def _parse_tokens(raw: Any, where: str) -> tuple[str | None, tuple[Value, ...]]:
    if raw is None:
        return None, ()
    if isinstance(raw, str):
        return raw, ()
    if not isinstance(raw, Mapping) or not raw or set(raw) - {"metric", "batch_tokens"}:
        raise LmscaleError(f"{where}: [tokens]: expected metric = \"name\" and/or batch_tokens = ... "
                           "(tokens = step x batch tokens)")
    metric = raw.get("metric")
    if metric is not None and not (isinstance(metric, str) and metric):
        raise LmscaleError(f"{where}: tokens.metric = {metric!r}: expected a metric name")
    batch = raw.get("batch_tokens")
    factors: tuple[Value, ...] = ()
    if batch is not None:
        items = batch if isinstance(batch, list) else [batch]
        if not items:
            raise LmscaleError(f"{where}: tokens.batch_tokens = []: expected a value or a list of factors")
        factors = tuple(_value(b, "tokens.batch_tokens", where) for b in items)
    return metric, factors
