"""``train(config) -> RunRecord``: one run of the [K] recipe, measured the paper's way.

AdamW, warm-up then cosine (or WSD) decay, LR(N) of [K] eq. D.1 by default,
gradient accumulation over micro-batches, gradient clipping, early stopping
on the test loss, in fp32 or bf16 autocast (``precision``). Along the way,
at log-spaced steps: learning-curve points with test loss per distribution
and the gradient noise scale ([K] 5.1, measured every ``noise_every``
steps); at the end, loss per context position, speed and MFU. Checkpoints
resume bit for bit; a diverging run is recorded, not raised; under
``torchrun`` the same code trains data-parallel. A step is done in parts
(:meth:`_Run.begin_step` ... :meth:`_Run.end_step`) so that
:mod:`lmscale.training.packed` can step several runs at once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch

from lmscale.accounting import training_flops_per_token
from lmscale.errors import LmscaleError
from lmscale.models import build_model
from lmscale.training import checkpoint, distributed
from lmscale.training.batches import SequenceBatches, fixed_rows, row_documents, row_starts, rows_at
from lmscale.training.config import TrainConfig
from lmscale.training.evaluate import (
    evaluate,
    evaluate_position_blocks,
    has_head,
    position_blocks,
    position_means,
    training_loss,
)
from lmscale.training.hardware import (
    available_cpus,
    available_memory,
    configure_threads,
    matmul_peak,
    resolve_device,
    torch_threads,
)
from lmscale.training.noise import NoiseScaleEstimator
from lmscale.training.plan import RunPlan, make_plan
from lmscale.training.precision import autocast, resolve_precision
from lmscale.training.record import CurvePoint, RunRecord
from lmscale.training.runtime import adamw, build_record, grad_sq, progress_bar, sync
from lmscale.training.schedule import learning_rate
from lmscale.training.step_timing import STEP_MIN_SECONDS, choose_threads

#: Steps between divergence checks (each reads the loss back from the device).
CHECK_EVERY = 8

#: Test sequences per evaluation pass, as a multiple of the training micro-batch
#: (no activations are kept for a backward pass, so passes can be larger).
EVAL_BATCH_FACTOR = 4

#: (status, error) with which a run ends.
Outcome = tuple[str, str | None]

def open_data(config: TrainConfig) -> Any:
    """The prepared data directory of ``config`` (``lmscale.data.PreparedData``)."""
    from lmscale.data import PreparedData

    return PreparedData.open(config.data_dir)


def train(config: TrainConfig, *, progress: bool = True,
          on_point: Callable[[CurvePoint], None] | None = None,
          stop_event: threading.Event | None = None, data: Any = None,
          auto_precision: str | None = None) -> RunRecord:
    """Train one run; returns its record (rank 0's full record under torchrun).

    Input errors raise :class:`LmscaleError` before any training. A run whose
    loss becomes non-finite or explodes comes back with status ``diverged``.
    With ``checkpoint_dir`` set, a checkpoint of the same run id is resumed;
    setting ``stop_event`` checkpoints and returns status ``interrupted``.
    ``data`` replaces ``config.data_dir`` by token arrays already in memory
    (:class:`lmscale.training.batches.ArrayData`). ``auto_precision`` is
    what ``precision = "auto"`` means for this run (a sweep passes the one
    its study already uses); ``None`` asks the machine.
    """
    if not isinstance(config, TrainConfig):
        raise LmscaleError(f"train() expects a TrainConfig, got {type(config).__name__}")
    device = resolve_device(config.device)
    with distributed.process_group(device.type) as dp:
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dp.world_size))
        data = data if data is not None else open_data(config)  # opened once: the thread trials use it too
        threads, eval_threads = config.threads, None
        if threads is None and device.type == "cpu" and local_world == 1:
            # a lone CPU run: 1 thread or all, whichever steps its shape faster here
            threads, _ = choose_threads(config.model, config.batch_tokens, available_cpus(),
                                        lambda n: _seconds_per_step(config, n, data, auto_precision))
            if threads < available_cpus():  # the evaluations' larger forward passes still use them all
                eval_threads = available_cpus()
        configure_threads(threads, local_world)
        run = _Run(config, device, dp, data, auto_precision)
        run.eval_threads = eval_threads
        return run.execute(progress=progress, on_point=on_point, stop_event=stop_event)


#: Untimed steps, then timed ones (at least as many, and at least ``STEP_MIN_SECONDS``), of the
#: trial that times a thread count (:func:`_seconds_per_step`).
THREAD_TRIAL_WARMUP, THREAD_TRIAL_STEPS, THREAD_TRIAL_MAX_STEPS = 3, 12, 400


def _seconds_per_step(config: TrainConfig, threads: int, data: Any, auto_precision: str | None = None) -> float:
    """Seconds per training step of ``config`` on ``threads`` threads: the run's own steps
    (noise scale, clipping, AdamW, as it will take them), evaluating and saving nothing.

    The first steps (allocation, waking a thread pool of another size) are not timed, and the
    timed ones last at least ``STEP_MIN_SECONDS``: a 12-step run timed from its start (0.15 s
    at 2/12) had cached 1 thread as 1.2x faster on a 2-core AMD EPYC where 2 threads step
    that shape 1.3-1.4x faster.
    """
    n_ctx = config.model.n_ctx
    configure_threads(threads)
    own = make_plan(config).dataset_tokens  # the trial cycles over the run's own data, no more
    trial = replace(config, tokens=None, flops=None, steps=THREAD_TRIAL_WARMUP + THREAD_TRIAL_MAX_STEPS,
                    dataset_tokens=own, threads=threads, checkpoint_dir=None, early_stopping=False,
                    eval_tokens=n_ctx, eval_other_tokens=n_ctx, final_eval_tokens=n_ctx)
    device = resolve_device(config.device)
    run = _Run(trial, device, distributed.DataParallel(), data, auto_precision)
    run.start()
    for _ in range(THREAD_TRIAL_WARMUP):
        run.train_step()
    sync(device)
    t0 = time.perf_counter()
    for steps in range(1, THREAD_TRIAL_MAX_STEPS + 1):
        run.train_step()
        if steps >= THREAD_TRIAL_STEPS and time.perf_counter() - t0 >= STEP_MIN_SECONDS:
            break
    sync(device)
    return (time.perf_counter() - t0) / steps


class _Run:
    """State of one run between its set-up and its record."""

    def __init__(self, config: TrainConfig, device: torch.device, dp: distributed.DataParallel,
                 data: Any, auto_precision: str | None = None):
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
        final_test = data.test_tokens(self.main_dist)
        starts = row_starts(len(final_test), spec.n_ctx, config.final_eval_budget())
        self.final_rows = torch.from_numpy(rows_at(final_test, starts, spec.n_ctx)).to(device)
        eot = getattr(data, "eot", None)  # documents end at eot in prepared shards; arrays may have none
        documents = row_documents(final_test, starts, eot) if isinstance(eot, int) else None
        self.final_blocks = torch.from_numpy(position_blocks(self.final_rows.shape[0], documents)).to(device)
        self.train_distribution = data.train_distribution
        self.data_tokenizer = getattr(data, "tokenizer_hash", None)
        # -- model and optimizer ------------------------------------------------
        torch.manual_seed(config.seed)
        self.model = build_model(spec).to(device)
        distributed.broadcast_parameters(dp, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = adamw(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.plan.peak_lr, betas=(config.beta1, config.beta2), eps=config.eps)
        use_compile = config.compile if config.compile is not None else device.type == "cuda"
        base = self.model.hidden_states if has_head(self.model) else self.model
        self.forward = torch.compile(base) if use_compile else base
        if config.precision == "auto" and auto_precision is not None:
            self.precision, self.precision_reason = auto_precision, "auto: the precision of the study"
        else:
            self.precision, self.precision_reason = resolve_precision(config.precision, device, spec,
                                                                      config.batch_tokens)
        self.autocast = autocast(device, self.precision)
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
        #: how the run ended, once its training has (saved before its final record, so that a run
        #: killed in between ends the same way on resume instead of training on)
        self.ending: str | None = None
        self.packed_with = 1  # runs in its pack (lmscale.training.packed)
        self.eval_threads: int | None = None  # torch threads of the evaluations (None: the run's)
        self.rng_state: torch.Tensor | None = None
        self.index = 0  # its place among the runs of a pack

    # -- checkpoints ----------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "loss_ema": float(self.loss_ema), "loss_weight": self.loss_weight,
            "noise": self.noise.state_dict() if self.noise else None,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_step": self.best_step, "bad_evals": self.bad_evals,
            "times": dict(self.times), "curve": [asdict(p) for p in self.curve],
            "data_tokenizer": self.data_tokenizer,
            "precision": self.precision, "ending": self.ending,
        }

    def save_checkpoint(self) -> None:
        if self.config.checkpoint_dir and self.dp.is_main:
            tensors = checkpoint.pack(self.model, self.optimizer, self.best_weights)
            checkpoint.save(self.config.checkpoint_dir, self.run_id, self.step, tensors, self._state())

    def try_resume(self) -> None:
        """Continue from this run's checkpoint, if any. A run whose record was saved returns it
        (``resumed_record``); one whose training had ended (finished or early-stopped, killed before
        its record was saved) is finished here, as it would have been, without another step."""
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
        if state.get("precision", self.precision) != self.precision:  # a run keeps its precision
            self.precision = str(state["precision"])
            self.precision_reason = "resumed in the precision the run started with"
            self.autocast = autocast(self.device, self.precision)
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
        self.ending = state.get("ending")
        if self.ending is not None:  # killed after its training ended, before its record was saved
            self.start()
            self.resumed_record = self.finish(self.ending, None)

    # -- one optimizer step, in parts (a packed step interleaves them, lmscale.training.packed) --
    def begin_step(self) -> float:
        """Set and return the learning rate of the step about to run."""
        plan, cfg = self.plan, self.config
        lr = learning_rate(self.step, plan.total_steps, plan.peak_lr, schedule=cfg.schedule,
                           warmup_steps=plan.warmup_steps, decay_fraction=cfg.decay_fraction,
                           min_lr_ratio=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        self.g_small_sq: torch.Tensor | None = None
        self.part_norms: list[torch.Tensor] = []
        if not self.dp.active and self.plan.measures_noise_at(self.step):
            self.part_hooks = [p.register_hook(self._part_norm) for p in self.params]
        return lr

    def _part_norm(self, grad: torch.Tensor) -> None:
        """Hook on a parameter: the norm of the gradient one pass adds (before it is accumulated)."""
        self.part_norms.append(torch.linalg.vector_norm(grad, dtype=torch.float64))

    def pass_rows(self, index: int, passes: int) -> torch.Tensor:
        """Token rows [rows, n_ctx + 1] of pass ``index`` of ``passes`` of this step, on the device."""
        n_ctx, plan = self.spec.n_ctx, self.plan
        rank_rows = plan.rank_batch_tokens // n_ctx
        rows = rank_rows // passes
        first = self.step * (plan.batch_tokens // n_ctx) + self.dp.rank * rank_rows
        out = torch.from_numpy(self.batches.rows(first + index * rows, rows))
        return out.to(self.device, non_blocking=True)

    def after_pass(self, index: int, passes: int, loss: torch.Tensor) -> None:
        """Account the (detached) loss of one pass whose gradient was just added."""
        self.loss_sum += loss.float()
        if index == passes - 1 and self.part_norms:
            for hook in self.part_hooks:
                hook.remove()
            # each pass added (1/passes) g_i, the gradient of its part's mean loss; the mean over
            # the parts of |g_i|^2 is passes^2 sum_i |g_i / passes|^2 / passes
            self.g_small_sq = torch.stack(self.part_norms).square().sum() * passes

    def end_step(self, passes: int) -> None:
        """Clip, measure the noise scale, update the weights and the smoothed loss."""
        cfg = self.config
        step_loss = self.loss_sum / passes
        g_small_sq = self.g_small_sq
        if self.dp.active:
            extras = torch.stack([step_loss.to(torch.float64), grad_sq(self.params)])
            reduced = distributed.all_reduce_gradients(self.dp, self.params, extras)
            step_loss, g_small_sq = reduced[0], reduced[1]
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            g_big_sq = norm.to(torch.float64) ** 2
        else:
            g_big_sq = grad_sq(self.params) if g_small_sq is not None else None
        if self.noise is not None and g_small_sq is not None:
            self.noise.update(g_small_sq, g_big_sq)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        d = cfg.loss_ema_decay
        self.loss_ema.mul_(d).add_(step_loss.to(torch.float64), alpha=1.0 - d)
        self.loss_weight = d * self.loss_weight + (1.0 - d)
        self.step += 1

    def train_step(self) -> float:
        """One optimizer step of this run alone; returns its learning rate."""
        lr = self.begin_step()
        passes = self.plan.passes_at(self.step)
        for i in range(passes):
            rows = self.pass_rows(i, passes)
            with self.autocast():
                loss = training_loss(self.model, self.forward, rows[:, :-1], rows[:, 1:])
            (loss / passes).backward()
            self.after_pass(i, passes, loss.detach())
        self.end_step(passes)
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

    def due_divergence(self) -> str | None:
        """:meth:`diverged` at the steps that check it (curve points, every few steps, the end)."""
        step = self.step
        if self.plan.evaluates_at(step) or step % CHECK_EVERY == 0 or step == self.plan.total_steps:
            return self.diverged()
        return None

    # -- evaluation ----------------------------------------------------------------
    def eval_rows(self) -> int:
        """Test sequences per evaluation pass."""
        return max(1, EVAL_BATCH_FACTOR * self.plan.micro_batch_tokens // self.spec.n_ctx)

    def test_losses(self) -> dict[str, float]:
        """Test loss per distribution (the curve points; the per-position loss is
        :meth:`final_positions`)."""
        dp = self.dp
        out: dict[str, float] = {}
        for name, rows in self.test_rows.items():
            mine = rows[dp.rank::dp.world_size]
            total = evaluate(self.model, self.forward, mine, self.eval_rows(), autocast=self.autocast)
            sums = torch.stack([total.reshape(()),
                                torch.tensor(float(mine.shape[0]), dtype=torch.float64, device=self.device)])
            sums = distributed.all_reduce_sum(dp, sums)
            out[name] = float(sums[0]) / (float(sums[1]) * self.spec.n_ctx)
        return out

    def final_positions(self) -> tuple[list[float], list[float], list[float]]:
        """Loss per context position and its standard errors over the final evaluation's sequences."""
        dp = self.dp
        batch_rows = max(1, self.plan.micro_batch_tokens // self.spec.n_ctx)
        table = evaluate_position_blocks(self.model, self.forward, self.final_rows, self.final_blocks,
                                         slice(dp.rank, None, dp.world_size), batch_rows, autocast=self.autocast)
        return position_means(distributed.all_reduce_sum(dp, table))

    def record_point(self, lr: float, test: dict[str, float]) -> CurvePoint:
        tokens = self.step * self.plan.batch_tokens
        window = self.noise.window() if self.noise else {}
        point = CurvePoint(
            step=self.step, tokens=tokens,
            flops=float(training_flops_per_token(self.spec) * tokens),
            flops_exact=float(training_flops_per_token(self.spec, exact=True) * tokens),
            lr=lr, train_loss=self.smoothed_loss(), test_loss=test,
            noise_scale=window.get("noise_scale"), grad_sq_small=window.get("grad_sq_small"),
            grad_sq_big=window.get("grad_sq_big"), noise_scale_se=window.get("se"),
            noise_steps=int(window.get("steps", 0)), wall_time_s=self.clock(),
        )
        if self.noise and self.step in self.plan.curve_steps:  # windows close at log-spaced points
            self.noise.reset_window()
        self.curve.append(point)
        return point

    def early_stop_check(self, point: CurvePoint) -> bool:
        loss = point.test_loss[self.main_dist]
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evals = loss, point.step, 0
            if self.config.early_stopping:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.named_parameters()}
            return False
        if self.step < self.config.early_stopping_start * self.plan.total_steps:
            return False  # a plateau early on (the unigram loss) is not convergence
        self.bad_evals += 1
        return self.config.early_stopping and self.bad_evals >= self.config.patience

    # -- the loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Start (or continue) the run's clock; weights in training mode."""
        self.peak = matmul_peak(self.device, dtype=self.precision)
        self.started = time.perf_counter() - self.times["wall"]
        self.last_checkpoint = time.perf_counter()
        self.model.train()

    def clock(self) -> float:
        """Seconds of this run so far (earlier sessions included)."""
        return time.perf_counter() - self.started

    def after_step(self, lr: float, on_point: Callable[[CurvePoint], None] | None,
                   test: dict[str, float] | None) -> Outcome | None:
        """Record the curve point (``test``: the losses measured now, at curve points) and decide
        whether the run ends; call after :meth:`due_divergence`."""
        if test is not None:
            point = self.record_point(lr, test)
            if on_point is not None and self.dp.is_main:
                on_point(point)
            if self.early_stop_check(point):
                return "early_stopped", None
        if self.step >= self.plan.total_steps:
            return "finished", None
        return None

    def checkpoint_due(self) -> bool:
        return bool(self.config.checkpoint_dir) and \
            time.perf_counter() - self.last_checkpoint >= self.config.checkpoint_every_s

    def timed_checkpoint(self) -> float:
        """Save a checkpoint; returns the seconds it took (also added to this run's times)."""
        t0 = time.perf_counter()
        self.save_checkpoint()
        self.last_checkpoint = time.perf_counter()
        self.times["checkpoint"] += self.last_checkpoint - t0
        return self.last_checkpoint - t0

    def execute(self, *, progress: bool, on_point: Callable[[CurvePoint], None] | None,
                stop_event: threading.Event | None) -> RunRecord:
        self.try_resume()
        if self.resumed_record is not None:
            return self.resumed_record
        self.start()
        plan = self.plan
        outcome: Outcome | None = None
        bar = progress_bar(progress and self.dp.is_main, plan.total_steps, self.step)
        bar_time = 0.0
        try:
            while outcome is None:
                lr = self.train_step()
                problem = self.due_divergence()
                if problem:
                    outcome = ("diverged", problem)
                    break
                at_point = plan.evaluates_at(self.step)
                test = None
                if at_point:
                    sync(self.device)
                    t0 = time.perf_counter()
                    with torch_threads(self.eval_threads):
                        test = self.test_losses()
                    self.times["eval"] += time.perf_counter() - t0
                outcome = self.after_step(lr, on_point, test)
                if bar is not None:
                    bar.update(1)
                    if time.perf_counter() - bar_time > 0.5:
                        bar_time = time.perf_counter()
                        train_s = self.clock() - self.times["eval"]
                        bar.set_postfix(loss=f"{self.smoothed_loss():.3f}",
                                        tok_s=f"{self.step * plan.batch_tokens / max(train_s, 1e-9):.0f}",
                                        refresh=False)
                stop = stop_event is not None and stop_event.is_set()
                if self.dp.active and at_point:
                    flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
                    stop = float(distributed.all_reduce_sum(self.dp, flag)) > 0
                elif self.dp.active:
                    stop = False
                if outcome is None and stop:
                    outcome = ("interrupted", None)
                elif outcome is None and self.checkpoint_due():
                    self.timed_checkpoint()
        finally:
            if bar is not None:
                bar.close()
        return self.finish(*outcome)

    def finish(self, status: str, error: str | None) -> RunRecord:
        """Stop the clock, run the final per-position evaluation (:meth:`final_positions`, on this
        run's own model, so a packed run's L(t) is that of its lone run), checkpoint, return the record."""
        sync(self.device)
        self.times["wall"] = self.clock()
        self.times["train"] = self.times["wall"] - self.times["eval"] - self.times["checkpoint"]
        if status == "interrupted":
            self.save_checkpoint()
            return build_record(self, status, None, [], self.peak)
        if status == "diverged":
            record = build_record(self, status, error, [], self.peak)
        else:
            if status == "early_stopped" and self.best_weights is not None:
                with torch.no_grad():
                    for name, p in self.model.named_parameters():
                        p.copy_(self.best_weights[name])
            t0 = time.perf_counter()
            with torch_threads(self.eval_threads):
                per_position, per_position_se, per_position_se_shape = self.final_positions()
            self.times["eval"] += time.perf_counter() - t0
            self.ending = status
            self.save_checkpoint()
            record = build_record(self, status, None, per_position, self.peak)
            record.per_position_se, record.per_position_se_shape = per_position_se, per_position_se_shape
        if self.config.checkpoint_dir and self.dp.is_main:
            checkpoint.save_final(self.config.checkpoint_dir, self.run_id, record.to_dict())
        return record

