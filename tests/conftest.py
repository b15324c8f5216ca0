"""Fixtures shared by several test files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE_STUDY = ROOT / "studies" / "smoke.toml"


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
