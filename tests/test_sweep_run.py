"""Running sweeps for real: SIGKILL mid-way and resume, failures and divergence recorded."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmscale.store import Store
from lmscale.sweeps import load_study
from lmscale.sweeps.local import plan_workers
from lmscale.training.hardware import available_cpus

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
DONE = ("finished", "early_stopped")


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmscale", "sweep", *args]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def statuses(store: Path) -> dict[str, str]:
    if not store.exists():
        return {}
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        return dict(db.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    finally:
        db.close()


def test_sigkill_midway_then_resume(tmp_path, smoke_store):
    """``smoke_store``: the same study run without interruption (local executor)."""
    store = tmp_path / "smoke.sqlite"
    planned = {r.run_id for r in load_study(SMOKE).runs}
    assert len(planned) >= 6
    _, threads = plan_workers(len(planned), available_cpus())  # as the uninterrupted run had them
    args = ("--workers", "2", "--threads", str(threads))
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(sweep_cmd("run", str(SMOKE), "--store", str(store), *args),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no run finished in time"
            now = statuses(store)
            if any(s in DONE for s in now.values()) and "running" in now.values():
                break
            time.sleep(0.1)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    # the workers of the killed parent do not outlive it (they would race the re-run)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)

    before = statuses(store)
    finished_before = {r for r, s in before.items() if s in DONE}
    interrupted = {r for r, s in before.items() if s == "running"}
    assert finished_before and interrupted
    db = Store(store)
    stamps = db.runs().set_index("run_id")["finished_at"].to_dict()
    db.close()

    second = subprocess.run(sweep_cmd("run", str(SMOKE), "--store", str(store), *args, "--json", "--quiet"),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    outcome = json.loads(second.stdout)
    assert set(outcome["skipped"]) == finished_before  # finished runs were not trained again
    assert set(outcome["trained"]) == planned - finished_before
    assert sorted(outcome["skipped"] + outcome["trained"]) == sorted(planned)  # each exactly once

    db = Store(store)
    runs = db.runs().set_index("run_id")
    assert set(runs.index) == planned
    assert set(runs["status"]) <= set(DONE)
    for run_id in finished_before:
        assert runs.loc[run_id, "finished_at"] == stamps[run_id]
    curves = db.curves()
    assert not curves.duplicated(["run_id", "idx"]).any()
    assert not curves.duplicated(["run_id", "step"]).any()
    for _run_id, curve in curves.groupby("run_id"):
        assert curve["step"].is_monotonic_increasing and curve["D"].is_monotonic_increasing
    counts = db._db.execute("SELECT run_id, COUNT(*) FROM curve_points GROUP BY run_id").fetchall()
    assert len(counts) == len(planned)
    assert db.integrity_check() == "ok"
    # an interrupted run resumed from its checkpoint directory beside the store ...
    assert all((Path(str(store) + ".runs") / r).is_dir() for r in interrupted)
    # ... and every result equals the uninterrupted sweep's
    mine = db.final_points().set_index("run_id").sort_index()
    reference = Store(smoke_store).final_points().set_index("run_id").sort_index()
    assert list(mine.index) == list(reference.index)
    assert list(mine["loss"]) == pytest.approx(list(reference["loss"]), rel=1e-5)
    assert list(mine["steps"]) == list(reference["steps"])
    db.close()

    third = subprocess.run(sweep_cmd("status", "--store", str(store), "--json"), capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["counts"].keys() <= set(DONE)


BROKEN = """
[study]
name = "broken"
data = { sources = ["python-stdlib", "python-docs"], vocab_size = 512, max_mb_per_source = 1 }
[study.defaults]
n_ctx = 32
batch_tokens = 1024
eval_tokens = 2048
tokens = 20480
shape = { n_layer = 1, d_model = 16, n_head = 2 }
[[group]]
name = "ok"
[[group]]
name = "diverges"
lr = 1e4
warmup_steps = 1
grad_clip = 0.0
[[group]]
name = "fails"
tokens = 1e8              # more than the prepared data holds
[[group]]
name = "long"
seed = 1
tokens = 2048000
dataset_tokens = 100000
"""


def test_failed_diverged_recorded_then_sigterm(tmp_path, capsys):
    """A failing and a diverging run are recorded and the sweep goes on; SIGTERM then
    stops the long run cleanly (checkpoint, status interrupted, exit 130)."""
    study = tmp_path / "broken.toml"
    study.write_text(BROKEN)
    store = tmp_path / "broken.sqlite"
    by_group = {r.group: r.run_id for r in load_study(study).runs}
    proc = subprocess.Popen(sweep_cmd("run", str(study), "--store", str(store), "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    want = {"ok": DONE, "diverges": ("diverged",), "fails": ("failed",), "long": ("running",)}
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        now = statuses(store)
        if all(now.get(by_group[g]) in ok for g, ok in want.items()):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in out and "Traceback" not in err
    db = Store(store)
    runs = db.runs().set_index("run_id")
    assert runs.loc[by_group["ok"], "status"] in DONE
    assert runs.loc[by_group["diverges"], "status"] == "diverged"
    assert runs.loc[by_group["fails"], "status"] == "failed"
    assert "training tokens" in runs.loc[by_group["fails"], "error"]
    assert runs.loc[by_group["fails"], "non_embedding_params"] == 2 * 16 * (2 * 16 + 64)
    assert runs.loc[by_group["long"], "status"] == "interrupted"
    assert any((Path(str(store) + ".runs") / by_group["long"]).iterdir())  # checkpointed on the way out
    assert set(db.final_points()["run_id"]) == {by_group["ok"]}
    assert db.integrity_check() == "ok"
    db.close()
    from lmscale.cli import main

    assert main(["sweep", "status", "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    assert "1 diverged, 1 failed, 1 finished, 1 interrupted" in shown and "training tokens" in shown
