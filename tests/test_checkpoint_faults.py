"""Checkpoints damaged on disk: detected by the checksum recorded at save time, skipped with a warning,
the run resumed from the last good checkpoint (or from scratch) with the uninterrupted run's curve."""

import json
import os
import subprocess
import threading
from dataclasses import asdict

import pytest

torch = pytest.importorskip("torch")

from lmscale.errors import DiskFullError, LmscaleError  # noqa: E402
from lmscale.training import checkpoint, train  # noqa: E402
from lmscale.training.checkpoint import CheckpointWarning, state_path  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402

KW = dict(steps=30, batch_tokens=512)


def _curve(rec):
    return [{k: v for k, v in asdict(p).items() if k != "wall_time_s"} for p in rec.curve]


@pytest.fixture(scope="module")
def data():
    return text_data(("stdlib",))


@pytest.fixture(scope="module")
def whole(data):
    return train(tiny_config(**KW), data=data, progress=False)


def _interrupted(tmp_path, data, stops=(9, 17)):
    """A run checkpointed at each step of ``stops`` (interrupted there, resumed), then left."""
    cfg = tiny_config(checkpoint_dir=str(tmp_path), checkpoint_every_s=1e9, **KW)
    for at in stops:
        stop = threading.Event()
        rec = train(cfg, data=data, progress=False, stop_event=stop,
                    on_point=lambda p, at=at, stop=stop: stop.set() if p.step >= at else None)
        assert rec.status == "interrupted"
    saved = json.loads(state_path(tmp_path, cfg.run_id()).read_text())
    return cfg, saved["checkpoints"]


def test_truncated_newest_falls_back_to_previous(tmp_path, data, whole):
    cfg, kept = _interrupted(tmp_path, data)
    new, old = (e["step"] for e in kept)
    assert 9 <= old < new and all(len(e["sha256"]) == 64 for e in kept)
    newest = tmp_path / kept[0]["tensors"]
    os.truncate(newest, newest.stat().st_size // 2)
    with pytest.warns(CheckpointWarning, match=rf"step {new} .*bytes.*from the previous one \(step {old}\)"):
        state, _ = checkpoint.load(tmp_path, cfg.run_id())
    assert state["step"] == old
    with pytest.warns(CheckpointWarning):
        resumed = train(cfg, data=data, progress=False)
    assert resumed.status == "finished" and _curve(resumed) == _curve(whole)
    assert resumed.final_test_loss == whole.final_test_loss


def test_flipped_byte_detected_by_checksum_then_from_scratch(tmp_path, data, whole):
    cfg, kept = _interrupted(tmp_path, data)
    for entry in kept:  # same size, one byte changed: only the checksum can tell
        path = tmp_path / entry["tensors"]
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.warns(CheckpointWarning, match="SHA-256 differs") as caught:
        assert checkpoint.load(tmp_path, cfg.run_id()) is None
    assert "starts again from scratch" in str(caught[-1].message)
    with pytest.warns(CheckpointWarning):
        resumed = train(cfg, data=data, progress=False)
    assert _curve(resumed) == _curve(whole)


def test_damaged_json_restarts_from_scratch(tmp_path, data, whole):
    cfg, _ = _interrupted(tmp_path, data, stops=(9,))
    path = state_path(tmp_path, cfg.run_id())
    path.write_text(path.read_text()[:40])
    with pytest.warns(CheckpointWarning, match="damaged checkpoint state"):
        resumed = train(cfg, data=data, progress=False)
    assert _curve(resumed) == _curve(whole)


def test_other_tokenizer_refused_on_resume(tmp_path, data):
    cfg, _ = _interrupted(tmp_path, data, stops=(9,))
    other = text_data(("stdlib",))
    other.tokenizer_hash = "sha256:0000"
    with pytest.raises(LmscaleError, match=r"tokenized with arrays, but .* now holds tokenizer sha256:0000"):
        train(cfg, data=other, progress=False)


def test_full_disk_keeps_previous_checkpoint(tmp_path, data):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN in this container)")
    try:
        cfg = tiny_config(checkpoint_dir=str(mnt), checkpoint_every_s=1e9, **KW)
        stop = threading.Event()
        train(cfg, data=data, progress=False, stop_event=stop,
              on_point=lambda p: stop.set() if p.step >= 9 else None)
        good = checkpoint.load(mnt, cfg.run_id())
        filler = mnt / "filler"
        with open(filler, "wb") as fh, pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        with pytest.raises(DiskFullError, match="no space left .*previous checkpoint is intact"):
            train(cfg, data=data, progress=False)  # runs to the end, where its checkpoint is written
        again = checkpoint.load(mnt, cfg.run_id())
        assert again[0] == good[0] and again[1].keys() == good[1].keys()
        assert all(torch.equal(again[1][k], good[1][k]) for k in good[1])
        assert not [p for p in mnt.iterdir() if p.name.startswith(".")]  # no temporary file left
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_killed_between_the_last_checkpoint_and_the_record_ends_as_it_would_have(tmp_path, data, whole, monkeypatch):
    """The end of a run saves a checkpoint, then the final record; a kill between the two left a
    checkpoint at the last step, and the resumed run trained one step more than its budget."""
    cfg = tiny_config(checkpoint_dir=str(tmp_path), checkpoint_every_s=1e9, **KW)
    real = checkpoint.save_final

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the final record was saved")

    monkeypatch.setattr(checkpoint, "save_final", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data=data, progress=False)
    state, _ = checkpoint.load(tmp_path, cfg.run_id())
    assert state["step"] == KW["steps"] and "final_record" not in state
    monkeypatch.setattr(checkpoint, "save_final", real)
    resumed = train(cfg, data=data, progress=False)
    assert resumed.status == "finished" and resumed.steps == whole.steps == KW["steps"]
    assert _curve(resumed) == _curve(whole) and resumed.final_test_loss == whole.final_test_loss
    assert resumed.per_position_loss == pytest.approx(whole.per_position_loss, rel=1e-6)
    assert "final_record" in checkpoint.load(tmp_path, cfg.run_id())[0]  # saved this time
