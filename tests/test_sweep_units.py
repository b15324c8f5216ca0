"""Executor pieces that need no training: worker sizing, the store lock, progress, status."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from lmscale.errors import LmscaleError
from lmscale.store import Store
from lmscale.sweeps.estimate import wall_seconds
from lmscale.sweeps.local import plan_workers
from lmscale.sweeps.progress import ProgressTable
from lmscale.sweeps.session import StoreLock, checkpoint_root


@pytest.mark.parametrize("runs, cpus, workers, threads, expect", [
    (6, 2, None, None, (2, 1)),     # runs x threads = cores
    (6, 16, None, None, (6, 2)),
    (1, 8, None, None, (1, 8)),
    (6, 2, 1, None, (1, 2)),        # --workers 1: all cores to one run
    (6, 8, 3, None, (3, 2)),
    (6, 8, 2, 1, (2, 1)),           # explicit threads win
])
def test_plan_workers(runs, cpus, workers, threads, expect):
    assert plan_workers(runs, cpus, workers, threads) == expect


def test_plan_workers_gpus():
    assert plan_workers(6, 16, gpus=4) == (4, 4)
    assert plan_workers(2, 16, gpus=4) == (2, 8)


def test_wall_seconds_packing():
    assert wall_seconds([4, 3, 3, 2], 2) == 6  # {4, 2} and {3, 3}
    assert wall_seconds([5, 1, 1], 1) == 7
    assert wall_seconds([5, 1, 1], 8) == 5


def test_store_lock_is_exclusive(tmp_path):
    path = tmp_path / "s.sqlite"
    assert not StoreLock.held(path)
    with StoreLock(path):
        assert StoreLock.held(path)
        code = ("import sys; from pathlib import Path; from lmscale.sweeps.session import StoreLock\n"
                "try:\n    StoreLock(Path(sys.argv[1])).__enter__()\nexcept Exception as e:\n    print(e)")
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True).stdout
        assert "another 'lmscale sweep run'" in out and "is writing this store" in out
    assert not StoreLock.held(path)
    assert checkpoint_root(path) == tmp_path / "s.sqlite.runs"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_table_live_and_log():
    tty = Tty()
    table = ProgressTable(stream=tty, interval_s=0.0)
    table.add("run-a", "sizes transformer N=1", 1000)
    table.add("run-b", "sizes lstm N=1", 1000)
    table.update("run-a", status="running")
    table.update("run-a", tokens=500, loss=5.5)
    table.update("run-a", status="finished", tokens=1000, loss=5.0)
    table.close()
    out = tty.getvalue()
    assert "\x1b[" in out and "50%" in out and "5.5000" in out and "100%" in out
    assert out.rstrip().endswith("-- 1 finished, 1 queued")
    log = io.StringIO()
    table = ProgressTable(stream=log)
    table.add("run-a", "x", 1000)
    table.update("run-a", status="running")
    for t in range(1, 10):
        table.update("run-a", tokens=t * 100, loss=6.0 - t / 10)
    table.update("run-a", status="failed", note="boom")
    table.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3  # a line per status change, none per point
    assert "failed" in lines[1] and "boom" in lines[1] and lines[2] == "-- 1 failed"


def test_status_reports_stale_running_as_interrupted(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    spec = {"model": {"architecture": "lstm", "n_layer": 1, "d_model": 8, "n_head": 1, "d_ff": 32,
                      "n_ctx": 16, "n_vocab": 256}, "tokens": 1000, "batch_tokens": 160}
    store.mark("r1", "running", spec=spec, group="g", rule="plain")
    store.close()
    cmd = [sys.executable, "-m", "lmscale", "sweep", "status", "--store", str(path), "--json"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert out["counts"] == {"interrupted": 1}  # nobody holds the lock: its sweep is gone
    with StoreLock(path):
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        assert out["counts"] == {"running": 1}
    with pytest.raises(LmscaleError, match="status .exploded.: expected one of"):
        Store(path).mark("r1", "exploded")
