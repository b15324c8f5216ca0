"""The thread count of a lone CPU run: 1 or every CPU, whichever trains the shape faster here."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lmscale.models.spec import ModelSpec  # noqa: E402
from lmscale.training import hardware as hw  # noqa: E402
from lmscale.training import step_timing, train, trainer  # noqa: E402
from lmscale.training.hardware import available_cpus  # noqa: E402
from test_training import text_data, tiny_config  # noqa: E402

SMALL = ModelSpec(n_layer=2, d_model=16, n_head=2, n_ctx=32, n_vocab=256)


def _timings(seconds):
    """A seconds-per-step function from a table {threads: seconds}, counting its calls."""
    calls = []

    def seconds_per_step(threads):
        calls.append(threads)
        return seconds[threads]

    return seconds_per_step, calls


def test_the_faster_count_wins_and_is_measured_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    one_faster, calls = _timings({1: 0.010, 4: 0.013})
    threads, why = step_timing.choose_threads(SMALL, 1024, 4, one_faster)
    assert threads == 1 and "1.30x faster than on 4" in why
    assert calls == [1, 4, 1, 4]  # each count twice, alternately
    again, calls_again = _timings({1: 1.0, 4: 0.001})  # the cache answers: not measured again
    assert step_timing.choose_threads(SMALL, 1024, 4, again)[0] == 1 and calls_again == []
    (entry,) = json.loads((tmp_path / step_timing.THREADS_CACHE).read_text()).values()
    assert entry["one_over_all"] == pytest.approx(0.010 / 0.013)
    # another batch is another measurement; there, every CPU is faster
    all_faster, calls = _timings({1: 0.030, 4: 0.012})
    threads, why = step_timing.choose_threads(SMALL, 2048, 4, all_faster)
    assert threads == 4 and "2.50x faster than on 1" in why and len(calls) == 4


def test_a_count_measured_on_other_step_code_is_measured_again(tmp_path, monkeypatch, request):
    """The cached answer belongs to the code of the step it timed: edit one of the step's modules
    (here: a copy of the package's sources, one byte added to the attention) and the same
    shape, machine and torch are timed again."""
    import shutil

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "lmscale"
    for name in step_timing.STEP_MODULES:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(step_timing.__file__).resolve().parent.parent / name, package / name)
    monkeypatch.setattr(step_timing, "__file__", str(package / "training" / "step_timing.py"))
    step_timing.step_code.cache_clear()
    request.addfinalizer(step_timing.step_code.cache_clear)  # the package's own fingerprint after
    before = step_timing.step_code()
    one_faster, calls = _timings({1: 0.010, 4: 0.013})
    assert step_timing.choose_threads(SMALL, 1024, 4, one_faster)[0] == 1 and len(calls) == 4
    again, calls = _timings({1: 0.030, 4: 0.012})
    assert step_timing.choose_threads(SMALL, 1024, 4, again)[0] == 1 and calls == []  # cached
    with open(package / "models" / "transformer.py", "a") as f:
        f.write("\n")
    step_timing.step_code.cache_clear()
    assert step_timing.step_code() != before
    assert step_timing.choose_threads(SMALL, 1024, 4, again)[0] == 4 and len(calls) == 4  # timed again


def test_a_matmul_bound_step_or_one_cpu_is_not_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    never, calls = _timings({})
    big = ModelSpec(n_layer=6, d_model=384, n_head=6, n_ctx=256, n_vocab=4096)
    threads, why = step_timing.choose_threads(big, 8192, 2, never)
    assert threads == 2 and "matmul-bound" in why
    assert step_timing.choose_threads(SMALL, 1024, 1, never)[0] == 1
    assert calls == [] and not (tmp_path / step_timing.THREADS_CACHE).exists()


@pytest.mark.skipif(available_cpus() < 2, reason="one CPU: there is no thread count to choose")
def test_a_lone_run_trains_on_the_count_it_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(hw, "BUSY_SHARE", 2.0)  # cached whatever the load (the busy case: below)
    data = text_data(("stdlib",))
    config = tiny_config(model=SMALL, threads=None, steps=20)
    record = train(config, data=data, progress=False)
    (entry,) = json.loads((tmp_path / step_timing.THREADS_CACHE).read_text()).values()
    expected = 1 if entry["one_over_all"] <= 1.0 else available_cpus()
    assert record.status == "finished" and record.device.startswith(f"cpu ({expected} threads")
    # the run itself is the run of that thread count: the same losses as when it is set
    fixed = train(tiny_config(model=SMALL, threads=expected, steps=20), data=data, progress=False)
    assert [p.train_loss for p in record.curve] == [p.train_loss for p in fixed.curve]


def test_the_trial_times_warm_steps_long_enough_and_old_counts_are_not_read(tmp_path, monkeypatch):
    """A step that wakes a thread pool of another size is slow; the trial leaves its first steps
    untimed, times steps for at least STEP_MIN_SECONDS, and no count cached by the earlier trial
    (12 steps timed from the run's start) is read back."""
    import time

    from lmscale.training import trainer

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    calls, ends = [], []
    plain_step = trainer._Run.train_step

    def counted(self):
        calls.append(time.perf_counter())
        if len(calls) == 1:
            time.sleep(0.5)  # the first step of a trial: a thread pool woken, memory touched
        out = plain_step(self)
        ends.append(time.perf_counter())
        return out

    monkeypatch.setattr(trainer._Run, "train_step", counted)
    data = text_data(("stdlib",))
    seconds = trainer._seconds_per_step(tiny_config(model=SMALL, steps=20), 1, data)
    timed = len(calls) - trainer.THREAD_TRIAL_WARMUP
    assert timed >= trainer.THREAD_TRIAL_STEPS
    # the timed steps, first start to last end, last at least STEP_MIN_SECONDS (the trial's clock
    # starts a little before the first of them)
    assert ends[-1] - calls[trainer.THREAD_TRIAL_WARMUP] >= step_timing.STEP_MIN_SECONDS * 0.99
    assert seconds < 0.5 / trainer.THREAD_TRIAL_STEPS  # the slow first step is not in it
    old = f"{step_timing.step_key(SMALL, 1024, 4, hw.installed_torch_version() or '')}|omp_wait=default"
    (tmp_path / step_timing.THREADS_CACHE).write_text(json.dumps({old: {"one_over_all": 9.0}}))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    one_faster, calls_now = _timings({1: 0.010, 4: 0.013})
    assert step_timing.choose_threads(SMALL, 1024, 4, one_faster)[0] == 1 and len(calls_now) == 4


@pytest.mark.skipif(available_cpus() < 2, reason="one CPU: there is no thread count to choose")
def test_the_thread_trial_asks_for_no_more_data_than_the_run(tmp_path, monkeypatch):
    """The trial's hundreds of steps cycle over the run's own training set: a 20-step run of
    2048-token batches (41k tokens) on 234k tokens of text trains, where a trial drawing 403 x 2048
    fresh tokens would stop it with "asked for ... training tokens"."""
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    data = text_data(("stdlib",))
    assert (trainer.THREAD_TRIAL_WARMUP + trainer.THREAD_TRIAL_MAX_STEPS) * 2048 > len(data.train) > 20 * 2048
    record = train(tiny_config(model=SMALL, threads=None, steps=20, batch_tokens=2048), data=data, progress=False)
    assert record.status == "finished" and record.steps == 20


def test_a_thread_trial_on_a_busy_machine_serves_the_run_and_is_not_cached(tmp_path, monkeypatch):
    """Where other processes shared the CPUs during the trial (here: any share counts), its answer
    decides this run, says so, and is measured again next time."""
    import time

    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(hw, "BUSY_SHARE", -1.0)

    def slow(seconds):
        def seconds_per_step(threads):
            time.sleep(0.06)  # the trial lasts past MIN_SHARE_SECONDS, so its share is measured
            return seconds[threads]
        return seconds_per_step

    threads, why = step_timing.choose_threads(SMALL, 1024, 4, slow({1: 0.010, 4: 0.013}))
    assert threads == 1 and "not cached" in why and "1.30x faster" in why
    assert not (tmp_path / step_timing.THREADS_CACHE).exists() or not json.loads(
        (tmp_path / step_timing.THREADS_CACHE).read_text())
    threads, why = step_timing.choose_threads(SMALL, 1024, 4, slow({1: 0.030, 4: 0.010}))
    assert threads == 4 and "not cached" in why  # measured again, not read back


_FAULTS = """
import resource, sys
from lmscale.models.spec import ModelSpec
from lmscale.training import hardware, train
from test_training import text_data, tiny_config
if sys.argv[1] == "default":
    hardware.keep_freed_memory = lambda: False
data = text_data()
config = tiny_config(model=ModelSpec(n_layer=4, d_model=80, n_head=5, n_ctx=64, n_vocab=256),
                     steps=30, batch_tokens=2048, eval_tokens=2048, threads=1)
train(config, data=data, progress=False)  # the first run sizes the heap
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
record = train(config, data=data, progress=False)
assert record.status == "finished", record.status
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not hw.on_glibc(), reason="mallopt is glibc's")
def test_a_training_process_reuses_freed_blocks_instead_of_faulting_them_in_again():
    import subprocess
    import sys

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        return int(out.stdout.split()[-1])

    # with glibc's defaults the blocks of a step's activations go back to the kernel when freed
    # and are faulted in (and zeroed) again by a later step: a second run of 30 steps at 4/80
    # faults 30k to 67k pages; with freed blocks kept for reuse, 69 to 2,951 (the heap is sized).
    # Both vary from one process to the next (glibc's default now and then raises its own mmap
    # threshold early and faults only ~700), so each is the median of 3 processes: a kept count
    # as high as the default's would fail both assertions
    default = sorted(faults("default") for _ in range(3))[1]
    kept = sorted(faults("keep") for _ in range(3))[1]
    assert kept < 4_000
    assert kept * 5 < default
