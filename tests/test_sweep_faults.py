"""Faults inside a real sweep of the smoke study, each injected for real and survived with nothing
lost and nothing trained twice: a worker SIGKILLed while the driver lives, a checkpoint truncated on
disk, the disk filling up (a small tmpfs for the store's directory), the data changed under the study.

Afterwards: ``PRAGMA integrity_check`` is ok, every run finished exactly once, no curve point is
duplicated, and the results equal those of the uninterrupted sweep (``smoke_store``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from lmscale.store import Store
from lmscale.sweeps import load_study
from lmscale.sweeps.local import plan_workers
from lmscale.training.hardware import available_cpus
from test_sweep_run import DONE, SMOKE, alive, children, statuses, sweep_cmd

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def planned() -> set[str]:
    return {r.run_id for r in load_study(SMOKE).runs}


def _args() -> tuple[str, ...]:
    _, threads = plan_workers(6, available_cpus())  # as the uninterrupted smoke_store had them
    return ("--workers", "2", "--threads", str(threads))


def _state_files(store: Path) -> dict[str, Path]:
    """Sweep run id -> its checkpoint JSON (named by the trainer's run id) in ``<store>.runs``."""
    return {path.parent.name: path for path in Path(str(store) + ".runs").glob("*/*.json")}


def _checkpointed(store: Path) -> set[str]:
    """Runs whose checkpoint JSON lists at least one tensor file."""
    out = set()
    for run_id, path in _state_files(store).items():
        try:
            if json.loads(path.read_text()).get("checkpoints"):
                out.add(run_id)
        except (OSError, ValueError):
            pass
    return out


def _often_checkpointed(folder: Path) -> Path:
    """The smoke study checkpointing every 0.2 s: a quiet machine trains a smoke run in about a second,
    within the study's 2 s interval. The interval is an execution setting, not part of a run's id, so
    the runs and their results are the uninterrupted smoke sweep's."""
    study = folder / "smoke.toml"
    study.write_text(SMOKE.read_text().replace("checkpoint_every_s = 2.0", "checkpoint_every_s = 0.2"))
    return study


def _ended(store: Path) -> set[str]:
    """Runs whose checkpoint JSON holds the final record (trained to the end, row maybe not written)."""
    out = set()
    for run_id, path in _state_files(store).items():
        try:
            if "final_record" in json.loads(path.read_text()):
                out.add(run_id)
        except (OSError, ValueError):
            pass
    return out


def _start(store: Path, log: Path, *extra: str, study: Path = SMOKE) -> subprocess.Popen:
    """The sweep in the background, stderr (progress, warnings) to ``log``, stdout to ``log.out``."""
    return subprocess.Popen(sweep_cmd("run", str(study), "--store", str(store), *_args(), *extra),
                            stdout=open(str(log) + ".out", "w"), stderr=open(log, "w"))


def _wait_for(proc: subprocess.Popen, log: Path, ready, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the sweep ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _workers(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode()
        except OSError:
            continue
        if "spawn_main" in cmd:
            found.append(child)
    return found


def _finish(store: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(sweep_cmd("run", str(SMOKE), "--store", str(store), *_args(), "--json", "--quiet"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout)


def _check_store(store: Path, planned: set[str], smoke_store: Path) -> None:
    """Sound, each planned run once and finished, no duplicated curve point, same results."""
    db = Store(store)
    try:
        assert db.integrity_check() == "ok"
        runs = db.runs()
        assert sorted(runs["run_id"]) == sorted(planned) and set(runs["status"]) <= set(DONE)
        curves = db.curves()
        assert not curves.duplicated(["run_id", "idx"]).any()
        assert not curves.duplicated(["run_id", "step"]).any()
        for _, curve in curves.groupby("run_id"):
            assert curve["step"].is_monotonic_increasing
        mine = db.final_points().set_index("run_id").sort_index()
        with Store(smoke_store) as ref_db:
            reference = ref_db.final_points().set_index("run_id").sort_index()
            ref_points = ref_db.curves().groupby("run_id").size().sort_index()
        assert list(mine.index) == list(reference.index)
        assert list(mine["steps"]) == list(reference["steps"])
        assert list(mine["loss"]) == pytest.approx(list(reference["loss"]), rel=1e-5)
        assert list(curves.groupby("run_id").size().sort_index()) == list(ref_points)
    finally:
        db.close()


def test_worker_sigkilled_while_driver_lives(tmp_path, planned, smoke_store):
    store, log = tmp_path / "smoke.sqlite", tmp_path / "sweep.log"
    proc = _start(store, log, "--json", study=_often_checkpointed(tmp_path))
    try:
        def ready() -> bool:
            running = {r for r, s in statuses(store).items() if s == "running"}
            # both workers busy (the one killed is training), each run with a checkpoint to resume from
            return len(running) == 2 and running <= _checkpointed(store) and len(_workers(proc.pid)) == 2

        _wait_for(proc, log, ready, "a running run with a checkpoint")
        victim = _workers(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)  # as the OOM killer does
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "died (exit code -9)" in text and "resumes from its last checkpoint" in text
    assert "Traceback" not in text
    assert not alive(victim)
    _check_store(store, planned, smoke_store)
    outcome = json.loads(Path(str(log) + ".out").read_text())
    assert sorted(outcome["trained"]) == sorted(planned)  # each run finished exactly once
    assert outcome["counts"] == {"finished": len(planned)} and not outcome["interrupted"]


def test_truncated_checkpoint_resumes_from_last_good_or_scratch(tmp_path, planned, smoke_store):
    store, log = tmp_path / "smoke.sqlite", tmp_path / "sweep.log"
    proc = _start(store, log, study=_often_checkpointed(tmp_path))
    try:
        def ready() -> bool:
            running = {r for r, s in statuses(store).items() if s == "running"}
            return bool(running & _checkpointed(store) - _ended(store))

        _wait_for(proc, log, ready, "a running run with a checkpoint")
        proc.send_signal(signal.SIGKILL)  # the driver and its workers die mid-run
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)  # the workers' parent-death signal
    before = statuses(store)
    finished_before = {r for r, s in before.items() if s in DONE}
    damaged = {}
    # a run whose worker saved its final record before the driver died resumes from that record,
    # not from its tensors: only the others have a checkpoint to damage
    for run_id in ({r for r, s in before.items() if s == "running"} & _checkpointed(store)) - _ended(store):
        path = _state_files(store)[run_id]
        state = json.loads(path.read_text())
        newest = path.parent / state["checkpoints"][0]["tensors"]
        os.truncate(newest, newest.stat().st_size // 3)  # a write cut short, as on a crashed disk
        damaged[run_id] = len(state["checkpoints"])
    assert damaged
    second, outcome = _finish(store)
    for run_id, kept in damaged.items():
        said = [line for line in second.stderr.splitlines() if f"/{run_id}/" in line and "damaged" in line]
        assert said, second.stderr[-3000:]
        assert ("from the previous one" if kept > 1 else "from scratch") in said[0]
    assert set(outcome["skipped"]) == finished_before  # finished runs were not trained again
    assert sorted(outcome["trained"] + outcome["skipped"]) == sorted(planned)  # each exactly once
    _check_store(store, planned, smoke_store)


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs (the smoke sweep's store and checkpoints need about 15 MB)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk for real needs a small tmpfs, and mounting one needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN here)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_disk_full_stops_the_sweep_then_it_resumes(small_disk, tmp_path, planned, smoke_store):
    store, log = small_disk / "smoke.sqlite", tmp_path / "sweep.log"
    filler = small_disk / "filler"
    proc = _start(store, log)
    try:
        def ready() -> bool:
            now = statuses(store)
            return any(s in DONE for s in now.values()) and "running" in now.values()

        _wait_for(proc, log, ready, "one run finished and another running")
        with open(filler, "wb") as fh:  # another program fills the disk
            try:
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
            except OSError:
                pass
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("lmscale sweep: error:")]
    assert len(errors) == 1 and "no space left on the device" in errors[0] and "the sweep stopped" in errors[0]
    assert "lmscale sweep: stopping" in text  # said as soon as it happened, while the workers checkpoint
    assert "Traceback" not in text
    db = Store(store)
    assert db.integrity_check() == "ok"
    finished_before = {r for r, s in db.status_of().items() if s in DONE}
    db.close()
    assert finished_before
    from lmscale.training import checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged checkpoint would warn
        for path in _state_files(store).values():
            assert checkpoint.load(path.parent, path.stem) is not None
    assert not list(small_disk.rglob(".*.safetensors.*"))  # no half-written temporary file left

    filler.unlink()
    second, outcome = _finish(store)
    assert finished_before <= set(outcome["skipped"])
    assert sorted(outcome["trained"] + outcome["skipped"]) == sorted(planned)
    _check_store(store, planned, smoke_store)


def test_data_changed_under_the_study_is_refused(tmp_path, planned, smoke_store):
    """The smoke study's data re-prepared with another tokenizer (a different text sample gives
    other BPE merges) in the directory the study uses: the sweep refuses, naming both hashes."""
    store = tmp_path / "smoke.sqlite"
    shutil.copy(smoke_store, store)
    study = tmp_path / "smoke.toml"
    text = SMOKE.read_text().replace("max_mb_per_source = 1 }", 'max_mb_per_source = 1, cache_dir = "cache" }')
    study.write_text(text)
    spec = load_study(study)
    assert {r.run_id for r in spec.runs} == planned  # where the data lives is not part of a run id
    with Store(store) as db:
        recorded = db.data_identity(spec.data.canonical())
    assert recorded is not None and recorded["tokenizer_hash"].startswith("sha256:")
    target = spec.data.target()
    prep = subprocess.run([sys.executable, "-m", "lmscale", "data", "prepare", "--source", "python-stdlib",
                           "--source", "python-docs", "--vocab-size", "512", "--max-mb-per-source", "0.3",
                           "--out", str(target), "--quiet"], capture_output=True, text=True, timeout=240)
    assert prep.returncode == 0, prep.stderr
    from lmscale.data import PreparedData

    now = PreparedData.open(target).tokenizer_hash
    assert now != recorded["tokenizer_hash"]
    before = Store(store).runs()
    proc = subprocess.run(sweep_cmd("run", str(study), "--store", str(store), "--quiet"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data changed under the study" in lines[0], proc.stderr
    assert now in lines[0] and recorded["tokenizer_hash"] in lines[0] and str(target) in lines[0]
    with Store(store) as db:  # nothing was touched
        assert db.integrity_check() == "ok"
        after = db.runs()
    assert after.equals(before)
