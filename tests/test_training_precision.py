"""Precision: bf16 against fp32 on a tiny model, what ``auto`` chooses, resumes, run ids, the store."""

import dataclasses
import os
import sqlite3
import threading
import time

import pytest

torch = pytest.importorskip("torch")

from lmscale.errors import LmscaleError  # noqa: E402
from lmscale.models.spec import ModelSpec  # noqa: E402
from lmscale.store import Store  # noqa: E402
from lmscale.training import hardware as hw  # noqa: E402
from lmscale.training import precision as prec  # noqa: E402
from lmscale.training import train  # noqa: E402
from lmscale.training.config import TrainConfig  # noqa: E402
from test_store import make_record  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402

CPU = torch.device("cpu")
NATIVE = prec.native_bf16(CPU)


@pytest.fixture(scope="module")
def data():
    return text_data(("stdlib",))


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag): "
                    "bf16 would be emulated, many times slower, and is not what auto would choose")
def test_bf16_and_fp32_agree_on_a_tiny_model(data):
    fp32 = train(tiny_config(precision="fp32"), data=data, progress=False)
    bf16 = train(tiny_config(precision="bf16"), data=data, progress=False)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert bf16.peak_flops > fp32.peak_flops  # MFU against the bf16 peak
    # bf16 matmuls round to 8 bits of mantissa (fp32 sums and softmax): over 60 steps the test
    # losses stay within 0.2% of fp32's (measured: 1.3e-4 at most), and they do differ
    for a, b in zip(fp32.curve, bf16.curve):
        assert b.test_loss["stdlib"] == pytest.approx(a.test_loss["stdlib"], rel=2e-3)
    assert bf16.final_test_loss["stdlib"] == pytest.approx(fp32.final_test_loss["stdlib"], rel=1e-3)
    assert bf16.final_test_loss != fp32.final_test_loss
    assert bf16.final_test_loss["stdlib"] < fp32.curve[0].test_loss["stdlib"] - 1.0  # it learned


def test_auto_rules(monkeypatch):
    wide, narrow = ModelSpec(d_model=256, n_head=4), ModelSpec(d_model=16, n_head=2)
    assert prec.decide_without_measuring("fp32", "cpu", wide)[0] == "fp32"
    assert prec.decide_without_measuring("bf16", "cpu", narrow)[0] == "bf16"
    with pytest.raises(LmscaleError, match="auto, fp32 or bf16"):
        prec.decide_without_measuring("fp16", "cpu", wide)
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert prec.decide_without_measuring("auto", "cpu", narrow) is None  # measured, whatever the width
    assert prec.decide_without_measuring("auto", "cpu", wide) is None
    assert prec._by_peaks(1e11, 4e11)[0] == "bf16" and prec._by_peaks(1e11, 1.2e11)[0] == "fp32"
    assert prec._by_step(1.5, wide, 2048)[0] == "bf16" and prec._by_step(0.9, narrow, 2048)[0] == "fp32"
    assert "0.90x fp32's here at 2/16, 2048-token batches" in prec._by_step(0.9, narrow, 2048)[1]
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert prec.decide_without_measuring("auto", "cpu", wide)[0] == "fp32"  # no native bf16
    assert prec.resolve_precision("auto", CPU, wide)[0] == "fp32"


