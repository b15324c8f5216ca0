"""The local executor: runs in parallel worker processes on this machine.

- ``K`` worker processes (spawned, so the parent never imports torch), each
  training one task at a time with ``threads`` torch threads: a run, or a
  pack of runs of one shape trained together (:mod:`lmscale.sweeps.packing`);
  by default ``K = min(CPUs, tasks)`` and ``threads = CPUs // K`` so tasks x
  threads = cores (on a machine with NVIDIA GPUs: one worker per GPU).
- ``precision = "auto"`` means one precision for the whole study
  (``Session.study_precision``), handed to every task.
- Workers send events (start, learning-curve point, record) to the parent,
  the ONLY writer of the store.
- Workers run with ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says
  otherwise: spinning OpenMP threads made a 2-thread run of the smoke study
  10x slower (200 s instead of 19 s of CPU) on a machine busy with other work.
- SIGINT/SIGTERM: the parent asks the workers to stop (the trainer
  checkpoints and returns); a second signal kills them. A worker whose
  parent dies (even by SIGKILL) is killed by the kernel (``PR_SET_PDEATHSIG``)
  or exits at its next check of the parent, so a re-run never races an orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.sweeps.packing import packing_pays, plan_packs
from lmscale.sweeps.session import Session
from lmscale.sweeps.spec import PlannedRun
from lmscale.sweeps.worker import train_one, train_pack
from lmscale.training.hardware import prefer_passive_openmp

#: Seconds between two progress events a worker sends for one run.
POINT_INTERVAL_S = 0.5

#: Seconds the parent waits for workers to checkpoint after a stop request.
STOP_GRACE_S = 120.0


def gpu_count() -> int:
    """NVIDIA GPUs visible to the driver (without importing torch)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def plan_workers(n_runs: int, cpus: int, workers: int | None = None, threads: int | None = None,
                 gpus: int = 0) -> tuple[int, int]:
    """``(workers, threads per run)`` with workers x threads = cpus by default."""
    if workers is None:
        workers = min(gpus, n_runs) if gpus else min(cpus, n_runs)
    workers = max(1, workers)
    if threads is None:
        threads = max(1, cpus // workers)
    return workers, threads


def _die_with_parent(parent_pid: int) -> None:
    """Exit when the parent goes away: kernel signal on Linux, plus a polling thread."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _throttled(events: Any, slot: int, run_id: str) -> Any:
    """A learning-curve callback that sends at most one event per ``POINT_INTERVAL_S``."""
    last = [0.0]

    def on_point(info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= POINT_INTERVAL_S:
            last[0] = now
            events.put(("point", slot, run_id, info))

    return on_point


def _worker_main(slot: int, tasks: Any, events: Any, stop: Any, parent_pid: int) -> None:
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which on a machine
    # shared with other work costs a multi-threaded run up to 10x (a user's setting wins).
    prefer_passive_openmp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    while not stop.is_set():
        task = tasks.get()
        if task is None:
            break
        runs, precision = task
        for run_id, _ in runs:
            events.put(("start", slot, run_id, None))
        if len(runs) == 1:
            run_id, config = runs[0]
            record = train_one(run_id, config, on_point=_throttled(events, slot, run_id), stop_event=stop,
                               auto_precision=precision)
            events.put(("done", slot, run_id, record))
            continue
        points = {run_id: _throttled(events, slot, run_id) for run_id, _ in runs}
        train_pack(runs, on_point=lambda run_id, info, points=points: points[run_id](info),
                   on_record=lambda run_id, record: events.put(("done", slot, run_id, record)),
                   stop_event=stop, auto_precision=precision)
    events.put(("exit", slot, None, None))


def plan_tasks(todo: list[PlannedRun], cpus: int, workers: int | None, threads: int | None, gpus: int,
               pack: bool | None = None) -> tuple[list[list[PlannedRun]], int, int]:
    """``(tasks, workers, threads)``: runs packed where packing pays (``pack``: ``None`` = decide by
    :func:`lmscale.sweeps.packing.packing_pays`) and the workers that train the tasks."""
    n_workers, n_threads = plan_workers(len(todo), cpus, workers, threads, gpus)
    if pack is None:
        pack = packing_pays("cuda" if gpus else "cpu", n_threads)
    if not pack:
        return [[run] for run in todo], n_workers, n_threads
    packs = plan_packs(todo)
    return (packs, *plan_workers(len(packs), cpus, workers, threads, gpus))


def run_local(session: Session, todo: list[PlannedRun], *, workers: int | None = None,
              threads: int | None = None, pack: bool | None = None) -> None:
    """Train ``todo`` in worker processes; results go to the store through ``session``.

    ``pack``: train runs of one shape together (``None``: where it pays, see
    :mod:`lmscale.sweeps.packing`).
    """
    if not todo:
        return
    from lmscale.training.hardware import available_cpus

    gpus = gpu_count() if any(r.config.device != "cpu" for r in todo) else 0
    packs, n_workers, n_threads = plan_tasks(todo, available_cpus(), workers, threads, gpus, pack)
    precision = session.study_precision("cuda" if gpus else "cpu", n_threads)
    ctx = mp.get_context("spawn")
    tasks, events, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    for pack in packs:
        tasks.put(([(run.run_id, session.executable(run, n_threads)) for run in pack], precision))
    for _ in range(n_workers):
        tasks.put(None)

    procs: dict[int, Any] = {}

    def start(slot: int) -> None:
        env_gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus:
            visible = (env_gpu or ",".join(map(str, range(gpus)))).split(",")
            os.environ["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)]
        try:
            proc = ctx.Process(target=_worker_main, args=(slot, tasks, events, stop, os.getpid()),
                               name=f"lmscale-worker-{slot}", daemon=True)
            proc.start()
        finally:
            if gpus:
                if env_gpu is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = env_gpu
        procs[slot] = proc

    signals = {"count": 0, "since": 0.0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        signals["since"] = signals["since"] or time.monotonic()
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    active: dict[int, set[str]] = {}  # worker slot -> runs it is training
    exited: set[int] = set()
    started_any = [False]

    def handle(kind: str | None, slot: int, run_id: str, payload: Any) -> None:
        if kind == "start":
            started_any[0] = True
            active.setdefault(slot, set()).add(run_id)
            session.started(run_id)
        elif kind == "point":
            session.point(run_id, payload)
        elif kind == "done":
            active.get(slot, set()).discard(run_id)
            session.finished(run_id, payload)
        elif kind == "exit":
            exited.add(slot)

    try:
        for slot in range(n_workers):
            start(slot)
        while len(exited) < len(procs):
            try:
                handle(*events.get(timeout=0.25))
            except queue.Empty:
                pass
            for slot, proc in list(procs.items()):
                if slot in exited or proc.is_alive():
                    continue
                proc.join()
                with contextlib.suppress(queue.Empty):  # what it sent just before it died
                    while True:
                        handle(*events.get_nowait())
                if slot in exited:
                    continue
                lost = sorted(active.pop(slot, set()))
                for run_id in lost:
                    if stop.is_set():
                        session.interrupted(run_id)
                    else:
                        session.finished(run_id, {"status": "failed", "config": {}, "run_id": run_id,
                                                  "error": f"worker process died (exit code {proc.exitcode})"})
                if stop.is_set():
                    exited.add(slot)
                    continue
                if not lost and not started_any[0]:
                    raise LmscaleError(f"worker processes exit before any run (exit code {proc.exitcode}); "
                                       "run a sweep from a script only under if __name__ == '__main__'")
                start(slot)  # its sentinel is still queued for the replacement
            late = signals["since"] and time.monotonic() - signals["since"] > STOP_GRACE_S
            if signals["count"] >= 2 or late:
                for proc in procs.values():
                    if proc.is_alive():
                        proc.kill()
            session.progress.draw()
        session.result.interrupted = stop.is_set()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for proc in procs.values():
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        for run_ids in active.values():
            for run_id in run_ids:
                session.interrupted(run_id)
        tasks.cancel_join_thread()
        events.cancel_join_thread()
