"""The demo end to end on the smoke study: resumes a finished store, fits, reports, summarises."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from lmscale.demo import resolve_study, studies_dir
from lmscale.store import Store


def test_shipped_studies_plan_and_resolve():
    for name in ("kaplan-cpu", "kaplan-quick", "kaplan-gpu", "chinchilla-isoflop", "smoke"):
        path = resolve_study(name)
        assert path.parent == studies_dir() and path.exists()
    from lmscale.sweeps import load_study

    cpu = load_study(resolve_study("kaplan-cpu"))
    sizes = [r.N for r in cpu.runs if r.group == "sizes"]
    assert len(sizes) >= 7 and max(sizes) / min(sizes) >= 10**2.5  # issue: >= 7 sizes over 2.5 decades
    assert {r.config.model.architecture for r in cpu.runs} >= {"transformer", "lstm"}
    batches = {(r.N, r.config.batch_tokens) for r in cpu.runs if r.group == "batch"}
    assert len({n for n, _ in batches}) == 2 and len({b for _, b in batches}) >= 3


def test_demo_resumes_fits_and_reports(smoke_store, tmp_path):
    store = tmp_path / "smoke.sqlite"
    shutil.copy(smoke_store, store)
    before = Store(store).runs()
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "lmscale", "demo", "--study", "smoke", "--store", str(store), "--out", str(out),
         "--bootstrap", "20", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    # every run was already finished: none trained again, all skipped
    assert data["trained"] == [] and sorted(data["skipped"]) == sorted(before["run_id"])
    assert len(Store(store).runs()) == len(before)
    assert (out / "index.html").exists() and data["report"] == str(out / "index.html")
    fitted = {row["law"] for row in data["fits"]}
    assert {"kaplan_c", "bcrit"} <= fitted  # learning curves and noise scale of every run
    for row in data["fits"]:
        if row["lo"] is not None:
            assert row["lo"] <= row["hi"]
    # the smoke study has no 'converge' group, so the summary says why L(N) and the check are missing
    assert "kaplan_n" in data["not_fitted"] and data["holdout"] is None
