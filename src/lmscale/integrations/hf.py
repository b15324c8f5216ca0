"""A ``transformers.TrainerCallback`` that records each run's learning curve into an lmscale store.

>>> trainer = Trainer(model, args, train_dataset=train, eval_dataset={"web": web, "code": code},
...                   callbacks=[LmscaleTrainerCallback("runs.sqlite", group="sizes")])
>>> trainer.train()          # then: lmscale fit runs.sqlite; lmscale report --store runs.sqlite ...

At lmscale's log-spaced steps the callback asks the Trainer to evaluate
(every eval dataset: one distribution each, ``eval_<name>_loss``) and to
log the training loss; tokens are the Trainer's own count of the input ids
of every batch (``num_input_tokens_seen``, turned on if it was off); N is
counted on the model. Needs ``pip install 'lmscale[hf]'``.
"""

from __future__ import annotations

import time
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.extras import require
from lmscale.integrations.recorder import PER_DECADE, CurveRecorder

require("transformers", what="lmscale.integrations.hf")

from transformers import TrainerCallback  # noqa: E402


class LmscaleTrainerCallback(TrainerCallback):
    """Write the run's curve into an lmscale store as ``transformers.Trainer`` trains.

    Args:
        store: a :class:`lmscale.store.Store` or its path (created if missing).
        run_name: the run's name in the report (default: ``args.run_name``).
        group, rule, study: the run's tags (e.g. ``group="sizes", rule="converge"``).
        train_distribution: the eval dataset whose loss the laws fit, when
            ``eval_dataset`` is a dict (default: its first key); a single
            eval dataset is named ``eval``.
        per_decade: curve points per decade of steps (lmscale's default 8).
    """

    def __init__(self, store: Any, *, run_name: str | None = None, group: str | None = None, rule: str = "plain",
                 study: str | None = None, train_distribution: str | None = None, per_decade: int = PER_DECADE):
        self._options = dict(store=store, run_name=run_name, group=group, rule=rule, study=study,
                             per_decade=per_decade)
        self._train_distribution = train_distribution
        self.recorder: CurveRecorder | None = None
        self._train_loss: dict[int, float] = {}
        self._lr: dict[int, float] = {}
        self._start = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if args.include_num_input_tokens_seen in ("no", False):
            args.include_num_input_tokens_seen = "all"  # the Trainer counts each batch's input ids
        if not state.is_world_process_zero:
            return
        import torch
        import transformers

        eval_sets = kwargs.get("eval_dataloader")
        name = self._train_distribution or "eval"
        options = dict(self._options)
        options["run_name"] = options["run_name"] or getattr(args, "run_name", None)
        self.recorder = CurveRecorder(
            source="transformers", train_distribution=name, uri=str(args.output_dir), **options,
            fields={"tokens": "Trainer.state.num_input_tokens_seen (input ids of every batch, all ranks)",
                    "loss": "eval loss of the Trainer's evaluation at log-spaced steps"},
        )
        config = {"trainer": "transformers", "model_config": _plain(getattr(model, "config", None)),
                  "training_args": {k: _scalar(v) for k, v in args.to_dict().items()},
                  "has_eval_dataloader": eval_sets is not None}
        self.recorder.begin(model, int(state.max_steps), config,
                            versions={"torch": torch.__version__, "transformers": transformers.__version__})
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.recorder is not None and self.recorder.wants(state.global_step):
            control.should_evaluate = True
            control.should_log = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.recorder is None or not logs:
            return
        if "loss" in logs:
            self._train_loss[state.global_step] = float(logs["loss"])
        if "learning_rate" in logs:
            self._lr[state.global_step] = float(logs["learning_rate"])

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        if self.recorder is None or not metrics or not self.recorder.wants(state.global_step):
            return
        losses = {}
        for key, value in metrics.items():
            if key == "eval_loss":
                losses[self.recorder.train_distribution] = float(value)
            elif key.startswith("eval_") and key.endswith("_loss"):
                losses[key[len("eval_"):-len("_loss")]] = float(value)
        if not losses:
            return
        if self._train_distribution is None and self.recorder.train_distribution not in losses:
            # a dict of eval datasets: its first one is the training distribution
            self.recorder.train_distribution = self._train_distribution = next(iter(losses))
            self.recorder.record.train_distribution = self._train_distribution
        tokens = int(state.num_input_tokens_seen)
        if tokens <= 0:
            raise LmscaleError("the Trainer counted no input tokens (num_input_tokens_seen = 0): the model's "
                               "main_input_name is not among the batch's inputs")
        step = state.global_step
        self.recorder.point(step, tokens, losses, train_loss=self._train_loss.get(step), lr=self._lr.get(step),
                            wall_time_s=time.perf_counter() - self._start)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self.recorder.end("finished", wall_time_s=time.perf_counter() - self._start)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _plain(config: Any) -> dict[str, Any] | None:
    if config is None or not hasattr(config, "to_dict"):
        return None
    return {k: _scalar(v) for k, v in config.to_dict().items()}
