"""Sweep files (TOML): a study, its data, defaults, and groups of runs.

A study file::

    [study]
    name = "smoke"
    data = { sources = ["python-stdlib"], vocab_size = 512, max_mb_per_source = 2 }
    # or: data = "path/to/prepared"   (relative to this file)
    # or: data = "prepared:KEY"        (a table's data in the cache, as its runs name it)

    [study.defaults]          # any TrainConfig / ModelSpec field, one value each
    n_ctx = 64
    batch_tokens = 2048

    [[group]]
    name = "sizes"
    rule = "converge"          # plain | converge | data | isoflop
    architecture = ["transformer", "lstm"]
    params = [1e4, 3e4, 1e5]   # target non-embedding N -> shape helper
    tokens = 2e5

A list value is an axis; a group expands the product of its axes
(``mode = "product"``, the default) or zips them (``mode = "zip"``, equal
lengths). Budget rules ([K] sections 3-6, science.md section 6):

- ``plain``: the budget as written (``tokens``, ``steps`` or ``flops``).
- ``converge``: early stopping on, a large budget: runs for L(N) "trained
  to convergence" ([K] 1.1).
- ``data``: a D-token dataset (``dataset_tokens``, or ``tokens`` for one
  pass), early stopping on: runs for L(D) ([K] 1.2). ``epochs`` (default 1)
  sets the budget to ``epochs * dataset_tokens`` when no budget is given.
- ``isoflop``: fixed compute budgets ``flops = [...]`` and N varies;
  D = C / 6N ([K] 2.1, [H] approach 2).

Every key is checked; errors name the file, the group and the key.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lmscale.accounting import (
    applied_non_embedding_params,
    non_embedding_params,
    training_flops_per_token,
)
from lmscale.errors import LmscaleError, SpecError
from lmscale.models.spec import ModelSpec
from lmscale.sweeps.data import DataSpec
from lmscale.sweeps.keys import (
    GROUP_META,
    HELPER_ARGS,
    HELPER_CHOSEN,
    KEY_TYPES,
    MODEL_KEYS,
    SIZE_KEYS,
    TRAIN_KEYS,
    coerce,
    is_list_valued,
)
from lmscale.training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RULES = ("plain", "converge", "data", "isoflop")
MODES = ("product", "zip")
STUDY_KEYS = ("name", "description", "data", "defaults")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study.

    Attributes:
        run_id: ``config.run_id()``: the run's identity (the data named
            location-independently, see :mod:`lmscale.sweeps.data`).
        group, rule: the ``[[group]]`` it came from and its budget rule.
        config: the canonical run specification.
        axes: the axis values that made this run (for display).
        N: non-embedding parameters by [K]'s formula.
        D: planned training tokens (``None`` when the budget is FLOPs and
            the trainer rounds it; then ``C / 6N``).
        C: planned training compute 6 N D ([K] 2.1).
    """

    run_id: str
    group: str
    rule: str
    config: TrainConfig
    axes: dict[str, Any]
    N: int
    D: float
    C: float

    def executable(self, data_dir: str | Path, checkpoint_dir: str | Path | None, threads: int | None) -> TrainConfig:
        """The config handed to the trainer: real data path, checkpoints, threads."""
        return replace(self.config, data_dir=str(data_dir),
                       checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), threads=threads)


@dataclass
class Study:
    """A parsed, validated and expanded sweep file."""

    name: str
    path: Path
    data: DataSpec
    runs: list[PlannedRun]
    groups: list[str]
    description: str = ""
    duplicates: dict[str, list[str]] = field(default_factory=dict)

    def by_id(self) -> dict[str, PlannedRun]:
        return {r.run_id: r for r in self.runs}


