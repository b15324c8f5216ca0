"""What every executor shares: the store lock, which runs remain, and writing results.

One sweep process at a time writes a store: ``<store>.lock`` is held with
``flock`` (the kernel releases it when the process dies, even by SIGKILL).
Runs left ``running`` by a process that died are marked ``interrupted``;
they resume from their checkpoints in ``<store>.runs/<run_id>/``.

A full disk (the store's or a checkpoint's) stops the sweep: the session
records the first such error in ``fatal``, the executor stops the workers
(their runs keep their last checkpoints) and :func:`lmscale.sweeps.run_sweep`
raises it. Nothing written before is lost: store writes are transactions,
checkpoints are written to a temporary file and renamed.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmscale.accounting import embedding_params, forward_flops_per_token, non_embedding_params
from lmscale.errors import DiskFullError, LmscaleError
from lmscale.store import DONE_STATUSES, Store
from lmscale.sweeps.progress import ProgressTable
from lmscale.sweeps.spec import PlannedRun, Study


def checkpoint_root(store_path: str | Path) -> Path:
    """``<store>.runs``: one checkpoint directory per run id beside the store."""
    path = Path(store_path)
    return path.with_name(path.name + ".runs")


@dataclass
class SweepResult:
    """What a ``sweep run`` did.

    Attributes:
        store: the store file.
        counts: statuses of the study's runs in the store afterwards.
        trained: run ids trained (or resumed) by this call.
        skipped: run ids already done before this call.
        interrupted: the sweep was stopped (signal) before all runs ended.
        precision: what ``precision = "auto"`` meant for the study, and why
            (empty when no run trained or none asks for ``auto``).
    """

    store: Path
    counts: dict[str, int] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    precision: str = ""


def study_precision(study: Study, store: Store | None, device_type: str,
                    threads: int | None = None) -> tuple[str | None, str]:
    """``(precision, why)``: what ``precision = "auto"`` means for every run of ``study``.

    A study never mixes precisions: the one its runs in ``store`` were
    trained in, else the one this machine chooses for the study's largest
    run (:func:`lmscale.training.precision.resolve_elsewhere`). ``None``
    when no run asks for ``auto``; a store whose ``auto`` runs of the study
    were trained in two precisions is an error.
    """
    auto = [r for r in study.runs if r.config.precision == "auto"]
    if not auto:
        return None, ""
    recorded = store.precisions([r.run_id for r in auto]) if store is not None else {}
    kinds = sorted(set(recorded.values()))
    if len(kinds) > 1:
        example = {k: next(r for r, p in recorded.items() if p == k) for k in kinds}
        raise LmscaleError(
            f"{store.path if store else ''}: runs of study {study.name!r} with precision = 'auto' were "
            f"trained in {' and '.join(f'{k} (e.g. run {v})' for k, v in example.items())}; set precision "
            "explicitly in the sweep file to continue it")
    if kinds:
        return kinds[0], f"{kinds[0]} (the study's runs in the store)"
    from lmscale.training.precision import resolve_elsewhere

    largest = max(auto, key=lambda r: r.C)
    precision, reason = resolve_elsewhere(device_type, largest.config.model, threads,
                                         largest.config.batch_tokens)
    return precision, f"{precision} ({reason}; for the study's largest run)"


class StoreLock:
    """Exclusive ``flock`` on ``<store>.lock`` naming the holder's pid."""

    def __init__(self, store_path: Path):
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fh: Any = None

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise LmscaleError(
                f"{self.path.with_suffix('')}: another 'lmscale sweep run' (pid {holder}) is writing this store"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @staticmethod
    def held(store_path: Path) -> bool:
        """Whether some process holds the lock now."""
        path = store_path.with_name(store_path.name + ".lock")
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class Session:
    """A sweep over one store: the parent's (or driver's) side of every executor."""

    def __init__(self, study: Study, store: Store, data_dir: Path, progress: ProgressTable):
        self.study = study
        self.store = store
        self.data_dir = data_dir
        self.progress = progress
        self.runs = study.by_id()
        self.result = SweepResult(store=store.path)
        #: Why the sweep must stop (a full disk), or None.
        self.fatal: str | None = None

    def _stop(self, message: str) -> None:
        if self.fatal is None:
            self.fatal = message
            self.progress.message(f"lmscale sweep: stopping (the runs keep their last checkpoints): {message}")

    def warn(self, message: str) -> None:
        self.progress.message(f"lmscale sweep: warning: {message}")

    def todo(self, retry_failed: bool = False) -> list[PlannedRun]:
        """Runs not done yet, largest compute first (better packing of workers)."""
        self.store.set_status_where("running", "interrupted")  # left by a process that died
        status = self.store.status_of()
        done = set(DONE_STATUSES) - ({"failed"} if retry_failed else set())
        todo = []
        for run in self.study.runs:
            label = f"{run.group} {run.config.model.architecture} N={run.N:,} D={run.D:,.0f}"
            self.progress.add(run.run_id, label, run.D)
            if status.get(run.run_id) in done:
                self.result.skipped.append(run.run_id)
                self.progress.runs[run.run_id].status = status[run.run_id]
            else:
                todo.append(run)
        return sorted(todo, key=lambda r: -r.C)

    def study_precision(self, device_type: str, threads: int | None = None) -> str | None:
        """What ``precision = "auto"`` means for every run of this study (``None``: no run asks);
        see :func:`study_precision`."""
        precision, note = study_precision(self.study, self.store, device_type, threads)
        self.result.precision = note
        return precision

    def executable(self, run: PlannedRun, threads: int | None) -> dict[str, Any]:
        ckpt = checkpoint_root(self.store.path) / run.run_id
        return run.executable(self.data_dir, ckpt, threads).to_dict()

    # -- events ------------------------------------------------------------
    def _mark(self, run_id: str, status: str) -> None:
        """Set a run's status, creating its row if new; a full disk stops the sweep instead."""
        run = self.runs[run_id]
        try:
            self.store.mark(run_id, status, spec=run.config.to_dict(), study=self.study.name,
                            group=run.group, rule=run.rule, data_dir=str(self.data_dir))
        except DiskFullError as exc:  # a run left 'running' is marked interrupted by the next sweep
            self._stop(str(exc))
        self.progress.update(run_id, status=status)

    def started(self, run_id: str) -> None:
        self._mark(run_id, "running")

    def point(self, run_id: str, info: dict[str, Any]) -> None:
        tokens, seconds = int(info.get("tokens", 0)), float(info.get("wall_time_s") or 0.0)
        self.progress.update(run_id, tokens=tokens, loss=info.get("loss"),
                             tokens_per_second=tokens / seconds if seconds > 0 else None)

    def finished(self, run_id: str, record: dict[str, Any]) -> None:
        """Write a worker's record (the only place results enter the store)."""
        run = self.runs[run_id]
        record = dict(record, run_id=run_id)
        if record.get("stop_sweep"):  # the worker hit a full disk: its last checkpoint is intact
            self._stop(str(record["stop_sweep"]))
        if record.get("status") == "interrupted":
            self.interrupted(run_id)
            return
        if not record.get("non_embedding_params"):  # a run that failed before the trainer counted
            spec = run.config.model
            record.update(non_embedding_params=non_embedding_params(spec),
                          embedding_params=embedding_params(spec), flops_per_token=forward_flops_per_token(spec),
                          batch_tokens=run.config.batch_tokens)
        try:
            self.store.write_record(record, spec=run.config.to_dict(), study=self.study.name, group=run.group,
                                    rule=run.rule, data_dir=str(self.data_dir))
        except DiskFullError as exc:  # the record stays in the run's checkpoint: the next sweep reads it
            self._stop(str(exc))
            self.progress.update(run_id, status="interrupted")
            return
        self.result.trained.append(run_id)
        final = record.get("final_test_loss") or {}
        loss = final.get(record.get("train_distribution") or "", next(iter(final.values()), None))
        note = (record.get("error") or "").splitlines()[0][:80] if record.get("status") == "failed" else ""
        self.progress.update(run_id, status=record.get("status", "failed"), tokens=int(record.get("tokens") or 0),
                             loss=loss, tokens_per_second=record.get("tokens_per_second") or None, note=note)

    def interrupted(self, run_id: str) -> None:
        self._mark(run_id, "interrupted")

    def close(self) -> SweepResult:
        status = self.store.status_of()
        counts: dict[str, int] = {}
        for run_id in self.runs:
            s = status.get(run_id, "pending")
            counts[s] = counts.get(s, 0) + 1
        self.result.counts = counts
        self.progress.close()
        return self.result
