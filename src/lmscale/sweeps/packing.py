"""Which runs of a sweep train together, packed (:mod:`lmscale.training.packed`).

Runs whose ``TrainConfig.pack_key()`` agree (one Transformer shape and
batch, the same evaluation and execution settings; seeds, learning rates,
schedules, budgets and dataset sizes may differ) are grouped, at most
:data:`MAX_PACK` runs and :data:`PACK_MEMORY_BYTES` of estimated memory per
pack; a pack is one task for an executor. Pure Python (no torch).
"""

from __future__ import annotations

from lmscale.sweeps.spec import PlannedRun
from lmscale.training.plan import AUTO_MICRO_TOKENS, RUNTIME_BYTES, estimate_memory

#: Most runs in one pack.
MAX_PACK = 8

#: Estimated memory (weights, optimizer state, activations) one pack may take.
PACK_MEMORY_BYTES = 4 * 2**30


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
