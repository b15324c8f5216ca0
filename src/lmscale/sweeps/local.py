"""The local executor: runs in parallel worker processes on this machine.

- ``K`` worker processes (spawned, so the parent never imports torch), each
  training one run at a time with ``threads`` torch threads; by default
  ``K = min(CPUs, runs)`` and ``threads = CPUs // K`` so runs x threads =
  cores (on a machine with NVIDIA GPUs: one worker per GPU).
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
  held and hang the others. The parent hands an idle worker its next run,
  and ``None`` when none is left or the sweep stops.
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
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.sweeps.session import Session
from lmscale.sweeps.spec import PlannedRun
from lmscale.sweeps.worker import train_one
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
        run_id, config = task
        events.send(("start", run_id, None))
        record = train_one(run_id, config, on_point=_throttled(events, run_id), stop_event=stop)
        events.send(("done", run_id, record))
    events.send(("exit", None, None))


@dataclass
class _Worker:
    """The parent's side of one worker: its process, its pipes, the run it trains."""

    proc: Any
    tasks: Any  # parent -> worker
    events: Any  # worker -> parent
    run: str | None = None
    idle: bool = False
    exited: bool = False


def run_local(session: Session, todo: list[PlannedRun], *, workers: int | None = None,
              threads: int | None = None) -> None:
    """Train ``todo`` in worker processes; results go to the store through ``session``."""
    if not todo:
        return
    from lmscale.training.hardware import available_cpus

    gpus = gpu_count() if any(r.config.device != "cpu" for r in todo) else 0
    n_workers, n_threads = plan_workers(len(todo), available_cpus(), workers, threads, gpus)
    ctx = mp.get_context("spawn")
    stop = StopFlag(ctx)
    configs = {run.run_id: session.executable(run, n_threads) for run in todo}
    pending = deque(run.run_id for run in todo)  # not yet handed to a worker
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
        """Give an idle worker its next run, or release it when there is nothing left."""
        if not w.idle:
            return
        with contextlib.suppress(OSError):
            if stop.is_set() or not remaining:
                w.tasks.send(None)
                w.idle = False
            elif pending:
                run_id = pending.popleft()
                w.tasks.send((run_id, configs[run_id]))
                w.idle, w.run = False, run_id

    signals = {"count": 0, "since": 0.0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        signals["since"] = signals["since"] or time.monotonic()
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started_any = [False]

    def handle(w: _Worker, kind: str, run_id: str | None, payload: Any) -> None:
        if kind in ("ready", "done"):
            w.idle = True
        if kind == "start":
            started_any[0] = True
            w.run = run_id
            session.started(run_id)
        elif kind == "point":
            session.point(run_id, payload)
        elif kind == "done":
            w.run = None
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

    def worker_died(run_id: str, code: int | None) -> None:
        """Queue the run of a dead worker again (it resumes from its checkpoint), or give up."""
        if stop.is_set():
            remaining.discard(run_id)
            session.interrupted(run_id)
            return
        n = restarts.get(run_id, 0)
        if n < MAX_RESTARTS:
            restarts[run_id] = n + 1
            session.warn(f"the worker training run {run_id} died (exit code {code}); the run resumes "
                         f"from its last checkpoint in a new worker (restart {n + 1} of {MAX_RESTARTS})")
            session.interrupted(run_id)
            pending.appendleft(run_id)
            return
        remaining.discard(run_id)
        session.warn(f"the worker training run {run_id} died {n + 1} times (last exit code {code}); "
                     "the run is recorded as failed")
        session.finished(run_id, {"status": "failed", "config": {}, "run_id": run_id,
                                  "error": f"worker process died {n + 1} times (exit code {code})"})

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
                lost, w.run = w.run, None
                if lost is not None:
                    worker_died(lost, w.proc.exitcode)
                if stop.is_set() or not remaining:  # nothing for a replacement to do
                    continue
                if lost is None and not started_any[0]:
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
            if w.run is not None:
                session.interrupted(w.run)
            for conn in (w.events, w.tasks):
                with contextlib.suppress(OSError):
                    conn.close()
