"""The local executor: runs in parallel worker processes on this machine.

- ``K`` worker processes (spawned, so the parent never imports torch), each
  training one task at a time with ``threads`` torch threads: a run, or a
  pack of runs of one shape trained together (:mod:`lmscale.sweeps.packing`); by default
  ``K = min(CPUs, runs)`` and ``threads = CPUs // K`` so runs x threads =
  cores (on a machine with NVIDIA GPUs: one worker per GPU).
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
- A worker that dies while the parent lives (the OOM killer's SIGKILL, a
  crash) is replaced, and its run is queued again: it resumes from its
  last checkpoint, up to :data:`MAX_RESTARTS` times, then it is recorded
  as ``failed`` with the exit code. A warning says so each time.
- Each worker has its own pair of pipes (tasks in, events out) and the stop
  request is a lock-free shared flag: no lock is shared between processes,
  so a worker killed at any instant (even mid-message) cannot leave one
  held and hang the others. The parent hands an idle worker its next task,
  and ``None`` when none is left or the sweep stops. The runs of a pack
  whose worker died are queued again together (each resumes from its own
  checkpoint).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
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

#: Times a run whose worker process died is queued again (resuming from its checkpoint).
MAX_RESTARTS = 2


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


class StopFlag:
    """A stop request shared with the workers: one byte of shared memory, no lock.

    (An ``mp.Event`` takes a lock on every ``is_set``; a worker killed while
    holding it would block the parent's ``set`` forever.)
    """

    def __init__(self, ctx: Any):
        self._flag = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def is_set(self) -> bool:
        return bool(self._flag.value)


def _throttled(events: Any, run_id: str) -> Any:
    """A learning-curve callback that sends at most one event per ``POINT_INTERVAL_S``."""
    last = [0.0]

    def on_point(info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= POINT_INTERVAL_S:
            last[0] = now
            events.send(("point", run_id, info))

    return on_point


def _worker_main(tasks: Any, events: Any, stop: StopFlag, parent_pid: int) -> None:
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which on a machine
    # shared with other work costs a multi-threaded run up to 10x (a user's setting wins).
    prefer_passive_openmp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    events.send(("ready", None, None))
    while not stop.is_set():
        try:
            task = tasks.recv()
        except EOFError:  # the parent closed the pipe
            break
        if task is None:
            break
        runs, precision = task
        for run_id, _ in runs:
            events.send(("start", run_id, None))
        if len(runs) == 1:
            run_id, config = runs[0]
            record = train_one(run_id, config, on_point=_throttled(events, run_id), stop_event=stop,
                               auto_precision=precision)
            events.send(("done", run_id, record))
        else:
            points = {run_id: _throttled(events, run_id) for run_id, _ in runs}
            train_pack(runs, on_point=lambda run_id, info, points=points: points[run_id](info),
                       on_record=lambda run_id, record: events.send(("done", run_id, record)),
                       stop_event=stop, auto_precision=precision)
        events.send(("ready", None, None))
    events.send(("exit", None, None))


@dataclass
class _Worker:
    """The parent's side of one worker: its process, its pipes, the runs of its task not yet done."""

    proc: Any
    tasks: Any  # parent -> worker
    events: Any  # worker -> parent
    runs: list[str] = field(default_factory=list)
    idle: bool = False
    exited: bool = False


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
    stop = StopFlag(ctx)
    configs = {run.run_id: session.executable(run, n_threads) for run in todo}
    pending = deque([run.run_id for run in p] for p in packs)  # tasks not yet handed to a worker
    remaining = set(configs)  # pending or training: the workers are released once it is empty
    restarts: dict[str, int] = {}
    pool: dict[int, _Worker] = {}

    def start(slot: int) -> None:
        env_gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus:
            visible = (env_gpu or ",".join(map(str, range(gpus)))).split(",")
            os.environ["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)]
        task_out, task_in = ctx.Pipe(duplex=False)  # (receiving end, sending end)
        event_out, event_in = ctx.Pipe(duplex=False)
        try:
            proc = ctx.Process(target=_worker_main, args=(task_out, event_in, stop, os.getpid()),
                               name=f"lmscale-worker-{slot}", daemon=True)
            proc.start()
        finally:
            if gpus:
                if env_gpu is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = env_gpu
        task_out.close()  # the worker's ends live in the worker now
        event_in.close()
        pool[slot] = _Worker(proc, task_in, event_out)

    def feed(w: _Worker) -> None:
        """Give an idle worker its next task, or release it when there is nothing left."""
        if not w.idle:
            return
        with contextlib.suppress(OSError):
            if stop.is_set() or not remaining:
                w.tasks.send(None)
                w.idle = False
            elif pending:
                task = pending.popleft()
                w.tasks.send(([(run_id, configs[run_id]) for run_id in task], precision))
                w.idle, w.runs = False, list(task)

    signals = {"count": 0, "since": 0.0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        signals["since"] = signals["since"] or time.monotonic()
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started_any = [False]

    def handle(w: _Worker, kind: str, run_id: str | None, payload: Any) -> None:
        if kind == "ready":
            w.idle = True
        elif kind == "start":
            started_any[0] = True
            session.started(run_id)
        elif kind == "point":
            session.point(run_id, payload)
        elif kind == "done":
            if run_id in w.runs:
                w.runs.remove(run_id)
            remaining.discard(run_id)
            session.finished(run_id, payload)
        elif kind == "exit":
            w.exited = True

    def drain(w: _Worker) -> None:
        """Everything the worker has sent; a cut message or a closed pipe ends it."""
        try:
            while w.events.poll():
                handle(w, *w.events.recv())
        except (EOFError, OSError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
            if not isinstance(exc, EOFError | OSError):  # a message cut short by the worker's death
                w.proc.join(timeout=5)

    def worker_died(lost: list[str], code: int | None) -> None:
        """Queue the runs of a dead worker's task again, together (each resumes from its checkpoint),
        or give up on those that died too often."""
        again = []
        for run_id in lost:
            n = restarts.get(run_id, 0)
            if stop.is_set():
                remaining.discard(run_id)
                session.interrupted(run_id)
            elif n < MAX_RESTARTS:
                restarts[run_id] = n + 1
                session.warn(f"the worker training run {run_id} died (exit code {code}); the run resumes "
                             f"from its last checkpoint in a new worker (restart {n + 1} of {MAX_RESTARTS})")
                session.interrupted(run_id)
                again.append(run_id)
            else:
                remaining.discard(run_id)
                session.warn(f"the worker training run {run_id} died {n + 1} times (last exit code {code}); "
                             "the run is recorded as failed")
                session.finished(run_id, {"status": "failed", "config": {}, "run_id": run_id,
                                          "error": f"worker process died {n + 1} times (exit code {code})"})
        if again:
            pending.appendleft(again)

    try:
        for slot in range(n_workers):
            start(slot)
        while not all(w.exited for w in pool.values()):
            live = [w for w in pool.values() if not w.exited]
            wait([w.events for w in live] + [w.proc.sentinel for w in live], timeout=0.25)
            for w in live:
                drain(w)
            if session.fatal and not stop.is_set():  # a full disk: every worker checkpoints and stops
                stop.set()
            for slot, w in list(pool.items()):
                if w.exited or w.proc.is_alive():
                    continue
                w.proc.join()
                drain(w)  # what it sent just before it died
                w.events.close()
                w.tasks.close()
                if w.exited:
                    continue
                w.exited = True
                lost, w.runs = w.runs, []
                if lost:
                    worker_died(lost, w.proc.exitcode)
                if stop.is_set() or not remaining:  # nothing for a replacement to do
                    continue
                if not lost and not started_any[0]:
                    raise LmscaleError(f"worker processes exit before any run (exit code {w.proc.exitcode}); "
                                       "run a sweep from a script only under if __name__ == '__main__'")
                start(slot)  # a replacement, for the run queued again and those still waiting
            for w in pool.values():
                if not w.exited:
                    feed(w)
            late = signals["since"] and time.monotonic() - signals["since"] > STOP_GRACE_S
            if signals["count"] >= 2 or late:
                for w in pool.values():
                    if w.proc.is_alive():
                        w.proc.kill()
            session.progress.draw()
        session.result.interrupted = stop.is_set()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for w in pool.values():
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join(timeout=5)
            for run_id in w.runs:
                session.interrupted(run_id)
            for conn in (w.events, w.tasks):
                with contextlib.suppress(OSError):
                    conn.close()
