"""Importers against the real clients: the OLMo ladder's published learning curves (all 30 runs
from the CSV; 10 of them logged with MLflow into a SQLite store, with TensorBoard's SummaryWriter
and with W&B offline), read back into a store.

Each round trip keeps every curve point, and the fitted Chinchilla law equals the one fitted to the
same runs' final points from the published CSV (a second, independent file)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmscale as ls
from conftest import OLMO_CURVES, SHARED_DATA
from lmscale.errors import LmscaleError
from lmscale.importers import ImportMap, import_runs
from lmscale.laws.io import read_table
from lmscale.store import Store

OLMO_FINAL = SHARED_DATA / "olmo_ladder_final_points.csv"
MAP = {
    "loss": "c4_en_CE", "distribution": "c4", "losses": {"books": "dolma_books_CE"},
    "N": {"param": "N_params"}, "tokens": {"metric": "total_tokens"}, "flops": {"metric": "total_training_flops"},
}
LOGGED = ("c4_en_CE", "dolma_books_CE", "total_tokens", "total_training_flops")


@pytest.fixture(scope="module")
def olmo() -> dict[str, pd.DataFrame]:
    """Run name -> its rows of the published curves (30 runs, 3569 points)."""
    if not OLMO_CURVES.exists():
        pytest.skip(f"{OLMO_CURVES} not found (the shared data folder sits beside the checkout)")
    raw = pd.read_csv(OLMO_CURVES)
    raw["run"] = raw["size_label"] + "-" + raw["chinchilla_multiple"]
    return {name: part.reset_index(drop=True) for name, part in raw.groupby("run", sort=False)}


def subset(olmo) -> list[str]:
    """10 runs: 5 sizes x 2 data multiples (enough for the 5 constants of the Chinchilla law)."""
    names = [n for n in olmo if n.endswith(("-1xC", "-2xC"))]
    assert len(names) == 10
    return names


def published_fit(names) -> dict[str, float]:
    """Chinchilla fitted to the final points of the published final-points file, for these runs."""
    final = pd.read_csv(OLMO_FINAL)
    final = final[(final["size_label"] + "-" + final["chinchilla_multiple"]).isin(set(names))]
    assert len(final) == len(names)
    return ls.fit(final, law="chinchilla", columns={"N": "N_params", "D": "total_tokens", "loss": "c4_en_CE"},
                  bootstrap=0).params


def short(name: str) -> str:
    """The OLMo run name of a source run name (the CSV names runs by their file)."""
    return name.rsplit("/", 1)[-1].removesuffix(".csv")


def check_round_trip(store_path, olmo, names, rtol: float, fit_rtol: float) -> None:
    """Every point of every run back, equal to the published values; the same fitted law."""
    with Store(store_path, create=False) as st:
        runs = st.runs().set_index("run_id")
        curves, losses = st.curves(), st.distribution_losses()
    assert len(runs) == len(names)
    assert sorted(runs["source_run_name"].map(short)) == sorted(names)
    books = losses[losses["distribution"] == "books"].set_index(["run_id", "idx"])["loss"]
    for run_id, row in runs.iterrows():
        part = olmo[short(row["source_run_name"])]
        curve = curves[curves["run_id"] == run_id].sort_values("idx")
        assert len(curve) == len(part)  # every logged point is a curve point
        assert curve["step"].tolist() == part["_step"].tolist()
        np.testing.assert_allclose(curve["loss"], part["c4_en_CE"], rtol=rtol)
        np.testing.assert_allclose(curve["D"], part["total_tokens"], rtol=rtol)
        np.testing.assert_allclose(curve["C"], part["total_training_flops"], rtol=rtol)
        np.testing.assert_allclose(books.loc[run_id].sort_index(), part["dolma_books_CE"], rtol=rtol)
        assert row["non_embedding_params"] == part["N_params"].iloc[0]
        assert json.loads(row["provenance_json"])["derived"] == []
    fitted = ls.fit(read_table(store_path), law="chinchilla", bootstrap=0).params
    expected = published_fit(names)
    for key, value in expected.items():
        assert fitted[key] == pytest.approx(value, rel=fit_rtol), key


def test_csv_round_trip_and_reimport(tmp_path, olmo):
    store = tmp_path / "csv.sqlite"
    mapping = {**MAP, "run": "source_path", "step": "_step"}
    first = import_runs("csv", OLMO_CURVES, store, mapping)
    assert (first.runs, first.points, first.statuses) == (30, 3569, {"finished": 30})
    check_round_trip(store, olmo, list(olmo), rtol=1e-12, fit_rtol=1e-9)
    before = Store(store).final_points()
    again = import_runs("csv", OLMO_CURVES, store, mapping)  # idempotent: keyed by the source run
    assert sorted(again.run_ids) == sorted(first.run_ids)
    with Store(store) as st:
        assert len(st.runs()) == 30 and len(st.curves()) == 3569
        pd.testing.assert_frame_equal(st.final_points(), before)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory, olmo) -> str:
    """10 of the runs logged with the MLflow client into a SQLite tracking store (and 3 small ones)."""
    pytest.importorskip("mlflow")
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("olmo-ladder")
    broken = client.create_experiment("broken")
    for name in subset(olmo):
        part = olmo[name]
        run = client.create_run(exp, run_name=name)
        metrics = [Metric(key, float(v), 0, int(s)) for key in LOGGED for s, v in zip(part["_step"], part[key])]
        params = [Param("N_params", str(part["N_params"].iloc[0])), Param("size", part["size_label"].iloc[0])]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000], params=params if i == 0 else [])
        client.set_terminated(run.info.run_id)
    for k in range(2):  # two good runs, then one without the books loss
        run = client.create_run(broken, run_name=f"b{k}")
        client.log_batch(run.info.run_id, metrics=[Metric(m, 1.0 + s, 0, s) for m in LOGGED for s in (1, 2)],
                         params=[Param("N_params", "1000")])
        client.set_terminated(run.info.run_id)
    run = client.create_run(broken, run_name="lacks-books")
    client.log_batch(run.info.run_id, metrics=[Metric(m, 1.0 + s, 0, s) for m in LOGGED if m != "dolma_books_CE"
                                               for s in (1, 2)], params=[Param("N_params", "1000")])
    client.set_terminated(run.info.run_id)
    return uri


def test_mlflow_round_trip(tmp_path, olmo, mlflow_uri):
    store = tmp_path / "mlflow.sqlite"
    result = import_runs("mlflow", mlflow_uri, store, {**MAP, "experiments": ["olmo-ladder"]})
    names = subset(olmo)
    assert (result.runs, result.points) == (len(names), sum(len(olmo[n]) for n in names))
    check_round_trip(store, olmo, names, rtol=1e-12, fit_rtol=1e-9)
    runs = Store(store).runs()
    assert set(runs["source"]) == {"mlflow"} and set(runs["source_uri"]) == {mlflow_uri}
    assert set(runs["group"]) == {"olmo-ladder"}  # the experiment's name


def test_mlflow_bad_input_leaves_the_store_as_it_was(tmp_path, mlflow_uri):
    store = tmp_path / "s.sqlite"
    import_runs("csv", OLMO_CURVES, store, {**MAP, "run": "source_path", "step": "_step"})
    before = Store(store).runs()[["run_id", "final_loss"]]
    with pytest.raises(LmscaleError, match=r"run lacks-books \(\w+\) has no metric 'dolma_books_CE'"):
        import_runs("mlflow", mlflow_uri, store, {**MAP, "experiments": ["broken"]})
    with pytest.raises(LmscaleError, match=r"experiments: 'nope' not in"):
        import_runs("mlflow", mlflow_uri, store, {**MAP, "experiments": ["nope"]})
    with pytest.raises(LmscaleError, match="no such MLflow database"):
        import_runs("mlflow", f"sqlite:///{tmp_path / 'absent.db'}", store, MAP)
    assert not (tmp_path / "absent.db").exists()  # reading never creates a tracking store
    pd.testing.assert_frame_equal(Store(store).runs()[["run_id", "final_loss"]], before)


def test_tensorboard_round_trip(tmp_path, olmo):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "logs"
    names = subset(olmo)
    for name in names:
        part = olmo[name]
        writer = SummaryWriter(str(logs / name))
        for row in part.itertuples(index=False):
            for key in LOGGED:
                writer.add_scalar(key, getattr(row, key), int(row._4))  # _4: the "_step" column
        writer.add_hparams({"N_params": int(part["N_params"].iloc[0])}, {"hp/final_c4": part["c4_en_CE"].iloc[-1]})
        writer.close()
    store = tmp_path / "tb.sqlite"
    result = import_runs("tensorboard", logs, store, MAP)
    # add_hparams' sub-folders are merged into their runs
    assert (result.runs, result.points) == (len(names), sum(len(olmo[n]) for n in names))
    # TensorBoard keeps 32-bit floats: values to ~6e-8, and the law to what that moves it
    check_round_trip(store, olmo, names, rtol=1e-6, fit_rtol=1e-3)


def test_wandb_offline_round_trip(tmp_path, olmo, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    names = subset(olmo)
    settings = wandb.Settings(console="off", x_disable_stats=True, disable_git=True, save_code=False)
    for name in names:
        part = olmo[name]
        run = wandb.init(project="olmo", name=name, dir=str(tmp_path), settings=settings,
                         config={"N_params": int(part["N_params"].iloc[0])})
        for row in part.itertuples(index=False):
            run.log({key: getattr(row, key) for key in LOGGED}, step=int(row._4))
        run.finish()
    assert not list(tmp_path.rglob("*.wandb.synced"))
    store = tmp_path / "wandb.sqlite"
    result = import_runs("wandb", tmp_path / "wandb", store, MAP)
    assert (result.runs, result.points) == (len(names), sum(len(olmo[n]) for n in names))
    check_round_trip(store, olmo, names, rtol=1e-12, fit_rtol=1e-9)
    assert set(Store(store).runs()["group"]) == {"olmo"}  # the project


def test_derived_values_are_labelled(tmp_path):
    """N counted from a model config by the accounting module, tokens = step x batch, C = 6 N D."""
    rows = [{"run": f"L{layers}", "n_layer": layers, "d_model": 64, "bs": 8, "ctx": 128, "step": s,
             "val": 5.0 / (s * layers) ** 0.1} for layers in (2, 4) for s in (1, 10, 100)]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    mapping = ImportMap.from_dict({
        "run": "run", "loss": "val", "N": {"model": {"n_layer": {"param": "n_layer"}, "d_model": {"param": "d_model"}}},
        "tokens": {"batch_tokens": [{"param": "bs"}, {"param": "ctx"}]},
    })
    store = tmp_path / "s.sqlite"
    result = import_runs("csv", path, store, mapping)
    assert result.derived == {"N": 2, "tokens": 2, "C": 2}
    with Store(store) as st:
        runs, curves = st.runs().set_index("source_run_id"), st.curves()
    for layers in (2, 4):
        row = runs.loc[f"L{layers}"]
        assert row["non_embedding_params"] == 12 * layers * 64**2  # [K] table 1, d_ff = 4 d_model
        assert (row["n_layer"], row["d_model"], row["batch_tokens"]) == (layers, 64, 8 * 128)
        prov = json.loads(row["provenance_json"])
        assert prov["derived"] == ["N", "tokens", "C"]
        assert "lmscale.accounting" in prov["fields"]["N"] and prov["fields"]["C"] == "C = 6 N D ([K] 2.1)"
        curve = curves[curves["run_id"] == row["run_id"]]
        assert curve["D"].tolist() == [1024, 10240, 102400]
        np.testing.assert_allclose(curve["C"], 6.0 * 12 * layers * 64**2 * curve["D"], rtol=1e-12)


def test_map_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "map.toml"
    for text, message in [
        ('loss = "x"\n', r"missing \[N\]"),
        ('loss = "x"\nlos = 1\n[N]\nvalue = 1\n', r"unknown key\(s\) los"),
        ('loss = "x"\n[N]\nparam = "a"\nmetric = "b"\n', r"exactly one of value, param, metric"),
        ('loss = "x"\nfinal = "best"\n[N]\nvalue = 1\n', r"final = 'best'"),
        ('loss = "x"\n[N.model]\nd_model = 64\n', r"\[N.model\]: missing n_layer"),
        ('loss = "x"\n[N]\nvalue = 1\n', r"missing \[tokens\]"),
        ("loss = [\n", "not valid TOML"),
    ]:
        bad.write_text(text)
        with pytest.raises(LmscaleError, match=message) as info:
            ImportMap.load(bad)
        assert str(bad) in str(info.value)


def test_no_token_count(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"run": ["a", "a", "b"], "step": [1, 2, 1], "N": 100, "loss": [3.0, 2.5, 3.1],
                  "tokens": [10, 20, None]}).to_csv(path, index=False)
    store = tmp_path / "s.sqlite"
    with pytest.raises(LmscaleError, match=r"missing \[tokens\]: no token count and no way to derive one"):
        import_runs("csv", path, store, {"run": "run", "loss": "loss", "N": {"param": "N"}})
    with pytest.raises(LmscaleError, match=r"run b: no token count: it has no metric 'tokens'.*no batch_tokens"):
        import_runs("csv", path, store, {"run": "run", "loss": "loss", "N": {"param": "N"}, "tokens": "tokens"})
    assert len(Store(store).runs()) == 0  # run a was fine, but nothing is half-imported
    fallback = import_runs("csv", path, store, {"run": "run", "loss": "loss", "N": {"param": "N"},
                                                "tokens": {"metric": "tokens", "batch_tokens": 7}})
    assert fallback.derived == {"C": 2, "tokens": 1}
    assert sorted(Store(store).curves()["D"]) == [7, 10, 20]
