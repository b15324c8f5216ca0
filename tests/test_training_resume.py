"""Checkpoints: an interrupted and resumed run equals an uninterrupted one, bit for bit."""

import json
import threading
from dataclasses import asdict

import pytest

torch = pytest.importorskip("torch")

from lmscale.training import train  # noqa: E402
from lmscale.training.checkpoint import state_path  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402


def _curve(rec):
    return [{k: v for k, v in asdict(p).items() if k != "wall_time_s"} for p in rec.curve]


@pytest.mark.parametrize("extra", [{}, {"model_dropout": 0.1, "micro_batch_tokens": 128}])
def test_resume_gives_identical_curve(tmp_path, extra):
    data = text_data(("stdlib",))
    kw = dict(steps=40, batch_tokens=512)
    if extra:
        from lmscale.models.spec import ModelSpec

        kw["model"] = ModelSpec(n_layer=2, d_model=32, n_head=2, n_ctx=32, n_vocab=256,
                                dropout=extra["model_dropout"])
        kw["micro_batch_tokens"] = extra["micro_batch_tokens"]
    whole = train(tiny_config(**kw), data=data, progress=False)

    ckpt = tmp_path / "ckpt"
    cfg = tiny_config(checkpoint_dir=str(ckpt), checkpoint_every_s=0.0, **kw)
    stop = threading.Event()
    first = train(cfg, data=data, progress=False, stop_event=stop,
                  on_point=lambda p: stop.set() if p.step >= 13 else None)
    assert first.status == "interrupted" and first.steps == 13
    saved = json.loads(state_path(ckpt, cfg.run_id()).read_text())
    assert saved["step"] == 13 and saved["checkpoints"][0]["step"] == 13
    assert 1 <= len(list(ckpt.glob("*.safetensors"))) <= 2  # the last two are kept

    resumed = train(cfg, data=data, progress=False)
    assert resumed.status == "finished" and resumed.steps == 40
    assert _curve(resumed) == _curve(whole)
    assert resumed.per_position_loss == whole.per_position_loss
    assert resumed.final_test_loss == whole.final_test_loss

    # a finished run is not trained again: its record comes back from the checkpoint
    again = train(cfg, data=data, progress=False)
    assert _curve(again) == _curve(whole) and again.status == "finished"


def test_other_run_in_same_directory_starts_fresh(tmp_path):
    data = text_data(("stdlib",))
    a = train(tiny_config(steps=8, checkpoint_dir=str(tmp_path)), data=data, progress=False)
    b = train(tiny_config(steps=8, seed=1, checkpoint_dir=str(tmp_path)), data=data, progress=False)
    assert a.run_id != b.run_id and b.steps == 8
    assert a.curve[-1].train_loss != b.curve[-1].train_loss


def test_resume_keeps_early_stopping_state(tmp_path):
    data = text_data(("stdlib",))
    kw = dict(steps=300, dataset_tokens=128, batch_tokens=128, early_stopping=True, patience=2,
              eval_every=10, lr=1e-2)
    whole = train(tiny_config(**kw), data=data, progress=False)
    assert whole.status == "early_stopped"
    cfg = tiny_config(checkpoint_dir=str(tmp_path), **kw)
    stop = threading.Event()
    first = train(cfg, data=data, progress=False, stop_event=stop,
                  on_point=lambda p: stop.set() if p.step >= 19 else None)
    assert first.status == "interrupted"
    resumed = train(cfg, data=data, progress=False)
    assert resumed.status == "early_stopped" and _curve(resumed) == _curve(whole)
    assert resumed.per_position_loss == whole.per_position_loss  # measured on the restored best weights
