"""Packed runs: the same records as lone runs, each run resumable alone or packed after a kill.

Tolerance: packed matmuls are batched and add in another order, so gradients
differ from a lone run's by about 1e-6 relative; over these runs the
curves (test and train loss, per-position loss) agree to 1e-5 relative, the
squared gradient norms to 1e-4, and the noise scale (a ratio whose
numerator is the difference of those norms, so cancellation magnifies the
rounding) to 1e-2 where that difference exceeds 1e-2 of the norms (where it
does not, as in a run whose whole data set is one batch, the noise scale is
all rounding in a packed and a lone run alike, and may not even be defined).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lmscale.errors import LmscaleError  # noqa: E402
from lmscale.training import train  # noqa: E402
from lmscale.training.checkpoint import state_path  # noqa: E402
from lmscale.training.packed import train_packed  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402

HERE = Path(__file__).resolve().parent
REL, NOISE_REL = 1e-5, 1e-2


def pack_configs(**kw):
    """Three runs of one shape: other seed, learning rate, budget, dataset size, early stopping."""
    base = {"noise_every": 2, **kw}
    return [tiny_config(steps=36, **base),
            tiny_config(seed=1, lr=2e-3, steps=24, dataset_tokens=4096, **base),
            tiny_config(seed=2, steps=36, lr=1e-2, dataset_tokens=128, early_stopping=True, eval_every=4,
                        patience=2, **base)]


def assert_same_record(a, b, exact=False):
    approx = (lambda x: x) if exact else (lambda x: pytest.approx(x, rel=REL))
    assert (a.run_id, a.status, a.steps, a.tokens, a.precision) == (b.run_id, b.status, b.steps, b.tokens,
                                                                    b.precision)
    assert [p.step for p in a.curve] == [p.step for p in b.curve]
    for p, q in zip(a.curve, b.curve):
        assert p.lr == q.lr and p.tokens == q.tokens
        assert p.train_loss == approx(q.train_loss)
        assert p.test_loss == approx(q.test_loss)
        if exact:
            assert p.noise_scale == q.noise_scale
        elif q.grad_sq_small is not None:  # the measured norms agree as the losses do
            assert p.grad_sq_small == pytest.approx(q.grad_sq_small, rel=10 * REL)
            assert p.grad_sq_big == pytest.approx(q.grad_sq_big, rel=10 * REL)
            resolved = abs(q.grad_sq_small - q.grad_sq_big) / q.grad_sq_small  # tr(Sigma)'s share of |g|^2
            if resolved > 1e3 * REL:  # where rounding cannot swamp the difference, B agrees too
                assert (p.noise_scale is None) == (q.noise_scale is None)  # None: |g_small| < |g_big|
                if q.noise_scale is not None:
                    assert p.noise_scale == pytest.approx(q.noise_scale, rel=NOISE_REL)
        else:
            assert p.grad_sq_small is None and p.noise_scale is None
    assert a.final_test_loss == approx(b.final_test_loss)
    assert a.per_position_loss == approx(b.per_position_loss)


@pytest.fixture(scope="module")
def data():
    return text_data(("stdlib", "reversed"))


@pytest.fixture(scope="module")
def packed(data):
    return train_packed(pack_configs(), data=data)


def test_packed_runs_match_lone_runs(data, packed):
    lone = [train(cfg, data=data, progress=False) for cfg in pack_configs()]
    assert [r.status for r in packed] == ["finished", "finished", "early_stopped"]
    for a, b in zip(packed, lone):
        assert a.packed_with == 3 and b.packed_with == 1
        assert_same_record(a, b)
    # runs that end (budget, early stopping) leave the pack; the others go on
    assert packed[1].steps == 24 and packed[0].steps == 36 and packed[2].steps < 36


def test_packing_refuses_runs_of_other_shapes(data):
    from lmscale.models.spec import ModelSpec

    other = tiny_config(model=ModelSpec(n_layer=1, d_model=32, n_head=2, n_ctx=32, n_vocab=256))
    with pytest.raises(LmscaleError, match="one shape"):
        train_packed([tiny_config(), other], data=data)
    lstm = ModelSpec(architecture="lstm", n_layer=1, d_model=32, n_ctx=32, n_vocab=256)
    assert tiny_config(model=lstm).pack_key() is None
    assert tiny_config().pack_key() == tiny_config(seed=3, lr=1e-3, steps=5).pack_key()
    assert tiny_config().pack_key() != tiny_config(batch_tokens=1024).pack_key()


KILLED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_training import text_data
    from test_training_packed import pack_configs
    from lmscale.training.packed import train_packed
    train_packed(pack_configs(checkpoint_dir={ckpt!r}, checkpoint_every_s=0.05), data=text_data(("stdlib", "reversed")))
""")


def test_packed_runs_resume_after_a_kill(tmp_path, data, packed):
    ckpt = tmp_path / "ckpt"
    configs = pack_configs(checkpoint_dir=str(ckpt), checkpoint_every_s=0.05)
    script = tmp_path / "pack.py"
    script.write_text(KILLED.format(tests=str(HERE), ckpt=str(ckpt)))
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = state_path(ckpt, configs[0].run_id())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(first.read_text()).get("step", 0) >= 16:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = [json.loads(state_path(ckpt, c.run_id()).read_text()) for c in configs]
    assert all(0 < s["step"] < c.steps for s, c in zip(states[:2], configs)), states
    assert "final_record" in states[2]  # it had stopped early, before the kill
    # the second run resumes alone, the other two packed: each from its own checkpoint
    alone = train(configs[1], data=data, progress=False)
    rest = train_packed([configs[0], configs[2]], data=data)
    for a, b in zip([rest[0], alone, rest[1]], packed):
        assert_same_record(a, b)
