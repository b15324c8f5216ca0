"""A PyTorch Lightning ``Callback`` that records each run's learning curve into an lmscale store.

>>> trainer = lightning.Trainer(max_steps=10_000, callbacks=[LmscaleLightningCallback("runs.sqlite")])
>>> trainer.fit(module, train_loader, val_loader)

At lmscale's log-spaced steps the callback measures the validation loss
itself (the module's ``validation_step`` over the validation data, what it
returns or logs as ``monitor``, weighted by tokens; its ``self.log`` calls
are captured, not sent to the loggers), so the curve does not depend on
``val_check_interval``. Tokens are counted from the training batches; N on
the module. Needs ``pip install 'lmscale[lightning]'``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.extras import require
from lmscale.integrations.recorder import PER_DECADE, CurveRecorder

require("lightning", what="lmscale.integrations.lightning")

import lightning.pytorch as pl  # noqa: E402


def batch_tokens(batch: Any) -> int:
    """Tokens in a batch: ``input_ids`` of a dict, the first tensor of a tuple, or the tensor."""
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.numel())
    if isinstance(batch, Mapping):
        if "input_ids" in batch:
            return int(batch["input_ids"].numel())
        batch = list(batch.values())
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].numel())
    raise LmscaleError(f"cannot count the tokens of a {type(batch).__name__} batch: give tokens_fn=")


class LmscaleLightningCallback(pl.Callback):
    """Write the run's curve into an lmscale store as Lightning trains.

    Args:
        store: a :class:`lmscale.store.Store` or its path (created if missing).
        val_dataloaders: the validation data: a DataLoader, or a dict of
            distribution name -> DataLoader (the first is the training
            distribution). Default: the module's ``val_dataloader()``.
        monitor: the name ``validation_step`` logs its loss under (used when
            it returns none).
        max_batches: validation batches per evaluation (None: all).
        tokens_fn: tokens of a training batch (default :func:`batch_tokens`).
        run_name, group, rule, study: the run's name and tags in the store.
        per_decade: curve points per decade of steps (lmscale's default 8).
    """

    def __init__(self, store: Any, *, val_dataloaders: Any = None, monitor: str = "val_loss",
                 max_batches: int | None = None, tokens_fn: Callable[[Any], int] | None = None,
                 run_name: str | None = None, group: str | None = None, rule: str = "plain",
                 study: str | None = None, per_decade: int = PER_DECADE):
        self._options = dict(store=store, run_name=run_name, group=group, rule=rule, study=study,
                             per_decade=per_decade)
        self.val_dataloaders = val_dataloaders
        self.monitor = monitor
        self.max_batches = max_batches
        self.tokens_fn = tokens_fn or batch_tokens
        self.recorder: CurveRecorder | None = None
        self.tokens = 0
        self._last_step = 0
        self._start = 0.0

    def _loaders(self, module: Any) -> dict[str, Any]:
        loaders = self.val_dataloaders
        if loaders is None:
            try:
                loaders = module.val_dataloader()
            except (NotImplementedError, AttributeError, TypeError):
                loaders = None
        if loaders is None:
            raise LmscaleError("LmscaleLightningCallback needs validation data: give val_dataloaders= "
                               "(or define the module's val_dataloader())")
        if isinstance(loaders, Mapping):
            return dict(loaders)
        if isinstance(loaders, list | tuple):
            return {"val" if i == 0 else f"val_{i}": d for i, d in enumerate(loaders)}
        return {"val": loaders}

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._val = self._loaders(pl_module)
        if not trainer.is_global_zero:
            return
        import lightning
        import torch

        total = trainer.estimated_stepping_batches
        self.recorder = CurveRecorder(
            source="lightning", train_distribution=next(iter(self._val)), **self._options,
            uri=str(trainer.default_root_dir),
            fields={"tokens": f"counted from the training batches ({getattr(self.tokens_fn, '__name__', 'tokens_fn')}"
                              ", x world size)",
                    "loss": f"validation_step over the validation data at log-spaced steps ('{self.monitor}')"},
        )
        config = {"trainer": "lightning", "module": type(pl_module).__name__,
                  "hparams": {k: _scalar(v) for k, v in dict(getattr(pl_module, "hparams", {}) or {}).items()},
                  "max_steps": trainer.max_steps, "accumulate_grad_batches": trainer.accumulate_grad_batches,
                  "world_size": trainer.world_size}
        self.recorder.begin(pl_module, int(total) if math.isfinite(total) else -1, config,
                            versions={"torch": torch.__version__, "lightning": lightning.__version__})
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.tokens += self.tokens_fn(batch) * trainer.world_size
        step = trainer.global_step
        if self.recorder is None or step == self._last_step or not self.recorder.wants(step):
            return
        self._last_step = step
        losses = self._evaluate(trainer, pl_module)
        train = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.recorder.point(step, self.tokens, losses, train_loss=None if train is None else float(train),
                            lr=lr, wall_time_s=time.perf_counter() - self._start)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.recorder is not None:
            self.recorder.end("finished", wall_time_s=time.perf_counter() - self._start)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.recorder is not None and self.recorder.record is not None:
            status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            self.recorder.end(status, error=f"{type(exception).__name__}: {exception}")

    def _evaluate(self, trainer: Any, module: Any) -> dict[str, float]:
        """Token-weighted mean validation loss per distribution, the module's logging captured."""
        import torch
        from lightning.pytorch.utilities import move_data_to_device

        logged: dict[str, float] = {}

        def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            logged[name] = float(value)

        def log_dict(values: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            for name, value in values.items():
                log(name, value)

        was_training = module.training
        module.log, module.log_dict = log, log_dict  # instance attributes shadow the methods, for now
        out: dict[str, float] = {}
        try:
            module.eval()
            with torch.no_grad():
                for k, (name, loader) in enumerate(self._val.items()):
                    total = weight = 0.0
                    for i, batch in enumerate(loader):
                        if self.max_batches is not None and i >= self.max_batches:
                            break
                        logged.clear()
                        batch = move_data_to_device(batch, module.device)
                        result = module.validation_step(batch, i, k) if len(self._val) > 1 \
                            else module.validation_step(batch, i)
                        loss = result.get("loss", result.get(self.monitor)) if isinstance(result, Mapping) \
                            else result
                        if loss is None:
                            loss = logged.get(self.monitor)
                        if loss is None:
                            raise LmscaleError(f"validation_step returned no loss and logged no {self.monitor!r}: "
                                               "return the loss, or give monitor= the name it logs")
                        n = self.tokens_fn(batch)
                        total += float(loss) * n
                        weight += n
                    out[name] = total / weight if weight else math.nan
        finally:
            del module.log, module.log_dict
            module.train(was_training)
        return out


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
