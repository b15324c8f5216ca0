"""The Ray executor on a real local Ray cluster gives the local executor's results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lmscale.store import Store
from lmscale.sweeps import load_study, run_sweep
from lmscale.sweeps.local import plan_workers
from lmscale.training.hardware import available_cpus

ray = pytest.importorskip("ray")

SMOKE = Path(__file__).resolve().parents[1] / "studies" / "smoke.toml"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray cluster for the module (start-up costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_matches_local(smoke_store, ray_session, tmp_path):
    """``smoke_store`` is the smoke study run by ``lmscale sweep run`` (local executor); Ray trains
    the first run of each architecture of it (a Transformer and an LSTM: every code path, a third
    of the time) on the threads the local run gave each."""
    full = load_study(SMOKE)
    _, threads = plan_workers(len(full.runs), available_cpus())  # as the local run had them
    first: dict[str, object] = {}
    for run in full.runs:
        first.setdefault(run.config.model.architecture, run)
    # in the precision the local runs resolved 'auto' to (a trial on a busy machine keeps fp32 and
    # caches nothing, so another sweep at another moment may resolve it otherwise): set explicitly
    local = Store(smoke_store).final_points().set_index("run_id")
    (precision,) = set(local.loc[[r.run_id for r in first.values()], "precision"])
    pinned = []
    for run in first.values():
        config = replace(run.config, precision=precision)
        pinned.append(replace(run, config=config, run_id=config.run_id()))
    study = replace(full, runs=pinned)
    assert len(study.runs) == 2
    ray_store = tmp_path / "ray.sqlite"
    r = run_sweep(study, ray_store, executor="ray", cpus_per_run=min(threads, 2), progress=False)
    assert not r.interrupted and sorted(r.trained) == sorted(x.run_id for x in study.runs)

    a = Store(ray_store).final_points().set_index("architecture").sort_index()
    b = local.loc[[r.run_id for r in first.values()]].set_index("architecture").sort_index()
    assert list(a.index) == list(b.index) == ["lstm", "transformer"] and set(a["precision"]) == {precision}
    if threads <= 2:  # the same threads per run: the same floating-point sums
        assert list(a["loss"]) == pytest.approx(list(b["loss"]), rel=1e-5)
    else:
        assert list(a["loss"]) == pytest.approx(list(b["loss"]), rel=1e-2)
    assert list(a["tokens"]) == list(b["tokens"])
    assert list(a["group"]) == list(b["group"]) and set(a["rule"]) == {"plain"}
    runs = Store(ray_store).runs()
    assert set(runs["status"]) == {"finished"}
    assert runs["device"].str.contains(f"({min(threads, 2)} thread", regex=False).all()

    # the driver was the only writer and a second call trains nothing
    again = run_sweep(study, ray_store, executor="ray", progress=False)
    assert again.trained == [] and len(again.skipped) == len(study.runs)
    assert Store(ray_store).integrity_check() == "ok"
