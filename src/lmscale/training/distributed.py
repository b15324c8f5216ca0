"""Data parallelism over torch.distributed (launched by ``torchrun``).

Each rank trains on its share of the global batch; after the backward
passes, one all-reduce averages the gradients (flattened into one buffer,
with the rank's train loss and |g_rank|^2 appended, so the noise scale's
small-batch norm costs nothing extra: B_small = per-rank batch, B_big = the
global batch, [K] 5.1). Only rank 0 writes checkpoints and returns the full
record. Without ``WORLD_SIZE > 1`` in the environment everything here is a
no-op and a single process trains alone.

Shutting down in order matters: the gloo backend runs worker threads that
release the tensors of finished collectives, and those tensors hold Python
objects. If the process group is still alive when the interpreter exits,
such a thread can try to take the GIL during finalisation and the process
aborts ("terminate called without an active exception"), after a run that
succeeded. So :func:`setup` imports ``torch.distributed.nn`` *before* the
group exists (that module binds ``group.WORLD`` into default arguments at
import time, and torch imports it lazily the first time an optimizer is
built, which would keep the group alive after ``destroy_process_group``);
:func:`teardown` waits at a barrier until every rank is done with its
collectives, then destroys the group, whose destructor joins the backend's
threads while Python is still fully alive.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DataParallel:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def world_size_from_env() -> int:
    """WORLD_SIZE set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device_type: str) -> DataParallel:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    world = world_size_from_env()
    if world <= 1:
        return DataParallel()
    owns = False
    if not dist.is_initialized():
        import torch.distributed.nn  # noqa: F401  (binds group.WORLD while it is still None)

        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", "0")), owns_group=owns)


def teardown(dp: DataParallel, *, barrier: bool = True) -> None:
    """Barrier (no rank leaves while another is mid-collective), then destroy the group.

    ``barrier=False`` after an error: the other ranks may be inside a
    different collective. Warns if something still holds the group
    afterwards: its backend threads would outlive the run and could abort
    the process at exit.
    """
    import torch.distributed as dist

    if not (dp.owns_group and dist.is_initialized()):
        return
    group = dist.group.WORLD
    try:
        if barrier:
            dist.barrier()
    finally:
        dist.destroy_process_group()
    holders = sys.getrefcount(group) - 2  # this frame's name and getrefcount's argument
    if holders > 0:
        warnings.warn(f"the process group is still referenced {holders} time(s) after "
                      "destroy_process_group; its threads may abort the process at exit",
                      RuntimeWarning, stacklevel=2)


@contextmanager
def process_group(device_type: str) -> Iterator[DataParallel]:
    """The data-parallel group for the duration of a ``with`` block (torchrun), else no-op.

    A caller that also writes the run's record holds the group across
    training and writing, so the record is out before the teardown starts.
    """
    dp = setup(device_type)
    try:
        yield dp
    except BaseException:
        teardown(dp, barrier=False)
        raise
    teardown(dp)


def broadcast_parameters(dp: DataParallel, module: torch.nn.Module) -> None:
    """Give every rank rank 0's initial weights."""
    if not dp.active:
        return
    import torch.distributed as dist

    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(dp: DataParallel, params: list[torch.nn.Parameter],
                         extras: torch.Tensor) -> torch.Tensor:
    """Average the gradients of ``params`` and the values in ``extras`` over the ranks.

    Returns the averaged ``extras`` (float64 of the same shape).
    """
    import torch.distributed as dist

    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads]
                     + [extras.to(device=grads[0].device, dtype=torch.float32)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dp.world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return flat[offset:].to(torch.float64)


def all_reduce_sum(dp: DataParallel, tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process)."""
    if dp.active:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(dp: DataParallel, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dp.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
