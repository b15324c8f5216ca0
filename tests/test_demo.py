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
    groups = {g: [r for r in cpu.runs if r.group == g] for g in cpu.groups}
    # L(N): >= 8 sizes over >= 2.5 decades, each trained on >= 20 tokens per parameter (and >= 1M)
    sizes = [r.N for r in groups["sizes"]]
    assert len(sizes) >= 8 and max(sizes) / min(sizes) >= 10**2.5
    assert all(r.D >= max(20 * r.N, 1e6) * 0.99 for r in groups["sizes"])
    # L(D): >= 5 dataset sizes, with epochs to early-stop
    assert len({r.config.dataset_tokens for r in groups["data"]}) >= 5
    assert all(r.config.early_stopping and r.D >= 10 * r.config.dataset_tokens for r in groups["data"])
    # approach 2: >= 3 budgets x >= 7 sizes (5 left its exponent unidentified on this machine)
    budgets = {}
    for r in groups["isoflop"]:
        budgets.setdefault(r.config.flops, set()).add(r.N)
    assert len(budgets) >= 3 and all(len(n) >= 7 for n in budgets.values())
    # B_crit: 2 sizes x >= 3 batch sizes, one schedule in steps (constant after the same warm-up)
    batches = {(r.N, r.config.batch_tokens) for r in groups["batch"]}
    assert len({n for n, _ in batches}) == 2 and len({b for _, b in batches}) >= 3
    assert {(r.config.schedule, r.config.warmup_steps) for r in groups["batch"]} == {("constant", 20)}
    # figure 5: shapes at one N (within 5%); figures 7 and 17: LSTMs and Universal Transformers
    shape_n = [r.N for r in groups["shape"]]
    assert len(shape_n) >= 5 and max(shape_n) / min(shape_n) < 1.05
    assert len({r.config.model.n_layer for r in groups["shape"]}) >= 4
    assert len(groups["lstm"]) >= 3 and len(groups["universal"]) >= 2


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


def test_demo_fits_only_the_runs_its_study_names(smoke_store, tmp_path):
    """An edited study file plans other runs beside those of its earlier version in the same store:
    the demo fits and reports the study as it stands, and says how many runs it left out."""
    store = tmp_path / "smoke.sqlite"
    shutil.copy(smoke_store, store)
    runs = Store(store).runs()
    lstm = sorted(runs.loc[runs["architecture"] == "lstm", "run_id"])
    assert len(lstm) == 3
    edited = tmp_path / "smoke-transformers.toml"  # the same study, its LSTMs taken out
    text = (studies_dir() / "smoke.toml").read_text()
    assert 'architecture = ["transformer", "lstm"]' in text
    edited.write_text(text.replace('architecture = ["transformer", "lstm"]', 'architecture = "transformer"'))
    result = subprocess.run(
        [sys.executable, "-m", "lmscale", "demo", "--study", str(edited), "--store", str(store), "--no-report",
         "--bootstrap", "0", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["trained"] == [] and len(data["skipped"]) == 3 and data["left_out"] == lstm
    assert data["checks"]["positions"]["runs"] == 1  # per-position losses: the largest Transformer alone
    whole = subprocess.run(
        [sys.executable, "-m", "lmscale", "demo", "--study", "smoke", "--store", str(store), "--no-report",
         "--bootstrap", "0", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert whole.returncode == 0, whole.stderr[-3000:]
    data = json.loads(whole.stdout)
    assert data["left_out"] == [] and data["checks"]["positions"]["runs"] == 2  # and the largest LSTM
    report = subprocess.run(
        [sys.executable, "-m", "lmscale", "report", str(store), "--study", str(edited), "--out",
         str(tmp_path / "report"), "--bootstrap", "0", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    data = json.loads(report.stdout)
    assert data["left_out"] == lstm and (tmp_path / "report" / "index.html").exists()


def test_report_says_when_a_store_holds_several_studies(smoke_store, tmp_path):
    import sqlite3

    store = tmp_path / "two.sqlite"
    shutil.copy(smoke_store, store)
    with sqlite3.connect(store) as db:  # the LSTMs as if another study had put them in this store
        db.execute("UPDATE runs SET study = 'smoke-lstm' WHERE architecture = 'lstm'")
    result = subprocess.run(
        [sys.executable, "-m", "lmscale", "report", str(store), "--out", str(tmp_path / "r"), "--bootstrap", "0",
         "--no-holdout", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"note: {store} holds the runs of 2 studies (smoke 3, smoke-lstm 3), all fitted together" in result.stderr
    assert json.loads(result.stdout)["left_out"] == []
