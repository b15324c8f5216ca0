"""Proposed runs as a study: shapes, learning rate and batch, and the ``[[group]]`` that trains them.

:func:`context_from_store` reads what a results store says about its study
(its name, the prepared data its runs used, the run settings every
Transformer run shares, and the ``next`` rounds already in it);
:func:`recipes` gives each proposed run the shape the sweep's shape helper
would build (:func:`lmscale.models.shapes.shape_for_params`), the learning
rate (the study's, or [K] eq. D.1's LR(N)) and the batch size;
:func:`write_study` writes a study file whose ``[[group]]`` holds the
proposals, so ``lmscale sweep run`` trains them into the same store.

The group of round R is named ``next-R@N=...,D=...`` (the target point);
the report finds the rounds by that name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.files import atomic_path

#: ``next-<round>@N=<N>,D=<D>[;N=...,D=...]``: a group written by ``lmscale next``.
GROUP_PATTERN = re.compile(r"^next-(\d+)@(.+)$")

#: Run fields copied into the written study's defaults when every Transformer run shares them.
RUN_FIELDS = ("batch_tokens", "micro_batch_tokens", "lr", "lr_scale", "lr_reference_batch", "precision",
              "noise_every", "schedule", "warmup_steps", "decay_fraction",
              "min_lr_ratio", "weight_decay", "beta1", "beta2", "eps", "grad_clip", "seed", "patience",
              "eval_tokens", "eval_distributions", "curve_points_per_decade", "noise_scale", "device",
              "compile", "checkpoint_every_s", "eval_other_tokens", "eval_every", "noise_ema_decay",
              "loss_ema_decay", "divergence_loss")
#: Model fields copied likewise (the shape helper chooses the others from ``params``).
MODEL_FIELDS = ("n_ctx", "n_vocab", "dropout", "tied_embeddings")


@dataclass
class StudyContext:
    """What a store says about the study that filled it.

    Attributes:
        name: the study's name (the ``study`` column).
        data: the prepared data directory the runs were trained on (absolute), if recorded.
        defaults: run and model fields shared by every Transformer run (the written study's defaults).
        rounds: ``next`` rounds already in the store.
        groups: the groups of the store, in order.
        train_tokens: training tokens of the data's training distribution (a run may not ask for more).
        data_id: how the runs name their data in their ids (``prepared:KEY`` or a relative path).
    """

    name: str = "study"
    data: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0
    groups: list[str] = field(default_factory=list)
    train_tokens: int | None = None
    data_id: str | None = None


def round_of(group: str) -> int | None:
    """The round of a group written by ``next`` (None for other groups)."""
    match = GROUP_PATTERN.match(str(group))
    return int(match.group(1)) if match else None


def target_of(group: str) -> list[tuple[float, float]]:
    """The target point(s) recorded in a ``next`` group's name."""
    match = GROUP_PATTERN.match(str(group))
    if not match:
        return []
    points = []
    for part in match.group(2).split(";"):
        values = dict(item.split("=", 1) for item in part.split(",") if "=" in item)
        try:
            points.append((float(values["N"]), float(values["D"])))
        except (KeyError, ValueError):
            return []
    return points


def group_name(round_no: int, N: Sequence[float], D: Sequence[float]) -> str:
    points = ";".join(f"N={n:.4g},D={d:.4g}" for n, d in zip(N, D))
    return f"next-{round_no}@{points}"


def context_from_store(path: str | Path, run_ids: Sequence[str] | None = None) -> StudyContext:
    """Name, data directory, shared settings and ``next`` rounds of a results store.

    ``run_ids``: the runs the proposals extend (those the forecast is fitted on); their shared
    settings are the written study's defaults, so that a batch-size sweep or a run of another
    recipe in the same store does not leave the new runs with the trainer's defaults instead.
    """
    from lmscale.store import Store

    with Store(path, create=False) as store:
        runs = store.runs()
    ctx = StudyContext()
    if runs.empty:
        return ctx
    names = [s for s in runs["study"].dropna().unique()]
    ctx.name = str(names[0]) if names else Path(path).stem
    ctx.groups = [str(g) for g in dict.fromkeys(runs["group"].dropna())]
    ctx.rounds = max([r for r in (round_of(g) for g in ctx.groups) if r is not None], default=0)
    trained = runs[(runs["architecture"] == "transformer") & runs["spec_json"].notna()]
    if run_ids is not None:
        trained = trained[trained["run_id"].isin(set(run_ids))]
    if trained.empty:
        return ctx
    dirs = trained["data_dir"].dropna().unique()
    ctx.data = str(dirs[0]) if len(dirs) == 1 else None
    ctx.train_tokens = _train_tokens(ctx.data)
    specs = [json.loads(s) for s in trained["spec_json"]]
    ids = {s.get("data_dir") for s in specs}
    ctx.data_id = ids.pop() if len(ids) == 1 else None
    ctx.defaults = _shared(specs)
    return ctx


def _train_tokens(data_dir: str | None) -> int | None:
    """Training tokens of a prepared data directory (None when it cannot be read here)."""
    if not data_dir:
        return None
    from lmscale.data.prepared import PreparedData

    try:
        return int(PreparedData.open(data_dir).num_train_tokens())
    except (LmscaleError, OSError):
        return None


def train_tokens_of_study(path: str | Path) -> int | None:
    """Training tokens of a study's data, when it is prepared on this machine."""
    from lmscale.sweeps.spec import load_study

    study = load_study(path)
    target = study.data.target()
    return _train_tokens(str(target)) if Path(target).is_dir() else None


def defaults_from_study(path: str | Path) -> dict[str, Any]:
    """The run and model fields every Transformer run of a study file shares."""
    from lmscale.sweeps.spec import load_study

    study = load_study(path)
    specs = [r.config.to_dict() for r in study.runs if r.config.model.architecture == "transformer"]
    return _shared(specs) if specs else {}


def _shared(specs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in RUN_FIELDS:
        values = {json.dumps(s.get(key), sort_keys=True) for s in specs}
        if len(values) == 1 and specs[0].get(key) is not None:
            out[key] = specs[0][key]
    for key in MODEL_FIELDS:
        values = {json.dumps((s.get("model") or {}).get(key)) for s in specs}
        value = (specs[0].get("model") or {}).get(key)
        if len(values) == 1 and value is not None:
            out[key] = value
    return out


def recipes(runs: pd.DataFrame, defaults: dict[str, Any] | None = None) -> pd.DataFrame:
    """Add each run's shape (n_layer, d_model, n_head, N of the shape), learning rate and batch size.

    The shape is the one the sweep builds for ``params = N`` with the study's
    n_ctx and n_vocab (:func:`lmscale.models.shapes.shape_for_params`); runs
    with no such shape get empty columns and a ``note``.
    """
    from lmscale.accounting import non_embedding_params
    from lmscale.models.shapes import recipe_learning_rate, shape_for_params

    defaults = dict(defaults or {})
    helper = {k: defaults[k] for k in ("n_ctx", "n_vocab", "dropout", "tied_embeddings", "aspect_ratio",
                                       "d_head", "d_ff_ratio") if k in defaults}
    rows = []
    for N in runs["N"]:
        row: dict[str, Any] = {"n_layer": None, "d_model": None, "n_head": None, "N_shape": None, "note": ""}
        try:
            spec = shape_for_params(float(N), **helper)
        except LmscaleError as exc:
            row["note"] = str(exc)
        else:
            row.update(n_layer=spec.n_layer, d_model=spec.d_model, n_head=spec.n_head,
                       N_shape=non_embedding_params(spec))
        n_lr = row["N_shape"] or float(N)
        if defaults.get("lr") is not None:
            row["lr"], row["lr_source"] = defaults["lr"], "the study's lr"
        else:
            row["lr"] = recipe_learning_rate(float(n_lr), "transformer", defaults.get("lr_scale", 1.0),
                                             defaults.get("batch_tokens"), defaults.get("lr_reference_batch"))
            row["lr_source"] = ("[K] eq. D.1 LR(N)" if defaults.get("lr_scale", 1.0) == 1.0
                                else f"{defaults['lr_scale']:g} x [K] eq. D.1 LR(N) (the study's lr_scale)")
        row["batch_tokens"] = defaults.get("batch_tokens")
        rows.append(row)
    return pd.concat([runs.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def group_toml(round_no: int, runs: pd.DataFrame, target_N: Sequence[float], target_D: Sequence[float],
               how: str) -> str:
    """The ``[[group]]`` table of one round (rule plain, params and tokens zipped)."""
    name = group_name(round_no, target_N, target_D)
    params = ", ".join(_number(float(n)) for n in runs["N"])
    tokens = ", ".join(str(int(round(float(d)))) for d in runs["D"])
    return (
        f"# lmscale next, round {round_no}: {len(runs)} run(s), {float(runs['C'].sum()):.3g} FLOPs, {how}\n"
        "[[group]]\n"
        f"name = {json.dumps(name)}\n"
        f"description = {json.dumps(f'round {round_no} of lmscale next: {how}')}\n"
        'rule = "plain"\n'
        'mode = "zip"\n'
        'architecture = "transformer"\n'
        f"params = [{params}]\n"
        f"tokens = [{tokens}]\n"
    )


def _data_name(ctx: StudyContext) -> str:
    """How the rebuilt study names its data: as the store's runs do (``prepared:KEY``, data prepared
    from a table into lmscale's cache), so the new runs share their data identity; else the folder."""
    from lmscale.sweeps.data import PREPARED, DataSpec

    folder = str(Path(ctx.data).resolve())
    if ctx.data_id and ctx.data_id.startswith(PREPARED):
        try:
            same = DataSpec.parse(ctx.data_id, Path("."), "store").target().resolve() == Path(folder)
        except LmscaleError:
            same = False
        if same:
            return ctx.data_id
    return folder


def study_toml(ctx: StudyContext, where: Path) -> str:
    """A ``[study]`` table rebuilt from a store: its name, data directory and shared settings."""
    if not ctx.data:
        raise LmscaleError("the store does not say which prepared data its runs used (several or none); "
                           "pass the study file with --study")
    lines = ["[study]", f"name = {json.dumps(ctx.name)}",
             f"description = {json.dumps('rebuilt by lmscale next from the results store')}",
             f"data = {json.dumps(_data_name(ctx))}", "", "[study.defaults]"]
    for key, value in ctx.defaults.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_study(out: str | Path, group: str, base: str | Path | None = None,
                ctx: StudyContext | None = None) -> Path:
    """Write ``out``: the base study file's text (or a study rebuilt from ``ctx``) plus ``group``.

    The result is read back with :func:`lmscale.sweeps.spec.load_study`, so a
    file that ``sweep run`` would refuse is never left behind.
    """
    from lmscale.sweeps.spec import load_study

    out = Path(out)
    if base is not None:
        base = Path(base)
        if not base.is_file():
            raise LmscaleError(f"--study {base}: no such study file")
        text = base.read_text()
        if out.resolve().parent != base.resolve().parent and re.search(r"^\s*data\s*=\s*['\"]", text, re.M):
            raise LmscaleError(f"--write-study {out}: the study {base} names its data by a path relative to "
                               f"itself; write the new study in the same folder ({base.parent})")
        head = text.rstrip() + "\n\n"
    else:
        if ctx is None:
            raise LmscaleError("--write-study needs --study FILE.toml (or a results store to rebuild it from)")
        head = study_toml(ctx, out.parent) + "\n"
    try:
        with atomic_path(out) as tmp:
            tmp.write_text(head + group)
            load_study(tmp)
    except LmscaleError as exc:
        raise LmscaleError(f"--write-study {out}: the study would not load: {exc}") from None
    return out


def rounds_in_study(path: str | Path) -> int:
    """The largest ``next`` round among a study file's groups (0 if none)."""
    text = Path(path).read_text()
    found = [int(m.group(1)) for m in re.finditer(r'name\s*=\s*"next-(\d+)@', text)]
    return max(found, default=0)


def _number(x: float) -> str:
    text = f"{x:.6g}"
    return text if any(c in text for c in ".e") else text + ".0"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise LmscaleError(f"cannot write {value!r} to a study file")


__all__ = ["GROUP_PATTERN", "StudyContext", "context_from_store", "group_toml", "recipes", "round_of",
           "rounds_in_study", "study_toml", "target_of", "write_study"]
