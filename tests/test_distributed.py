"""Data-parallel training under torchrun (gloo, 2 CPU processes) equals one process."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lmscale.training import RunRecord, train  # noqa: E402
from lmscale.training.noise import simple_noise_scale  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402

HERE = Path(__file__).resolve().parent

WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from test_training import text_data, tiny_config
    from lmscale.training import train
    cfg = tiny_config(**json.loads({kw!r}))
    rec = train(cfg, data=text_data(("stdlib", "reversed")), progress=False)
    if os.environ["RANK"] == "0":
        with open({out!r}, "w") as fh:
            json.dump(rec.to_dict(), fh)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_match_one_process(tmp_path):
    kw = {"steps": 24, "batch_tokens": 512, "threads": 1, "noise_every": 1}  # DDP measures every step
    out = tmp_path / "rank0.json"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(HERE), kw=json.dumps(kw), out=str(out)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = RunRecord.from_dict(json.loads(out.read_text()))

    # one process, same global batch, two micro-batches of the per-rank size
    single = train(tiny_config(micro_batch_tokens=256, **kw), data=text_data(("stdlib", "reversed")),
                   progress=False)
    assert ddp.world_size == 2 and ddp.status == single.status == "finished"
    assert ddp.run_id == single.run_id or ddp.config["micro_batch_tokens"] is None
    assert [p.step for p in ddp.curve] == [p.step for p in single.curve]
    for a, b in zip(ddp.curve, single.curve):
        assert a.lr == b.lr and a.tokens == b.tokens
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        for name in ("stdlib", "reversed"):
            assert a.test_loss[name] == pytest.approx(b.test_loss[name], rel=1e-4)
    assert ddp.per_position_loss == pytest.approx(single.per_position_loss, rel=1e-4)
    # each rank scores every other test sequence into the same blocks: the tables add up to one
    assert ddp.per_position_se == pytest.approx(single.per_position_se, rel=1e-3)
    # B_small = per-rank batch, B_big = global batch: a noise scale comes for free
    # B_small = the per-rank batch (256 tokens), B_big = the global batch (512): the all-reduced
    # gradient is the single process's accumulated one, so |g_big|^2 agrees; |g_small|^2 is the
    # mean over the ranks here and one micro-batch there, so only its scale is compared
    pairs = [(a, b) for a, b in zip(ddp.curve, single.curve) if b.noise_scale is not None]
    assert len(pairs) >= 5
    for a, b in pairs:
        assert a.grad_sq_big == pytest.approx(b.grad_sq_big, rel=1e-3)
        assert a.noise_scale == pytest.approx(simple_noise_scale(a.grad_sq_small, a.grad_sq_big, 256, 512))
        assert 0.5 < a.grad_sq_small / b.grad_sq_small < 2.0
    assert single.curve[-1].train_loss < single.curve[0].train_loss - 1.0
