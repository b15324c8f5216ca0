"""Sweeps: a TOML study -> planned runs -> executors -> one SQLite store.

>>> from lmscale.sweeps import load_study, run_sweep
>>> study = load_study("studies/smoke.toml")          # validated and expanded
>>> result = run_sweep(study, "smoke.sqlite")          # local worker processes
>>> result.counts
{'finished': 6}

Running the same study again skips finished runs and resumes interrupted
ones from their checkpoints (``<store>.runs/<run_id>/``).
"""

from __future__ import annotations

from pathlib import Path

from lmscale.errors import DiskFullError, LmscaleError
from lmscale.sweeps.data import check_identity
from lmscale.sweeps.session import Session, StoreLock, SweepResult, checkpoint_root
from lmscale.sweeps.spec import RULES, PlannedRun, Study, load_study

EXECUTORS = ("local", "ray")


def run_sweep(
    study: Study | str | Path,
    store: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    pack: bool | None = None,
) -> SweepResult:
    """Train every run of ``study`` not yet done in ``store``.

    Args:
        study: a :class:`Study` or the path of a sweep file.
        store: the SQLite results file (created if missing).
        executor: ``local`` (worker processes here) or ``ray``.
        workers, threads: local executor: runs in parallel and torch threads
            per run (defaults: runs x threads = CPUs).
        address, cpus_per_run, gpus_per_run: Ray: the cluster (``None``:
            start a local one or use the initialised one) and each task's
            resources (``gpus_per_run=None``: 1 if the runs ask for CUDA).
        retry_failed: train runs recorded as ``failed`` again.
        progress: live progress table on stderr.
        pack: local executor: train runs of one shape together as one task
            (``None``: where it pays, :mod:`lmscale.sweeps.packing`).
    """
    from lmscale.extras import TRAIN_MODULES, require
    from lmscale.store import Store
    from lmscale.sweeps.progress import ProgressTable

    require(*TRAIN_MODULES, what="training a sweep")
    if executor not in EXECUTORS:
        raise LmscaleError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise LmscaleError(f"--workers {workers}: expected a positive number of worker processes")
    if not isinstance(study, Study):
        study = load_study(study)
    store_path = Path(store)
    with StoreLock(store_path):
        data_dir = study.data.resolve(progress=progress)
        db = Store(store_path)
        try:
            check_identity(study.data, db, data_dir)
            session = Session(study, db, data_dir, ProgressTable(enabled=progress))
            todo = session.todo(retry_failed=retry_failed)
            if executor == "local":
                from lmscale.sweeps.local import run_local

                run_local(session, todo, workers=workers, threads=threads, pack=pack)
            else:
                from lmscale.sweeps.ray_executor import run_ray

                run_ray(session, todo, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
            result = session.close()
            if session.fatal:
                raise DiskFullError(f"{session.fatal}; the sweep stopped: free some space and run it again "
                                    "(finished runs are kept, the others resume from their last checkpoints)")
            return result
        finally:
            db.close()


__all__ = [
    "EXECUTORS", "RULES", "PlannedRun", "Study", "SweepResult", "checkpoint_root", "load_study", "run_sweep",
]
