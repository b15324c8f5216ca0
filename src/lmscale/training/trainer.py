"""``train(config) -> RunRecord``: one run of the [K] recipe, measured the paper's way.

AdamW, warm-up then cosine (or WSD) decay, LR(N) of [K] eq. D.1 by default,
gradient accumulation over micro-batches, gradient clipping, early stopping
on the test loss. Along the way, at log-spaced steps: learning-curve points
with test loss per distribution and the gradient noise scale ([K] 5.1); at
the end, loss per context position, speed and MFU. Checkpoints resume bit
for bit; a diverging run is recorded, not raised; under ``torchrun`` the
same code trains data-parallel.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
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
from lmscale.errors import LmscaleError
from lmscale.models import build_model
from lmscale.training import checkpoint, distributed
from lmscale.training.batches import SequenceBatches, fixed_rows
from lmscale.training.config import TrainConfig
from lmscale.training.evaluate import evaluate, has_head, training_loss
from lmscale.training.hardware import (
    available_memory,
    configure_threads,
    describe_device,
    matmul_peak,
    resolve_device,
)
from lmscale.training.noise import NoiseScaleEstimator
from lmscale.training.plan import RunPlan, make_plan
from lmscale.training.record import CurvePoint, RunRecord
from lmscale.training.schedule import learning_rate

#: Steps between divergence checks (each reads the loss back from the device).
CHECK_EVERY = 8


def open_data(config: TrainConfig) -> Any:
    """The prepared data directory of ``config`` (``lmscale.data.PreparedData``)."""
    from lmscale.data import PreparedData

    return PreparedData.open(config.data_dir)


def train(config: TrainConfig, *, progress: bool = True,
          on_point: Callable[[CurvePoint], None] | None = None,
          stop_event: threading.Event | None = None, data: Any = None) -> RunRecord:
    """Train one run; returns its record (rank 0's full record under torchrun).

    Input errors raise :class:`LmscaleError` before any training. A run whose
    loss becomes non-finite or explodes comes back with status ``diverged``.
    With ``checkpoint_dir`` set, a checkpoint of the same run id is resumed;
    setting ``stop_event`` checkpoints and returns status ``interrupted``.
    ``data`` replaces ``config.data_dir`` by token arrays already in memory
    (:class:`lmscale.training.batches.ArrayData`).
    """
    if not isinstance(config, TrainConfig):
        raise LmscaleError(f"train() expects a TrainConfig, got {type(config).__name__}")
    device = resolve_device(config.device)
    with distributed.process_group(device.type) as dp:
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dp.world_size))
        configure_threads(config.threads, local_world)
        run = _Run(config, device, dp, data if data is not None else open_data(config))
        return run.execute(progress=progress, on_point=on_point, stop_event=stop_event)


class _Run:
    """State of one run between its set-up and its record."""

    def __init__(self, config: TrainConfig, device: torch.device, dp: distributed.DataParallel,
                 data: Any):
        spec = config.model
        self.config, self.device, self.dp, self.spec = config, device, dp, spec
        # -- everything that can be wrong with the input, before any training --
        data.check_vocab(spec.n_vocab)
        names = list(config.eval_distributions or data.distributions)
        unknown = [n for n in names if n not in data.distributions]
        if unknown:
            raise LmscaleError(f"eval_distributions: {', '.join(unknown)} not among the prepared "
                               f"distributions {', '.join(data.distributions)} of {config.data_dir}")
        self.main_dist = data.train_distribution if data.train_distribution in names else names[0]
        self.plan: RunPlan = make_plan(config, world_size=dp.world_size, device_type=device.type,
                                       available_memory=available_memory(device))
        self.batches = SequenceBatches(data.train_tokens(self.plan.dataset_tokens + 1), spec.n_ctx,
                                       self.plan.dataset_tokens, config.seed)
        def eval_budget(name: str) -> int:
            if name == self.main_dist or config.eval_other_tokens is None:
                return config.eval_tokens
            return config.eval_other_tokens

        self.test_rows = {n: torch.from_numpy(fixed_rows(data.test_tokens(n), spec.n_ctx,
                                                         eval_budget(n))).to(device)
                          for n in names}
        self.train_distribution = data.train_distribution
        self.data_tokenizer = getattr(data, "tokenizer_hash", None)
        # -- model and optimizer ------------------------------------------------
        torch.manual_seed(config.seed)
        self.model = build_model(spec).to(device)
        distributed.broadcast_parameters(dp, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = _adamw(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.plan.peak_lr, betas=(config.beta1, config.beta2), eps=config.eps)
        use_compile = config.compile if config.compile is not None else device.type == "cuda"
        base = self.model.hidden_states if has_head(self.model) else self.model
        self.forward = torch.compile(base) if use_compile else base
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) \
            if device.type == "cuda" else nullcontext
        # -- measurement state --------------------------------------------------
        f64 = {"dtype": torch.float64, "device": device}
        self.loss_ema = torch.zeros((), **f64)
        self.loss_weight = 0.0
        nb = self.plan.noise_batches
        self.noise = NoiseScaleEstimator(nb[0], nb[1], config.noise_ema_decay,
                                         torch.zeros((), **f64), torch.zeros((), **f64)) if nb else None
        self.divergence_loss = config.divergence_loss or 2.0 * math.log(spec.n_vocab)
        self.step = 0
        self.curve: list[CurvePoint] = []
        self.best_loss = math.inf
        self.best_step = 0
        self.bad_evals = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.times = {"wall": 0.0, "train": 0.0, "eval": 0.0, "checkpoint": 0.0}
        self.run_id = config.run_id()
        self.resumed_record: RunRecord | None = None

    # -- checkpoints ----------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "loss_ema": float(self.loss_ema), "loss_weight": self.loss_weight,
            "noise": self.noise.state_dict() if self.noise else None,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_step": self.best_step, "bad_evals": self.bad_evals,
            "times": dict(self.times), "curve": [asdict(p) for p in self.curve],
            "data_tokenizer": self.data_tokenizer,
        }

    def save_checkpoint(self) -> None:
        if self.config.checkpoint_dir and self.dp.is_main:
            tensors = checkpoint.pack(self.model, self.optimizer, self.best_weights)
            checkpoint.save(self.config.checkpoint_dir, self.run_id, self.step, tensors, self._state())

    def try_resume(self) -> None:
        if not self.config.checkpoint_dir:
            return
        found = checkpoint.load(self.config.checkpoint_dir, self.run_id)
        if found is None:
            return
        state, tensors = found
        if "final_record" in state:
            self.resumed_record = RunRecord.from_dict(state["final_record"])
            return
        saved_tokenizer = state.get("data_tokenizer")
        if saved_tokenizer and self.data_tokenizer and saved_tokenizer != self.data_tokenizer:
            raise LmscaleError(
                f"{self.config.checkpoint_dir}: run {self.run_id} was checkpointed on data tokenized with "
                f"{saved_tokenizer}, but {self.config.data_dir} now holds tokenizer {self.data_tokenizer}: "
                "refusing to resume on other data (prepare the data as before, or remove the checkpoint)")
        self.best_weights = checkpoint.unpack(tensors, self.model, self.optimizer)
        if self.best_weights:
            self.best_weights = {k: v.to(self.device) for k, v in self.best_weights.items()}
        self.step = int(state["step"])
        self.loss_ema.fill_(state["loss_ema"])
        self.loss_weight = float(state["loss_weight"])
        if self.noise and state.get("noise"):
            self.noise.load_state_dict(state["noise"])
        self.best_loss = math.inf if state["best_loss"] is None else float(state["best_loss"])
        self.best_step, self.bad_evals = int(state["best_step"]), int(state["bad_evals"])
        self.times.update({k: float(v) for k, v in state["times"].items()})
        self.curve = [CurvePoint(**p) for p in state["curve"]]

    # -- one optimizer step ----------------------------------------------------
    def train_step(self) -> float:
        plan, cfg = self.plan, self.config
        lr = learning_rate(self.step, plan.total_steps, plan.peak_lr, schedule=cfg.schedule,
                           warmup_steps=plan.warmup_steps, decay_fraction=cfg.decay_fraction,
                           min_lr_ratio=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n_ctx = self.spec.n_ctx
        micro_rows = plan.micro_batch_tokens // n_ctx
        first = self.step * (plan.batch_tokens // n_ctx) + self.dp.rank * (plan.rank_batch_tokens // n_ctx)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        g_small_sq = None
        for m in range(plan.micro_steps):
            rows = torch.from_numpy(self.batches.rows(first + m * micro_rows, micro_rows))
            rows = rows.to(self.device, non_blocking=True)
            with self.autocast():
                loss = training_loss(self.model, self.forward, rows[:, :-1], rows[:, 1:])
            (loss / plan.micro_steps).backward()
            loss_sum += loss.detach().float()
            if m == 0 and self.noise is not None and not self.dp.active:
                g_small_sq = _grad_sq(self.params) * plan.micro_steps**2
        step_loss = loss_sum / plan.micro_steps
        if self.dp.active:
            extras = torch.stack([step_loss.to(torch.float64), _grad_sq(self.params)])
            reduced = distributed.all_reduce_gradients(self.dp, self.params, extras)
            step_loss, g_small_sq = reduced[0], reduced[1]
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            g_big_sq = norm.to(torch.float64) ** 2
        else:
            g_big_sq = _grad_sq(self.params) if self.noise is not None else None
        if self.noise is not None and g_small_sq is not None:
            self.noise.update(g_small_sq, g_big_sq)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        d = cfg.loss_ema_decay
        self.loss_ema.mul_(d).add_(step_loss.to(torch.float64), alpha=1.0 - d)
        self.loss_weight = d * self.loss_weight + (1.0 - d)
        self.step += 1
        return lr

    def smoothed_loss(self) -> float:
        return float(self.loss_ema) / self.loss_weight if self.loss_weight > 0 else math.nan

    def diverged(self) -> str | None:
        value = self.smoothed_loss()
        if not math.isfinite(value):
            return f"training loss became {value} at step {self.step}"
        if value > self.divergence_loss:
            return (f"smoothed training loss {value:.4g} exceeded {self.divergence_loss:.4g} "
                    f"at step {self.step}")
        return None

    # -- evaluation ----------------------------------------------------------------
    def test_losses(self, per_position: bool = False) -> tuple[dict[str, float], list[float]]:
        """Test loss per distribution; with ``per_position``, only the main one and its L(t)."""
        dp = self.dp
        out: dict[str, float] = {}
        positions: list[float] = []
        batch_rows = max(1, self.plan.micro_batch_tokens // self.spec.n_ctx)
        names = [self.main_dist] if per_position else list(self.test_rows)
        for name in names:
            rows = self.test_rows[name]
            mine = rows[dp.rank::dp.world_size]
            total, pos = evaluate(self.model, self.forward, mine, batch_rows,
                                  per_position=per_position, autocast=self.autocast)
            sums = torch.cat([total.view(1), pos,
                              torch.tensor([mine.shape[0]], dtype=torch.float64, device=self.device)])
            sums = distributed.all_reduce_sum(dp, sums)
            n_rows = float(sums[-1])
            out[name] = float(sums[0]) / (n_rows * self.spec.n_ctx)
            if per_position:
                positions = (sums[1:-1] / n_rows).tolist()
        return out, positions

    def record_point(self, lr: float, clock: Callable[[], float]) -> CurvePoint:
        t0 = time.perf_counter()
        test, _ = self.test_losses()
        self.times["eval"] += time.perf_counter() - t0
        tokens = self.step * self.plan.batch_tokens
        noise = self.noise
        point = CurvePoint(
            step=self.step, tokens=tokens,
            flops=float(training_flops_per_token(self.spec) * tokens),
            flops_exact=float(training_flops_per_token(self.spec, exact=True) * tokens),
            lr=lr, train_loss=self.smoothed_loss(), test_loss=test,
            noise_scale=noise.noise_scale() if noise else None,
            grad_sq_small=noise.grad_sq_small if noise else None,
            grad_sq_big=noise.grad_sq_big if noise else None,
            wall_time_s=clock(),
        )
        self.curve.append(point)
        return point

    def early_stop_check(self, point: CurvePoint) -> bool:
        loss = point.test_loss[self.main_dist]
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evals = loss, point.step, 0
            if self.config.early_stopping:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.named_parameters()}
            return False
        self.bad_evals += 1
        return self.config.early_stopping and self.bad_evals >= self.config.patience

    # -- the loop ---------------------------------------------------------------------
    def execute(self, *, progress: bool, on_point: Callable[[CurvePoint], None] | None,
                stop_event: threading.Event | None) -> RunRecord:
        self.try_resume()
        if self.resumed_record is not None:
            return self.resumed_record
        peak = matmul_peak(self.device)
        plan, cfg = self.plan, self.config
        start = time.perf_counter() - self.times["wall"]

        def clock() -> float:
            return time.perf_counter() - start

        last_ckpt = time.perf_counter()
        status, error, lr = "finished", None, 0.0
        bar = _progress_bar(progress and self.dp.is_main, plan.total_steps, self.step)
        bar_time = 0.0
        self.model.train()
        try:
            while self.step < plan.total_steps:
                lr = self.train_step()
                at_point = plan.evaluates_at(self.step)
                if at_point or self.step % CHECK_EVERY == 0 or self.step == plan.total_steps:
                    problem = self.diverged()
                    if problem:
                        status, error = "diverged", problem
                        break
                if at_point:
                    _sync(self.device)
                    point = self.record_point(lr, clock)
                    if on_point is not None and self.dp.is_main:
                        on_point(point)
                    if self.early_stop_check(point):
                        status = "early_stopped"
                        break
                if bar is not None:
                    bar.update(1)
                    if time.perf_counter() - bar_time > 0.5:
                        bar_time = time.perf_counter()
                        train_s = clock() - self.times["eval"]
                        bar.set_postfix(loss=f"{self.smoothed_loss():.3f}",
                                        tok_s=f"{self.step * plan.batch_tokens / max(train_s, 1e-9):.0f}",
                                        refresh=False)
                stop = stop_event is not None and stop_event.is_set()
                if self.dp.active and at_point:
                    flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
                    stop = float(distributed.all_reduce_sum(self.dp, flag)) > 0
                elif self.dp.active:
                    stop = False
                if stop and self.step < plan.total_steps:
                    status = "interrupted"
                    break
                if cfg.checkpoint_dir and time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
                    t0 = time.perf_counter()
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
                    self.times["checkpoint"] += last_ckpt - t0
        finally:
            if bar is not None:
                bar.close()
        _sync(self.device)
        self.times["wall"] = clock()
        self.times["train"] = self.times["wall"] - self.times["eval"] - self.times["checkpoint"]
        if status == "interrupted":
            self.save_checkpoint()
            return self.build_record(status, None, [], peak)
        if status == "diverged":
            record = self.build_record(status, error, [], peak)
        else:
            if status == "early_stopped" and self.best_weights is not None:
                with torch.no_grad():
                    for name, p in self.model.named_parameters():
                        p.copy_(self.best_weights[name])
            t0 = time.perf_counter()
            _, per_position = self.test_losses(per_position=True)
            self.times["eval"] += time.perf_counter() - t0
            self.save_checkpoint()
            record = self.build_record(status, None, per_position, peak)
        if cfg.checkpoint_dir and self.dp.is_main:
            checkpoint.save_final(cfg.checkpoint_dir, self.run_id, record.to_dict())
        return record

    def build_record(self, status: str, error: str | None, per_position: list[float],
                     peak: float) -> RunRecord:
        spec, plan = self.spec, self.plan
        tokens = self.step * plan.batch_tokens
        train_s = max(self.times["train"], 1e-9)
        model_flops = training_flops_per_token(spec, exact=True) * tokens
        final: dict[str, float] = {}
        if self.curve and status != "diverged":
            if status == "early_stopped":
                best = next((p for p in self.curve if p.step == self.best_step), self.curve[-1])
                final = dict(best.test_loss)
            else:
                final = dict(self.curve[-1].test_loss)
        losses = [p.test_loss.get(self.main_dist) for p in self.curve]
        losses = [x for x in losses if x is not None]
        return RunRecord(
            run_id=self.run_id, config=self.config.to_dict(), status=status,
            non_embedding_params=non_embedding_params(spec),
            exact_non_embedding_params=exact_non_embedding_params(self.model),
            embedding_params=embedding_params(spec),
            flops_per_token=float(forward_flops_per_token(spec)),
            train_distribution=self.train_distribution, curve=list(self.curve),
            final_test_loss=final, best_test_loss=min(losses) if losses else None,
            per_position_loss=per_position, steps=self.step, tokens=tokens,
            batch_tokens=plan.batch_tokens, wall_time_s=self.times["wall"],
            tokens_per_second=tokens / train_s,
            mfu=model_flops / train_s / (peak * self.dp.world_size) if tokens else None,
            peak_flops=peak, device=describe_device(self.device)
            + (f" x {self.dp.world_size} ranks" if self.dp.active else ""),
            versions={"lmscale": __version__, "torch": torch.__version__,
                      "python": platform.python_version(), "numpy": numpy.__version__},
            error=error, total_steps=plan.total_steps, micro_batch_tokens=plan.micro_batch_tokens,
            world_size=self.dp.world_size, peak_lr=plan.peak_lr, warmup_steps=plan.warmup_steps,
            train_time_s=self.times["train"], eval_time_s=self.times["eval"],
        )


def _adamw(groups: list[dict[str, Any]], **kw: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel (CPU and CUDA: one pass per tensor), else multi-tensor."""
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, TypeError):  # a device or torch build without the fused kernel
        return torch.optim.AdamW(groups, foreach=True, **kw)


def _grad_sq(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Squared global norm of the gradients, fp64 on the device (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    return torch.stack(norms).to(torch.float64).square().sum()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    class Bar(tqdm):  # no monitor thread: it would outlive the run (a daemon left at exit)
        monitor_interval = 0

    return Bar(total=total, initial=initial, file=sys.stderr, unit="step", dynamic_ncols=True,
               mininterval=0.5)
