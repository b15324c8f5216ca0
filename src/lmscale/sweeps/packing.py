"""Which runs of a sweep train together, packed (:mod:`lmscale.training.packed`).

Runs whose ``TrainConfig.pack_key()`` agree (one Transformer shape and
batch, the same evaluation and execution settings; seeds, learning rates,
schedules, budgets and dataset sizes may differ) are grouped, at most
:data:`MAX_PACK` runs and :data:`PACK_MEMORY_BYTES` of estimated memory per
pack; a pack is one task for an executor. Pure Python (no torch).

Packing shares each kernel launch among the runs of a pack: it pays where
launches cost (a GPU; a CPU task with several threads, whose every
operation starts and joins a thread team) and not where each operation's
own arithmetic dominates. Measured on the 2-core AMD EPYC of this project,
the CPU study's shapes (2/20, 2/48): a pack of 3 at one thread trains in
0.83-1.15x the CPU time of its runs one after another (no gain, and one
long task instead of three delays the sweep's last runs); at 2 threads
a pack of 3 gives 1.2-1.5x the aggregate tokens/s of one run
(bench_small.py). So :func:`packing_pays` packs on GPUs and for CPU tasks
of two or more threads; ``lmscale sweep run --pack`` / ``--no-pack``
decides otherwise.
"""

from __future__ import annotations

from lmscale.sweeps.spec import PlannedRun
from lmscale.training.plan import AUTO_MICRO_TOKENS, RUNTIME_BYTES, estimate_memory

#: Most runs in one pack.
MAX_PACK = 8

#: Estimated memory (weights, optimizer state, activations) one pack may take.
PACK_MEMORY_BYTES = 4 * 2**30


def packing_pays(device_type: str, threads: int) -> bool:
    """Whether tasks on ``device_type`` with ``threads`` torch threads gain from packing."""
    return device_type == "cuda" or threads >= 2


def pack_size(run: PlannedRun, max_pack: int = MAX_PACK) -> int:
    """How many runs like ``run`` one pack may hold (memory-bound, at most ``max_pack``)."""
    cfg = run.config
    device = "cuda" if cfg.device == "cuda" else "cpu"
    micro = cfg.micro_batch_tokens or min(cfg.batch_tokens, AUTO_MICRO_TOKENS[device])
    one = estimate_memory(cfg.model, micro, device_type=device, keep_best=cfg.early_stopping) - RUNTIME_BYTES
    return max(1, min(max_pack, int(PACK_MEMORY_BYTES // max(one, 1))))


def plan_packs(runs: list[PlannedRun], max_pack: int = MAX_PACK) -> list[list[PlannedRun]]:
    """``runs`` cut into packs (a run that cannot pack is a pack of one), largest compute first."""
    packs: list[list[PlannedRun]] = []
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        key = run.config.pack_key() if max_pack > 1 else None
        if key is None:
            packs.append([run])
        else:
            groups.setdefault(key, []).append(run)
    for members in groups.values():
        size = pack_size(members[0], max_pack)
        packs.extend(members[i:i + size] for i in range(0, len(members), size))
    return sorted(packs, key=lambda p: -sum(r.C for r in p))