def test_a_matmul_bound_step_is_decided_by_the_peaks_not_timed(monkeypatch):
    """A GPU study planned on a CPU host (its largest run 24/1536 on 131072-token batches) made
    `sweep plan` time a bf16 step of it on the CPU, for minutes; a matmul-bound step is decided by the
    peaks. The study's small shapes still take the step trial."""
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(hw, "matmul_peak", lambda device, dtype=None: {"fp32": 1e11, "bf16": 2.2e11}[dtype])

    def no_trial(*args, **kwargs):
        raise AssertionError("a matmul-bound step was timed")

    monkeypatch.setattr(prec, "step_speedup", no_trial)
    big = ModelSpec(n_layer=24, d_model=1536, n_head=16, n_ctx=1024, n_vocab=50257)
    assert prec.matmul_bound(big, 131072) and not prec.matmul_bound(ModelSpec(n_layer=2, d_model=48, n_head=3,
                                                                               n_ctx=64, n_vocab=512), 2048)
    precision, why = prec.resolve_precision("auto", CPU, big, 131072)
    assert precision == "bf16" and "matmul-bound" in why and "2.20x" in why
    with pytest.raises(AssertionError, match="timed"):
        prec.resolve_precision("auto", CPU, ModelSpec(n_layer=2, d_model=48, n_head=3, n_ctx=64, n_vocab=512), 2048)


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16: auto never measures a bf16 step here")
def test_step_speedup_is_measured_once_and_decides(tmp_path, monkeypatch):
    import json
    import time

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(hw, "BUSY_SHARE", 2.0)  # any load: the busy case is the next test's
    spec = ModelSpec(n_layer=1, d_model=16, n_head=2, n_ctx=32, n_vocab=256)
    t0 = time.perf_counter()
    first = prec.step_speedup(CPU, spec, 1024)
    measured = time.perf_counter() - t0
    assert 0.05 < first < 50  # a ratio of two step times, both positive and finite
    table = json.loads((tmp_path / prec.STEP_CACHE).read_text())
    (entry,) = table.values()
    assert entry["speedup"] == first
    t0 = time.perf_counter()
    assert prec.step_speedup(CPU, spec, 1024) == first  # read back, not measured again
    assert time.perf_counter() - t0 < measured
    assert prec.cached_step_speedup(spec, 1024, torch.get_num_threads()) == first  # as a sweep reads it
    assert prec.cached_step_speedup(spec, 2048, torch.get_num_threads()) is None  # another batch
    expected = "bf16" if first >= prec.CPU_BF16_MIN_STEP_SPEEDUP else "fp32"
    if prec._by_peaks(hw.matmul_peak(CPU, dtype="fp32"), hw.matmul_peak(CPU, dtype="bf16"))[0] == "fp32":
        expected = "fp32"  # the matmul peaks already say no
    assert prec.resolve_precision("auto", CPU, spec, 1024)[0] == expected


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16: auto never measures a bf16 step here")
def test_a_trial_on_a_busy_machine_is_not_cached_and_keeps_fp32(tmp_path, monkeypatch):
    """Other processes' share of the CPUs during the trial comes from /proc/stat; above BUSY_SHARE
    (here: any share at all) the trial caches nothing and auto keeps fp32, saying why."""
    from lmscale.training.hardware import others_cpu_share

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    # a competing process of one busy thread: at least a fifth of this machine's CPUs is theirs
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)
        _, share = others_cpu_share(lambda: time.sleep(1.0))
    finally:
        hog.kill()
    assert share >= 0.9 / (os.cpu_count() or 1)
    monkeypatch.setattr(hw, "BUSY_SHARE", -1.0)
    spec = ModelSpec(n_layer=1, d_model=16, n_head=2, n_ctx=32, n_vocab=256)
    with pytest.raises(hw.BusyTrial):
        prec.step_speedup(CPU, spec, 1024)
    assert prec.cached_step_speedup(spec, 1024, torch.get_num_threads()) is None
    precision, why = prec.resolve_precision("auto", CPU, spec, 1024)
    assert precision == "fp32"
    if prec._by_peaks(hw.matmul_peak(CPU, dtype="fp32"), hw.matmul_peak(CPU, dtype="bf16"))[0] == "bf16":
        assert "other processes used" in why and "quieter machine" in why


def test_step_trial_times_each_setting_long_enough_and_old_trials_are_not_read(tmp_path, monkeypatch):
    """The bf16/fp32 step trial alternates until each setting has STEP_MIN_SECONDS of timed steps
    (five steps of a 1/16 model are a few milliseconds, which a busy machine decides), and a
    speed-up cached by the earlier five-step trial is not read back."""
    import contextlib
    import json

    from lmscale.training import step_timing

    entered = {"a": 0, "b": 0}

    def counting(name):
        @contextlib.contextmanager
        def context():
            entered[name] += 1
            yield
        return context

    spec = ModelSpec(n_layer=1, d_model=16, n_head=2, n_ctx=32, n_vocab=256)
    best = step_timing.best_step_times(CPU, spec, 256, {"a": counting("a"), "b": counting("b")})
    tries = step_timing.STEP_WARMUP + step_timing.STEP_TRIES
    assert entered["a"] == entered["b"] > tries  # a step of this model is far below 0.3 s / 5
    assert entered["a"] <= step_timing.STEP_WARMUP + step_timing.STEP_MAX_TRIES and best["a"] > 0
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    version, threads = torch.__version__, torch.get_num_threads()
    old_key = prec.step_key(spec, 1024, threads, version)
    (tmp_path / prec.STEP_CACHE).write_text(json.dumps({old_key: {"speedup": 1.37}}))
    assert prec.cached_step_speedup(spec, 1024, threads) is None
    assert prec.speedup_key(spec, 1024, threads, version) == old_key + "|trial=quiet"


