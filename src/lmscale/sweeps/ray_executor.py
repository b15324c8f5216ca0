"""The Ray executor: each run is a Ray task with its resource needs.

``ray.init(address=...)`` joins an existing cluster (``auto`` or
``ray://host:10001``) or, with no address, starts a local one; if Ray is
already initialised in this process it is used as is. Each task asks for
``num_cpus = cpus_per_run`` (its torch threads) and ``num_gpus =
gpus_per_run``; it returns the run record as a dict to the driver, the only
writer of the store. Learning-curve progress comes back through a Ray queue.

The data directory and the checkpoint directory (``<store>.runs``) must be
reachable at the same paths on every node (a shared filesystem), as on a
single machine. A task whose worker process dies (OOM killer, a lost node)
is retried by Ray up to ``MAX_RESTARTS`` times and resumes from its
checkpoint; a full disk stops the sweep as with the local executor.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.sweeps.local import MAX_RESTARTS
from lmscale.sweeps.session import Session
from lmscale.sweeps.spec import PlannedRun
from lmscale.sweeps.worker import train_one
from lmscale.training.hardware import openmp_env


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is an optional extra
        raise LmscaleError("--executor ray needs Ray: pip install 'lmscale[ray]'") from None
    return ray


def _task(run_id: str, config: dict[str, Any], events: Any, precision: str | None = None) -> dict[str, Any]:
    """Body of the Ray task: train, reporting start and curve points to the driver's queue."""
    last = [0.0]

    def put(kind: str, info: Any) -> None:
        try:
            events.put_nowait((kind, run_id, info))
        except Exception:  # progress is best effort; the record is what matters
            pass

    def on_point(info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            put("point", info)

    put("start", None)
    return train_one(run_id, config, on_point=on_point, auto_precision=precision)


def run_ray(session: Session, todo: list[PlannedRun], *, address: str | None = None,
            cpus_per_run: float = 1, gpus_per_run: float | None = None) -> None:
    """Train ``todo`` as Ray tasks; results go to the store through ``session``."""
    if not todo:
        return
    ray = _ray()
    from ray.util.queue import Queue

    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise LmscaleError(f"--address {address!r}: cannot connect to a Ray cluster ({exc})") from None
    if gpus_per_run is None:
        gpus_per_run = 1 if any(r.config.device == "cuda" for r in todo) else 0
    threads = max(1, int(cpus_per_run))
    precision = session.study_precision("cuda" if gpus_per_run else "cpu", threads)
    events = Queue(maxsize=10_000)
    # the tasks' workers start torch with OpenMP threads that sleep when idle, as the local
    # executor's do: spinning threads of other processes steal the cores of a shared machine
    remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=MAX_RESTARTS,
                        runtime_env={"env_vars": openmp_env()})(_task)
    pending = {remote.remote(run.run_id, session.executable(run, threads), events, precision): run.run_id
               for run in todo}
    started: set[str] = set()
    stopping = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        stopping["count"] += 1

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def drain() -> None:
        while not events.empty():
            try:
                kind, run_id, info = events.get_nowait()
            except Exception:
                return
            if kind == "start" and run_id not in started:
                started.add(run_id)
                session.started(run_id)
            elif kind == "point" and run_id in started:
                session.point(run_id, info)

    try:
        while pending and not stopping["count"] and not session.fatal:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            drain()
            for ref in done:
                run_id = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # the task itself crashed (worker died, OOM, ...)
                    record = {"status": "failed", "config": {}, "error": f"Ray task failed: {exc}"}
                if run_id not in started:
                    started.add(run_id)
                    session.started(run_id)
                session.finished(run_id, record)
            session.progress.draw()
        if stopping["count"] or session.fatal:
            session.result.interrupted = True
            for ref, run_id in pending.items():
                ray.cancel(ref, force=False)
                if run_id in started:
                    session.interrupted(run_id)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        try:
            ray.kill(events.actor)
        except Exception:
            pass
