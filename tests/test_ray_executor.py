"""The Ray executor on a real local Ray cluster gives the local executor's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmscale.store import Store
from lmscale.sweeps import load_study, run_sweep

ray = pytest.importorskip("ray")

SMOKE = Path(__file__).resolve().parents[1] / "studies" / "smoke.toml"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray cluster for the module (start-up costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_matches_local(ray_session, tmp_path):
    study = load_study(SMOKE)
    ray_store, local_store = tmp_path / "ray.sqlite", tmp_path / "local.sqlite"
    r = run_sweep(study, ray_store, executor="ray", cpus_per_run=1, progress=False)
    assert not r.interrupted and sorted(r.trained) == sorted(x.run_id for x in study.runs)
    local = run_sweep(study, local_store, executor="local", workers=2, threads=1, progress=False)
    assert sorted(local.trained) == sorted(r.trained)

    a = Store(ray_store).final_points().set_index("run_id").sort_index()
    b = Store(local_store).final_points().set_index("run_id").sort_index()
    assert list(a.index) == list(b.index) == sorted(x.run_id for x in study.runs)
    assert list(a["loss"]) == pytest.approx(list(b["loss"]), rel=1e-5)
    assert list(a["tokens"]) == list(b["tokens"])
    assert list(a["group"]) == list(b["group"]) and set(a["rule"]) == {"plain"}

    # the driver was the only writer and a second call trains nothing
    again = run_sweep(study, ray_store, executor="ray", progress=False)
    assert again.trained == [] and len(again.skipped) == len(study.runs)
    assert Store(ray_store).integrity_check() == "ok"
