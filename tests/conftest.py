"""Fixtures shared by several test files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE_STUDY = ROOT / "studies" / "smoke.toml"
SHARED_DATA = ROOT.parent / "shared" / "data"
OLMO_CURVES = SHARED_DATA / "olmo_ladder_learning_curves.csv"


def pytest_configure(config):
    """The suite measures into a cache of its own (matmul peaks, thread and precision trials,
    prepared shards): a trial timed while the suite's other workers train would otherwise decide
    the threads or precision of the user's later runs. Set ``LMSCALE_CACHE`` to keep one."""
    if "LMSCALE_CACHE" not in os.environ and not hasattr(config, "workerinput"):  # xdist workers inherit it
        os.environ["LMSCALE_CACHE"] = config._lmscale_cache = tempfile.mkdtemp(prefix="lmscale-tests-")


def pytest_unconfigure(config):
    cache = getattr(config, "_lmscale_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> Path:
    """The smoke study run once per test session into a fresh store (read-only for tests: copy it
    before changing it)."""
    store = tmp_path_factory.mktemp("smoke") / "smoke.sqlite"
    result = subprocess.run(
        [sys.executable, "-m", "lmscale", "sweep", "run", str(SMOKE_STUDY), "--store", str(store), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return store


def olmo_ladder_frames(rule: str):
    """The OLMo ladder's learning curves (real runs, Apache-2.0, ../shared/data) as StudyFrames:
    one run per size and Chinchilla multiple, its last point the final one, tagged ``rule``."""
    import pandas as pd

    from lmscale.laws.study import StudyFrames

    if not OLMO_CURVES.exists():
        pytest.skip(f"{OLMO_CURVES} not found (the shared data folder sits beside the checkout)")
    raw = pd.read_csv(OLMO_CURVES)
    curves = pd.DataFrame({
        "run_id": raw["size_label"] + "-" + raw["chinchilla_multiple"], "architecture": "transformer",
        "N": raw["N_params"].astype(float), "step": raw["_step"], "D": raw["total_tokens"].astype(float),
        "loss": raw["c4_en_CE"].astype(float), "lr": raw["learning_rate_group0"],
        "batch_tokens": raw["batch_size_in_tokens"],
    })
    curves["C"] = 6.0 * curves["N"] * curves["D"]
    final = curves.loc[curves.groupby("run_id")["step"].idxmax()].assign(status="finished", rule=rule)
    return StudyFrames(final_points=final.reset_index(drop=True), curves=curves, source=f"olmo-ladder ({rule})")


@pytest.fixture
def scratch(tmp_path):
    """A directory for the files each case writes: in memory (/dev/shm) where there is one, since
    thousands of small writes to a busy disk cost more than the cases themselves."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="lmscale-fuzz-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def schema_2_ddl() -> str:
    """The store DDL as schema version 2 wrote it: without the training columns (version 3)
    and the standard-error columns (version 4)."""
    from lmscale.store.schema import DDL

    old = (DDL.replace(",\n    precision TEXT, packed_with INTEGER\n", "\n")
           .replace("    noise_scale_se REAL, noise_steps INTEGER,\n", "")
           .replace("    se REAL,\n    se_shape REAL,\n", ""))
    assert all(c not in old for c in ("precision", "packed_with", "noise_scale_se", "se_shape"))
    return old
