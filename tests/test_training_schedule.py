"""Learning-rate schedules against their closed forms, and the run plan."""

import math

import pytest

from lmscale.errors import LmscaleError
from lmscale.models.spec import ModelSpec
from lmscale.training.config import TrainConfig
from lmscale.training.plan import log_spaced_steps, make_plan, total_steps
from lmscale.training.schedule import default_warmup_steps, learning_rate


def test_cosine_matches_closed_form():
    # S = 110, W = 10, peak 1e-3: warm-up 1e-4 .. 1e-3, then 0.5 p (1 + cos(pi (s - 10) / 100)).
    kw = {"schedule": "cosine", "warmup_steps": 10}
    assert learning_rate(0, 110, 1e-3, **kw) == pytest.approx(1e-4)
    assert learning_rate(4, 110, 1e-3, **kw) == pytest.approx(5e-4)
    assert learning_rate(10, 110, 1e-3, **kw) == pytest.approx(1e-3)
    assert learning_rate(60, 110, 1e-3, **kw) == pytest.approx(0.5e-3)
    assert learning_rate(35, 110, 1e-3, **kw) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(109, 110, 1e-3, **kw) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 0.99)))
    assert learning_rate(110, 110, 1e-3, **kw) == pytest.approx(0.0, abs=1e-15)
    # with a floor: m + (p - m)(1 + cos)/2
    assert learning_rate(60, 110, 1e-3, min_lr_ratio=0.1, **kw) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_wsd_and_constant():
    kw = {"schedule": "wsd", "warmup_steps": 10, "decay_fraction": 0.2}
    # S = 100: stable until 80, then linear to 0 at 100.
    assert learning_rate(50, 100, 2.0, **kw) == 2.0
    assert learning_rate(79, 100, 2.0, **kw) == 2.0
    assert learning_rate(80, 100, 2.0, **kw) == 2.0
    assert learning_rate(90, 100, 2.0, **kw) == pytest.approx(1.0)
    assert learning_rate(95, 100, 2.0, min_lr_ratio=0.5, **kw) == pytest.approx(2.0 - 1.0 * 0.75)
    assert learning_rate(3, 100, 2.0, schedule="constant", warmup_steps=4) == pytest.approx(2.0)
    assert learning_rate(50, 100, 2.0, schedule="constant", warmup_steps=4) == 2.0
    with pytest.raises(LmscaleError):
        learning_rate(0, 10, 1.0, schedule="linear")


def test_default_warmup_and_curve_points():
    assert default_warmup_steps(250_000) == 3000  # [K]'s 3000 steps
    assert default_warmup_steps(1000) == 50
    assert default_warmup_steps(3) == 1
    steps = log_spaced_steps(10_000, 8)
    assert steps[0] == 1 and steps[-1] == 10_000
    # 8 points in every decade of tokens (the first decade has fewer distinct integer steps)
    for lo in (10, 100, 1000):
        assert sum(lo <= s < 10 * lo for s in steps) == 8
    assert log_spaced_steps(37, 8)[-1] == 37


def _config(**kw):
    spec = ModelSpec(n_layer=2, d_model=64, n_head=2, n_ctx=64, n_vocab=512)
    return TrainConfig(model=spec, data_dir="x", **{"tokens": 64 * 64, "batch_tokens": 1024, **kw})


def test_plan_budget_lr_and_micro_batches():
    plan = make_plan(_config(), available_memory=8 * 2**30)
    assert plan.total_steps == 4 and plan.tokens == 4096
    # one pass per step; a step that measures the noise scale (every noise_every-th) splits it
    assert plan.micro_steps == 1 and plan.noise_batches == (512, 1024) and plan.noise_passes == 2
    assert [plan.passes_at(s) for s in range(10)] == [2, 1, 1, 1, 1, 1, 1, 1, 2, 1]
    accumulated = make_plan(_config(micro_batch_tokens=256), available_memory=8 * 2**30)
    assert accumulated.noise_batches == (256, 1024) and accumulated.passes_at(0) == 4
    odd = make_plan(_config(batch_tokens=3 * 64, tokens=3 * 64 * 4), available_memory=8 * 2**30)
    assert odd.noise_batches == (64, 192) and odd.noise_passes == 3
    n = 12 * 2 * 64**2
    assert plan.peak_lr == pytest.approx(0.003239 - 0.0001395 * math.log(n))  # [K] eq. D.1
    # FLOPs budget: C // (6 N B) steps
    assert total_steps(_config(tokens=None, flops=6.0 * n * 1024 * 7.5)) == 7
    dp = make_plan(_config(), world_size=2, available_memory=8 * 2**30)
    assert dp.rank_batch_tokens == 512 and dp.noise_batches == (512, 1024) and dp.noise_every == 1
    assert make_plan(_config(noise_scale=False), available_memory=8 * 2**30).micro_steps == 1
    assert make_plan(_config(dataset_tokens=1000), available_memory=8 * 2**30).dataset_tokens == 1000


def test_lr_reference_batch_applies_the_square_root_rule():
    from lmscale.errors import SpecError

    n = 12 * 2 * 64**2
    rule = 0.003239 - 0.0001395 * math.log(n)  # [K] eq. D.1
    for batch in (256, 1024, 4096):
        cfg = _config(batch_tokens=batch, tokens=batch * 8, lr_reference_batch=1024, lr_scale=3.0)
        assert make_plan(cfg, available_memory=8 * 2**30).peak_lr == pytest.approx(3.0 * rule * math.sqrt(batch / 1024))
    # unset: the rule at every batch; set, another run
    assert make_plan(_config(batch_tokens=4096, tokens=4096 * 8), available_memory=8 * 2**30).peak_lr == pytest.approx(rule)
    assert _config(lr_reference_batch=2048).run_id() != _config().run_id()
    # an explicit lr wins
    assert make_plan(_config(lr=1e-3, lr_reference_batch=256), available_memory=8 * 2**30).peak_lr == 1e-3
    for bad in (0, -5, 1.5, True):
        with pytest.raises(SpecError, match="lr_reference_batch"):
            _config(lr_reference_batch=bad)


@pytest.mark.parametrize("kw, match", [
    ({"tokens": 512}, "smaller than one step"),
    ({"tokens": None, "flops": 1e6}, "smaller than one step"),
    ({"micro_batch_tokens": 1024, "batch_tokens": 1024}, None),
])
def test_plan_rejects_budgets(kw, match):
    if match is None:
        make_plan(_config(**kw), world_size=1, available_memory=8 * 2**30)
        with pytest.raises(LmscaleError, match="must divide the per-rank batch"):
            make_plan(_config(**kw), world_size=2, available_memory=8 * 2**30)
        return
    with pytest.raises(LmscaleError, match=match):
        make_plan(_config(**kw), available_memory=8 * 2**30)


def test_plan_rejects_what_does_not_fit():
    big = ModelSpec(n_layer=48, d_model=8192, n_head=64, n_ctx=2048, n_vocab=50257)
    cfg = TrainConfig(model=big, data_dir="x", steps=10, batch_tokens=2048)
    with pytest.raises(LmscaleError, match="needs about .* GiB"):
        make_plan(cfg, available_memory=16 * 2**30)