def load_study(path: str | Path) -> Study:
    """Read, validate and expand a sweep file; every problem is a :class:`SpecError`
    (an :class:`LmscaleError`) naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise LmscaleError(f"{path}: no such sweep file")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LmscaleError(f"{path}: not valid TOML ({exc})") from None
    return parse_study(doc, path)


def parse_study(doc: dict[str, Any], path: Path) -> Study:
    file = str(path)
    for key in doc:
        if key not in ("study", "group"):
            raise SpecError(key, doc[key], "only [study] and [[group]] tables at the top level", file)
    study = doc.get("study")
    if not isinstance(study, dict):
        raise SpecError("study", study, "a [study] table with name and data", file)
    for key in study:
        if key not in STUDY_KEYS:
            raise SpecError(f"study.{key}", study[key], f"one of the keys {', '.join(STUDY_KEYS)}", file)
    name = study.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("study.name", name, "a non-empty string", file)
    if not isinstance(study.get("description", ""), str):
        raise SpecError("study.description", study["description"], "a string", file)
    if "data" not in study:
        raise SpecError("study.data", None, "a prepared data directory or a data table", file)
    data = DataSpec.parse(study["data"], path.parent, file)
    defaults = study.get("defaults", {})
    if not isinstance(defaults, dict):
        raise SpecError("study.defaults", defaults, "a table of run fields", file)
    checked_defaults = {}
    for key, value in defaults.items():
        if key not in KEY_TYPES:
            raise SpecError(f"study.defaults.{key}", value, "a run field (" + ", ".join(KEY_TYPES) + ")", file)
        if isinstance(value, list) and not is_list_valued(key):
            raise SpecError(f"study.defaults.{key}", value, "one value (axes belong in a [[group]])", file)
        checked_defaults[key] = coerce(value, KEY_TYPES[key], f"study.defaults.{key}", file)
    groups = doc.get("group")
    if not isinstance(groups, list) or not groups:
        raise SpecError("group", groups, "one or more [[group]] tables", file)
    vocab = data.vocab(file)
    runs: list[PlannedRun] = []
    names: list[str] = []
    seen: dict[str, PlannedRun] = {}
    duplicates: dict[str, list[str]] = {}
    for gi, group in enumerate(groups):
        gname, grouped = _expand_group(group, gi, file, checked_defaults, data, vocab)
        if gname in names:
            raise SpecError("name", gname, "a group name not used by another [[group]]", f"{file}: [[group]] {gi + 1}")
        names.append(gname)
        for run in grouped:
            if run.run_id in seen:  # the same run is trained once, tagged with its first group
                duplicates.setdefault(run.run_id, []).append(gname)
                continue
            seen[run.run_id] = run
            runs.append(run)
    return Study(name=name, path=path, data=data, runs=runs, groups=names,
                 description=study.get("description", ""), duplicates=duplicates)


def _expand_group(
    group: Any, gi: int, file: str, defaults: dict[str, Any], data: DataSpec, vocab: int
) -> tuple[str, list[PlannedRun]]:
    where = f"{file}: [[group]] {gi + 1}"
    if not isinstance(group, dict):
        raise SpecError("group", group, "a table", where)
    for key, hint in GROUP_META.items():
        if key in group:
            coerce(group[key], hint, key, where)
    gname = group.get("name", f"group{gi + 1}")
    where = f"{file}: [[group]] {gi + 1} ({gname!r})"
    rule = group.get("rule", "plain")
    if rule not in RULES:
        raise SpecError("rule", rule, f"one of {', '.join(RULES)}", where)
    mode = group.get("mode", "product")
    if mode not in MODES:
        raise SpecError("mode", mode, f"one of {', '.join(MODES)}", where)
    if "epochs" in group and rule != "data":
        raise SpecError("epochs", group["epochs"], "only with rule = \"data\"", where)
    scalars: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for key, value in group.items():
        if key in GROUP_META:
            continue
        if key not in KEY_TYPES:
            known = ", ".join([*GROUP_META, *SIZE_KEYS, *MODEL_KEYS, *TRAIN_KEYS])
            raise SpecError(key, value, f"a known key ({known})", where)
        axis = isinstance(value, list) and (not is_list_valued(key) or any(isinstance(v, list) for v in value))
        if axis:
            if not value:
                raise SpecError(key, value, "a non-empty list (an empty axis makes no runs)", where)
            axes[key] = [coerce(v, KEY_TYPES[key], key, where) for v in value]
        else:
            scalars[key] = coerce(value, KEY_TYPES[key], key, where)
    given = set(scalars) | set(axes)
    _check_size_keys(given, where)
    _check_rule_keys(rule, given, set(defaults), where)
    if mode == "zip" and axes:
        lengths = {k: len(v) for k, v in axes.items()}
        if len(set(lengths.values())) > 1:
            raise SpecError("mode", "zip", "axes of equal length (" + ", ".join(
                f"{k}: {n}" for k, n in lengths.items()) + ")", where)
        combos = [dict(zip(axes, values)) for values in zip(*axes.values())]
    else:
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    base = {k: v for k, v in defaults.items() if not _shadowed(k, given)}
    runs = []
    for ri, combo in enumerate(combos):
        label = ", ".join(f"{k}={_short(v)}" for k, v in combo.items())
        run_where = f"{where}, run {ri + 1}" + (f" ({label})" if label else "")
        merged = {**base, **scalars, **combo}
        runs.append(_build_run(merged, combo, gname, rule, group.get("epochs", 1), data, vocab, run_where))
    return gname, runs


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={v}" for k, v in value.items()) + "}"
    return str(value)


def _check_size_keys(given: set[str], where: str) -> None:
    if "params" in given:
        clash = sorted(given & {*HELPER_CHOSEN, "shape"})
        if clash:
            raise SpecError(clash[0], "...", "no value when params is given (the shape helper "
                            "chooses n_layer, d_model, n_head, d_ff; use aspect_ratio, d_head, d_ff_ratio)", where)
    else:
        knobs = sorted(given & {"aspect_ratio", "d_head", "d_ff_ratio"})
        if knobs:
            raise SpecError(knobs[0], "...", "used only with params (the shape helper's target N)", where)


def _check_rule_keys(rule: str, given: set[str], defaults: set[str], where: str) -> None:
    """Keys a rule needs (from the group or the defaults) or forbids (in the group;
    a default budget is simply replaced by the rule's)."""
    if rule == "isoflop":
        if "flops" not in given | defaults:
            raise SpecError("flops", None, "compute budgets (flops = [...]) for rule = \"isoflop\"", where)
        for key in ("tokens", "steps"):
            if key in given:
                raise SpecError(key, "...", "no value with rule = \"isoflop\" (D = C / 6N)", where)
    if rule == "data" and not (given | defaults) & {"dataset_tokens", "tokens"}:
        raise SpecError("dataset_tokens", None, "the dataset sizes D for rule = \"data\"", where)


def _shadowed(key: str, given: set[str]) -> bool:
    """A default that the group's own size keys make meaningless."""
    if "params" in given:
        return key in HELPER_CHOSEN or key == "shape"
    if given & {*HELPER_CHOSEN, "shape"}:
        return key in ("aspect_ratio", "d_head", "d_ff_ratio", "params")
    return False


def _build_model(values: dict[str, Any], vocab: int, where: str) -> ModelSpec:
    model = {k: values[k] for k in MODEL_KEYS if k in values}
    model.setdefault("n_vocab", vocab)
    if "params" in values:
        from lmscale.models.shapes import shape_for_params

        kwargs = {k: model.get(k, values.get(k)) for k in HELPER_ARGS if k in model or k in values}
        try:
            return shape_for_params(values["params"], **kwargs)
        except SpecError as exc:
            raise SpecError(exc.field, exc.value, exc.expected, where) from None
        except LmscaleError as exc:
            raise SpecError("params", values["params"], f"a buildable size ({exc})", where) from None
    shape = values.get("shape", {})
    for key in shape:
        if key not in MODEL_KEYS:
            raise SpecError(f"shape.{key}", shape[key], f"a model field ({', '.join(MODEL_KEYS)})", where)
    model.update({k: coerce(v, KEY_TYPES[k], f"shape.{k}", where) for k, v in shape.items()})
    return ModelSpec.from_dict(model, where=where)


def _build_run(
    values: dict[str, Any], combo: dict[str, Any], group: str, rule: str, epochs: float,
    data: DataSpec, vocab: int, where: str,
) -> PlannedRun:
    spec = _build_model(values, vocab, where)
    if vocab and spec.n_vocab < vocab:
        raise SpecError("n_vocab", spec.n_vocab, f"at least the tokenizer's vocabulary ({vocab})", where)
    train = {k: values[k] for k in TRAIN_KEYS if k in values}
    if rule in ("converge", "data"):
        if train.get("early_stopping") is False:
            raise SpecError("early_stopping", False, f"true (rule = {rule!r} early-stops)", where)
        train["early_stopping"] = True
    if rule == "data":
        if "dataset_tokens" in train and not any(k in train for k in ("tokens", "steps", "flops")):
            train["tokens"] = int(round(epochs * train["dataset_tokens"]))
        elif "dataset_tokens" not in train and "tokens" in train:
            train["dataset_tokens"] = train["tokens"]
    if rule == "isoflop":
        train.pop("tokens", None)
        train.pop("steps", None)
    try:
        config = TrainConfig(model=spec, data_dir=data.canonical(), **train)
    except SpecError as exc:
        raise SpecError(exc.field, exc.value, exc.expected, where) from None
    except TypeError as exc:
        raise LmscaleError(f"{where}: {exc}") from None
    n = non_embedding_params(spec)
    per_token = training_flops_per_token(spec)
    if config.tokens is not None:
        d = float(config.tokens)
    elif config.steps is not None:
        d = float(config.steps * config.batch_tokens)
    else:
        d = float(config.flops) / per_token
        if d < config.batch_tokens:
            raise SpecError("flops", config.flops, f"a budget of at least one batch: C / 6N = {d:.3g} tokens "
                            f"< batch_tokens = {config.batch_tokens} at N = {applied_non_embedding_params(spec)}",
                            where)
    return PlannedRun(run_id=config.run_id(), group=group, rule=rule, config=config, axes=dict(combo),
                      N=n, D=d, C=per_token * d)
