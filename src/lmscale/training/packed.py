"""Runs of one shape trained at once: one batched forward/backward pass for all of them.

A study trains many runs of the same shape that differ only in their data
set size, seed, learning rate or schedule ([K]'s L(N, D) grid, seeds,
learning-rate variants). :func:`train_packed` steps them together: each
step stacks their weights (:func:`lmscale.models.packed.packed_hidden_states`)
so every kernel launch serves all of them, while each run keeps its own
model, AdamW state, learning-rate schedule, gradient clipping, noise-scale
estimate, early stopping, curve, checkpoints and record, exactly the
objects a lone run has (``trainer._Run``). A run that ends (its budget, early
stopping, divergence) leaves the pack and the others go on.

Each run's checkpoint is that of a lone run, so a packed run resumes alone
or packed, and a lone one packed. Packed and lone runs agree to rounding:
the batched matmuls add in another order (gradients differ by about 1e-6
relative), so curves agree to about 1e-5 (tested), not bit for bit.

Timing: the pack's step time is every member's training time, so a
member's ``tokens_per_second`` and ``mfu`` are its share of the pack's
(their sums are the pack's); ``packed_with`` in the record says how many
runs the pack held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lmscale.errors import LmscaleError
from lmscale.models.packed import check_packable, packed_hidden_states
from lmscale.training import distributed
from lmscale.training.config import TrainConfig
from lmscale.training.hardware import available_memory, configure_threads, resolve_device
from lmscale.training.loss import linear_cross_entropy, linear_cross_entropy_per_row
from lmscale.training.plan import RUNTIME_BYTES
from lmscale.training.record import CurvePoint, RunRecord
from lmscale.training.runtime import progress_bar, sync
from lmscale.training.trainer import Outcome, _Run, open_data


def train_packed(configs: Sequence[TrainConfig], *, progress: bool = False,
                 on_point: Callable[[int, CurvePoint], None] | None = None,
                 on_record: Callable[[int, RunRecord], None] | None = None,
                 stop_event: threading.Event | None = None, data: Any = None,
                 auto_precision: str | None = None) -> list[RunRecord]:
    """Train ``configs`` (runs of one ``TrainConfig.pack_key()``) together; their records, in order.

    ``on_point(i, point)`` and ``on_record(i, record)`` report run ``i``'s
    curve points and its record the moment it ends (the others may go on).
    A run whose set-up fails (an :class:`LmscaleError`: too little data, a
    bad field) gets a ``failed`` record and the others train without it.
    ``stop_event`` checkpoints every run still training and returns them as
    ``interrupted``. The other arguments are those of :func:`lmscale.training.train`.
    """
    configs = list(configs)
    keys = {c.pack_key() for c in configs}
    if not configs or None in keys or len(keys) > 1:
        raise LmscaleError("train_packed: runs must be Transformers of one shape without dropout that "
                           f"agree on {', '.join(TrainConfig.PACK_FIELDS)}")
    if distributed.world_size_from_env() > 1:
        raise LmscaleError("train_packed: packed runs train in one process, not under torchrun")
    device = resolve_device(configs[0].device)
    configure_threads(configs[0].threads)
    data = data if data is not None else open_data(configs[0])
    dp = distributed.DataParallel()
    records: list[RunRecord | None] = [None] * len(configs)
    runs: list[_Run] = []
    for i, config in enumerate(configs):
        try:
            run = _Run(config, device, dp, data, auto_precision)
        except LmscaleError as exc:
            records[i] = RunRecord(run_id=config.run_id(), config=config.to_dict(), status="failed",
                                   error=f"LmscaleError: {exc}")
            if on_record is not None:
                on_record(i, records[i])
            continue
        run.rng_state = torch.get_rng_state()  # what its lone run would checkpoint
        run.index = i
        runs.append(run)
    if not runs:
        return [r for r in records if r is not None]
    check_packable([r.model for r in runs])
    need = sum(r.plan.memory_bytes for r in runs) - (len(runs) - 1) * RUNTIME_BYTES
    free = available_memory(device)
    if need > free:
        raise LmscaleError(f"a pack of {len(runs)} runs of {runs[0].spec.n_layer}x{runs[0].spec.d_model} needs "
                           f"about {need / 2**30:.2f} GiB, {free / 2**30:.2f} GiB available: pack fewer runs")
    for r in runs[1:]:
        r.test_rows = runs[0].test_rows  # the same sequences (same data and evaluation fields)
    groups: dict[tuple[int, str], list[_Run]] = {}
    for r in runs:
        r.try_resume()
        if r.resumed_record is not None:
            records[r.index] = r.resumed_record
            if on_record is not None:
                on_record(r.index, r.resumed_record)
        else:  # runs resumed at different steps or precisions make separate packs
            groups.setdefault((r.step, r.precision), []).append(r)
    for members in groups.values():
        _Pack(members, on_point, on_record).execute(records, progress, stop_event)
    return [r for r in records if r is not None]


class _Pack:
    """Runs at one step and in one precision, stepped together (``run.index``: its place
    among the runs given to :func:`train_packed`)."""

    def __init__(self, members: list[_Run], on_point: Callable[[int, CurvePoint], None] | None,
                 on_record: Callable[[int, RunRecord], None] | None):
        self.members = list(members)
        self.on_point, self.on_record = on_point, on_record
        for r in self.members:
            r.packed_with = len(self.members)
        self.autocast = self.members[0].autocast

    # -- one step of every member --------------------------------------------------
    def step(self) -> list[float]:
        members = self.members
        lrs = [r.begin_step() for r in members]
        passes = members[0].plan.passes_at(members[0].step)
        models = [r.model for r in members]
        for i in range(passes):
            rows = torch.stack([r.pass_rows(i, passes) for r in members])
            with self.autocast():
                hidden, head = packed_hidden_states(models, rows[..., :-1])
                losses = linear_cross_entropy(hidden, head, rows[..., 1:])
            (losses.sum() / passes).backward()
            detached = losses.detach()
            for j, r in enumerate(members):
                r.after_pass(i, passes, detached[j])
        for r in members:
            r.end_step(passes)
        return lrs

    # -- evaluation of several members at once -----------------------------------------
    @torch.no_grad()
    def test_losses(self, runs: list[_Run]) -> list[dict[str, float]]:
        """:meth:`trainer._Run.test_losses` of each of ``runs``, in one batched pass per chunk."""
        first, n = runs[0], len(runs)
        n_ctx = first.spec.n_ctx
        models = [r.model for r in runs]
        out: list[dict[str, float]] = [{} for _ in runs]
        batch = first.eval_rows()
        for name, rows in first.test_rows.items():
            total = torch.zeros(n, dtype=torch.float64, device=rows.device)
            for start in range(0, rows.shape[0], batch):
                chunk = rows[start:start + batch].expand(n, -1, -1)
                with self.autocast():
                    hidden, head = packed_hidden_states(models, chunk[..., :-1])
                losses = linear_cross_entropy_per_row(hidden, head, chunk[..., 1:]).to(torch.float64)
                total += losses.sum(dim=(1, 2))
            for j in range(n):
                out[j][name] = float(total[j]) / (rows.shape[0] * n_ctx)
        return out

    def charge(self, key: str, seconds: float, skip: _Run | None = None) -> None:
        """Add ``seconds`` the pack spent on ``key`` (eval, checkpoint) to every member's times."""
        for r in self.members:
            if r is not skip:
                r.times[key] += seconds

    # -- the loop ------------------------------------------------------------------------
    def execute(self, records: list[RunRecord | None], progress: bool,
                stop_event: threading.Event | None) -> None:
        for r in self.members:
            r.start()
        total = max(r.plan.total_steps for r in self.members)
        bar = progress_bar(progress, total, self.members[0].step)
        try:
            while self.members:
                lrs = self.step()
                ended: list[tuple[_Run, Outcome]] = []
                alive = []
                for r, lr in zip(self.members, lrs):
                    problem = r.due_divergence()
                    if problem:
                        ended.append((r, ("diverged", problem)))
                    else:
                        alive.append((r, lr))
                at_point = [r for r, _ in alive if r.plan.evaluates_at(r.step)]
                tests: dict[int, dict[str, float]] = {}
                if at_point:
                    sync(at_point[0].device)
                    t0 = time.perf_counter()
                    tests = {id(r): t for r, t in zip(at_point, self.test_losses(at_point))}
                    self.charge("eval", time.perf_counter() - t0)
                for r, lr in alive:
                    outcome = r.after_step(lr, self._point_callback(r), tests.get(id(r)))
                    if outcome is not None:
                        ended.append((r, outcome))
                for r, outcome in ended:
                    self.finish(r, outcome, records)
                if bar is not None:
                    bar.update(1)
                if self.members and stop_event is not None and stop_event.is_set():
                    for r in list(self.members):
                        self.finish(r, ("interrupted", None), records)
                elif self.members and self.members[0].checkpoint_due():
                    for r in self.members:
                        torch.set_rng_state(r.rng_state)
                        self.charge("checkpoint", r.timed_checkpoint(), skip=r)
        finally:
            if bar is not None:
                bar.close()

    def _point_callback(self, run: _Run) -> Callable[[CurvePoint], None] | None:
        if self.on_point is None:
            return None
        i, report = run.index, self.on_point
        return lambda point: report(i, point)

    def finish(self, run: _Run, outcome: Outcome, records: list[RunRecord | None]) -> None:
        """End ``run``: its final evaluation (on its own model, as its lone run does), checkpoint and record."""
        t0 = time.perf_counter()
        torch.set_rng_state(run.rng_state)
        record = run.finish(*outcome)
        self.members.remove(run)
        self.charge("eval", time.perf_counter() - t0)
        i = run.index
        records[i] = record
        if self.on_record is not None:
            self.on_record(i, record)
