"""The pieces of a run around its steps: the optimizer, gradient norms, the progress bar,
and the run record built from a run's state (used by lone and packed runs alike)."""

from __future__ import annotations

import platform
from typing import Any

import numpy
import torch

from lmscale import __version__
from lmscale.accounting import (
    embedding_params,
    exact_non_embedding_params,
    forward_flops_per_token,
    non_embedding_params,
    training_flops_per_token,
)
from lmscale.training.hardware import describe_device
from lmscale.training.record import RunRecord


def build_record(run: Any, status: str, error: str | None, per_position: list[float],
                 peak: float) -> RunRecord:
    """The record of a run (a ``trainer._Run``) as it stands."""
    spec, plan = run.spec, run.plan
    tokens = run.step * plan.batch_tokens
    train_s = max(run.times["train"], 1e-9)
    model_flops = training_flops_per_token(spec, exact=True) * tokens
    final: dict[str, float] = {}
    if run.curve and status != "diverged":
        if status == "early_stopped":
            best = next((p for p in run.curve if p.step == run.best_step), run.curve[-1])
            final = dict(best.test_loss)
        else:
            final = dict(run.curve[-1].test_loss)
    losses = [p.test_loss.get(run.main_dist) for p in run.curve]
    losses = [x for x in losses if x is not None]
    return RunRecord(
        run_id=run.run_id, config=run.config.to_dict(), status=status,
        non_embedding_params=non_embedding_params(spec),
        exact_non_embedding_params=exact_non_embedding_params(run.model),
        embedding_params=embedding_params(spec),
        flops_per_token=float(forward_flops_per_token(spec)),
        train_distribution=run.train_distribution, curve=list(run.curve),
        final_test_loss=final, best_test_loss=min(losses) if losses else None,
        per_position_loss=per_position, steps=run.step, tokens=tokens,
        batch_tokens=plan.batch_tokens, wall_time_s=run.times["wall"],
        tokens_per_second=tokens / train_s,
        mfu=model_flops / train_s / (peak * run.dp.world_size) if tokens else None,
        peak_flops=peak, device=describe_device(run.device)
        + (f" x {run.dp.world_size} ranks" if run.dp.active else ""),
        versions={"lmscale": __version__, "torch": torch.__version__,
                  "python": platform.python_version(), "numpy": numpy.__version__},
        error=error, total_steps=plan.total_steps, micro_batch_tokens=plan.micro_batch_tokens,
        world_size=run.dp.world_size, peak_lr=plan.peak_lr, warmup_steps=plan.warmup_steps,
        train_time_s=run.times["train"], eval_time_s=run.times["eval"],
        precision=run.precision, packed_with=run.packed_with,
    )



def adamw(groups: list[dict[str, Any]], **kw: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel (CPU and CUDA: one pass per tensor), else multi-tensor."""
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, TypeError):  # a device or torch build without the fused kernel
        return torch.optim.AdamW(groups, foreach=True, **kw)


def grad_sq(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Squared global norm of the gradients, fp64 on the device (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    return torch.stack(norms).to(torch.float64).square().sum()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    class Bar(tqdm):  # no monitor thread: it would outlive the run (a daemon left at exit)
        monitor_interval = 0

    return Bar(total=total, initial=initial, file=sys.stderr, unit="step", dynamic_ncols=True,
               mininterval=0.5)
