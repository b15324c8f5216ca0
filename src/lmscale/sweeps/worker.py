"""What an executor's worker does with one run: train it, return the record as a dict.

Workers never touch the store: the parent (local executor) or the driver
(Ray) writes what they return. A run that raises becomes a ``failed``
record; a diverging run comes back from the trainer as ``diverged``. A full
disk is not the run's fault: it comes back ``interrupted`` (its last
checkpoint intact) with ``stop_sweep`` saying why the sweep must stop.
"""

from __future__ import annotations

import json
import platform
import traceback
from collections.abc import Callable
from typing import Any

from lmscale import __version__
from lmscale.errors import LmscaleError, is_disk_full
from lmscale.training.config import TrainConfig
from lmscale.training.record import RunRecord

#: Record status the worker reports when a stop request ended the run early.
STOPPED = "interrupted"


def train_one(
    run_id: str,
    config: dict[str, Any],
    *,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    stop_event: Any = None,
    auto_precision: str | None = None,
) -> dict[str, Any]:
    """Train one run; returns ``RunRecord.to_dict()`` under the sweep's ``run_id``.

    ``config`` is the executable ``TrainConfig.to_dict()`` (real data path,
    checkpoint dir, threads). ``on_point`` gets ``{tokens, loss, step,
    wall_time_s}`` at each learning-curve point. If ``stop_event`` is set
    before the run ends, the trainer checkpoints and the status is
    ``"interrupted"`` (the run resumes next time). ``auto_precision``: what
    ``precision = "auto"`` means in this study (see ``Session.study_precision``).
    """
    try:
        cfg = TrainConfig.from_dict(config)
        from lmscale.training import train

        def point(p: Any) -> None:
            if on_point is not None:
                on_point(_point_info(p))

        record = train(cfg, progress=False, on_point=point, stop_event=stop_event,
                       auto_precision=auto_precision)
        out = _stopped(record.to_dict(), stop_event)
    except (Exception, KeyboardInterrupt) as exc:  # a failed run is a result, not a crash of the sweep
        out = _failed(run_id, config, exc)
    out["run_id"] = run_id
    return plain(out)


def train_pack(
    runs: list[tuple[str, dict[str, Any]]],
    *,
    on_point: Callable[[str, dict[str, Any]], None] | None = None,
    on_record: Callable[[str, dict[str, Any]], None],
    stop_event: Any = None,
    auto_precision: str | None = None,
) -> None:
    """Train ``(run_id, config)`` runs of one shape packed (``lmscale.training.packed``).

    Each run's record goes to ``on_record(run_id, record)`` the moment it
    ends; if the pack itself fails, every run without a record gets a
    ``failed`` one (or ``interrupted`` on a stop).
    """
    reported: set[str] = set()

    def record(i: int, rec: Any) -> None:
        run_id = runs[i][0]
        reported.add(run_id)
        on_record(run_id, plain(dict(_stopped(rec.to_dict(), stop_event), run_id=run_id)))

    try:
        from lmscale.training.packed import train_packed

        configs = [TrainConfig.from_dict(config) for _, config in runs]
        point = None if on_point is None else (lambda i, p: on_point(runs[i][0], _point_info(p)))
        train_packed(configs, on_point=point, on_record=record, stop_event=stop_event,
                     auto_precision=auto_precision)
    except (Exception, KeyboardInterrupt) as exc:
        for run_id, config in runs:
            if run_id not in reported:
                on_record(run_id, plain(dict(_failed(run_id, config, exc), run_id=run_id)))


def _point_info(p: Any) -> dict[str, Any]:
    loss = p.test_loss.get(next(iter(p.test_loss), ""), p.train_loss) if p.test_loss else p.train_loss
    return {"tokens": p.tokens, "loss": loss, "train_loss": p.train_loss, "step": p.step,
            "wall_time_s": p.wall_time_s}


def _stopped(out: dict[str, Any], stop_event: Any) -> dict[str, Any]:
    if stop_event is not None and stop_event.is_set() and out["status"] not in (
            "finished", "early_stopped", "diverged", "failed"):
        out["status"] = STOPPED
    return out


def _failed(run_id: str, config: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """The record of a run that raised: ``failed``, or ``interrupted`` for a Ctrl-C or a full disk
    (the disk is not the run's fault: ``stop_sweep`` then says why the sweep must stop)."""
    stop_sweep = str(exc) if is_disk_full(exc) else None
    if isinstance(exc, KeyboardInterrupt) or stop_sweep:
        status, error = STOPPED, stop_sweep or "interrupted"
    else:
        status = "failed"
        detail = "" if isinstance(exc, LmscaleError) else "\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        error = f"{type(exc).__name__}: {exc}{detail}"
    out = RunRecord(run_id=run_id, config=config, status=status, error=error,
                    versions={"lmscale": __version__, "python": platform.python_version()}).to_dict()
    if stop_sweep:
        out["stop_sweep"] = stop_sweep
    return out


def plain(data: Any) -> Any:
    """JSON types only (str subclasses such as torch's version string, numpy scalars
    become str/float): the parent unpickles records without importing torch."""
    return json.loads(json.dumps(data, default=_to_plain))


def _to_plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if hasattr(value, "tolist"):  # numpy/torch arrays and scalars
        return value.tolist()
    return str(value)