def test_a_peak_below_the_one_at_fewer_threads_is_measured_again(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    before = torch.get_num_threads()
    key = lambda t: hw._cpu_peak_key(t, "fp32", torch.__version__)  # noqa: E731
    # 1 thread: 1 GFLOP/s (any real CPU beats it); 2 threads: a busy-spell 1 MFLOP/s, below the floor
    (tmp_path / "peak_flops.json").write_text(json.dumps({key(1): {"flops": 1e9}, key(2): {"flops": 1e6}}))
    try:
        torch.set_num_threads(2)
        assert hw.cached_cpu_peak(2, "fp32") is None  # not trusted without torch either
        assert hw.cpu_peak_check(2, "fp32", torch.__version__) == (1e6, 1e9)
        measured = hw.matmul_peak(CPU, dtype="fp32")
        assert measured > 1e9  # measured again, the higher kept
        assert json.loads((tmp_path / "peak_flops.json").read_text())[key(2)]["flops"] == measured
        # still below a floor from a faster host: measured once, then trusted (checked against that floor)
        (tmp_path / "peak_flops.json").write_text(json.dumps({key(1): {"flops": 1e15}, key(2): {"flops": 1e6}}))
        first = hw.matmul_peak(CPU, dtype="fp32")
        entry = json.loads((tmp_path / "peak_flops.json").read_text())[key(2)]
        assert first == entry["flops"] > 1e6 and entry["checked_floor"] == 1e15
        assert hw.matmul_peak(CPU, dtype="fp32") == first and hw.cached_cpu_peak(2, "fp32") == first
        # a plausible cached peak is read, not measured: a made-up value comes back as it is
        (tmp_path / "peak_flops.json").write_text(json.dumps({key(1): {"flops": 1e9}, key(2): {"flops": 3e9}}))
        assert hw.matmul_peak(CPU, dtype="fp32") == 3e9 and hw.cached_cpu_peak(2, "fp32") == 3e9
    finally:
        torch.set_num_threads(before)


def test_precision_in_the_run_id():
    auto = tiny_config(precision="auto")
    legacy = {k: v for k, v in auto.to_dict().items() if k not in ("precision", "noise_every")}
    assert TrainConfig.from_dict(legacy).run_id() == auto.run_id()  # ids of runs from before
    ids = {tiny_config(precision=p).run_id() for p in ("auto", "fp32", "bf16")}
    assert len(ids) == 3  # an explicit precision is a different measurement
    with pytest.raises(LmscaleError, match="precision"):
        tiny_config(precision="half")


def test_resumed_run_keeps_its_precision(tmp_path, data):
    cfg = tiny_config(precision="auto", steps=30, checkpoint_dir=str(tmp_path), checkpoint_every_s=0.0)
    stop = threading.Event()
    first = train(cfg, data=data, progress=False, stop_event=stop, auto_precision="bf16",
                  on_point=lambda p: stop.set() if p.step >= 8 else None)
    assert first.status == "interrupted" and first.precision == "bf16"
    resumed = train(cfg, data=data, progress=False, auto_precision="fp32")  # the study would say fp32
    assert resumed.status == "finished" and resumed.precision == "bf16" and resumed.steps == 30
    whole = train(dataclasses.replace(cfg, checkpoint_dir=None), data=data, progress=False,
                  auto_precision="bf16")
    assert [p.test_loss for p in resumed.curve] == [p.test_loss for p in whole.curve]


def test_store_records_precision_and_upgrades_old_files(tmp_path):
    old = tmp_path / "old.sqlite"
    from conftest import schema_2_ddl

    legacy = schema_2_ddl()  # a store of schema version 2

    db = sqlite3.connect(old)
    db.executescript(legacy)
    db.execute("INSERT INTO schema_info VALUES (2, '0.1.0', 'then')")
    db.commit()
    db.close()
    store = Store(old)
    rec = dataclasses.replace(make_record("r1"), precision="bf16", packed_with=3)
    store.write_record(rec)
    store.write_record(make_record("r2"))  # a record from before: no precision
    runs = store.runs().set_index("run_id")
    assert runs.loc["r1", "precision"] == "bf16" and runs.loc["r1", "packed_with"] == 3
    assert store.precisions(["r1", "r2", "r3"]) == {"r1": "bf16"}
    store.close()


def test_a_study_never_mixes_precisions(tmp_path):
    from conftest import SMOKE_STUDY
    from lmscale.sweeps import load_study
    from lmscale.sweeps.session import study_precision

    study = load_study(SMOKE_STUDY)
    store = Store(tmp_path / "s.sqlite")
    a, b = study.runs[0].run_id, study.runs[1].run_id
    store.write_record(dataclasses.replace(make_record(a), precision="bf16"))
    assert study_precision(study, store, "cpu", 1)[0] == "bf16"  # the store's, whatever this machine says
    store.write_record(dataclasses.replace(make_record(b), precision="fp32"))
    with pytest.raises(LmscaleError, match="set precision explicitly"):
        study_precision(study, store, "cpu", 1)
    store.close()
