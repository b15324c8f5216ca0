"""``lmscale import``: bad input exits 2 with one line naming what and where; nothing half-imported."""

from __future__ import annotations

import json
import os
import socket

import pandas as pd
import pytest

from lmscale.cli import main
from lmscale.store import Store


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def runs_csv(tmp_path):
    """Three runs of a loss curve; run c lacks the held-out 'books' loss."""
    rows = [{"run": r, "step": s, "params": 1000 * (k + 1), "tokens": 512 * s, "loss": 4.0 - k * 0.1 - 0.01 * s,
             "books": None if r == "c" else 4.5 - 0.01 * s} for k, r in enumerate("abc") for s in (1, 2, 4)]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    (tmp_path / "map.toml").write_text('run = "run"\nloss = "loss"\n[losses]\nbooks = "books"\n'
                                       '[N]\nparam = "params"\n[tokens]\nmetric = "tokens"\n')
    return path


def test_import_csv_json_and_dry_run(capsys, tmp_path, runs_csv):
    (tmp_path / "ok.toml").write_text('run = "run"\nloss = "loss"\n[N]\nparam = "params"\n[tokens]\nmetric = "tokens"\n')
    store = tmp_path / "s.sqlite"
    code, out, _ = cli(capsys, "import", "csv", str(runs_csv), "--store", str(store), "--map",
                       str(tmp_path / "ok.toml"), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["runs"] == 3 and not store.exists()
    code, out, err = cli(capsys, "import", "csv", str(runs_csv), "--store", str(store), "--map", str(tmp_path / "ok.toml"))
    assert code == 0, err
    assert out.splitlines()[0] == f"{store}: imported 3 runs (3 finished) with 9 curve points from csv {runs_csv}"
    assert "derived: C in 3 runs" in out
    assert sorted(Store(store).final_points()["N"]) == [1000, 2000, 3000]


def test_missing_metric_names_the_run(capsys, tmp_path, runs_csv):
    store = tmp_path / "s.sqlite"
    code, _, err = cli(capsys, "import", "csv", str(runs_csv), "--store", str(store), "--map", str(tmp_path / "map.toml"))
    assert code == 2 and err.count("\n") == 1
    assert "run c has no metric 'books' (MAP [losses] books)" in err and str(tmp_path / "map.toml") in err
    assert len(Store(store).runs()) == 0  # runs a and b were fine: nothing is half-imported


def test_bad_sources_exit_2(capsys, tmp_path, runs_csv):
    store = tmp_path / "s.sqlite"
    mapping = tmp_path / "src.toml"  # no run column: the trackers name their runs
    mapping.write_text('loss = "loss"\n[N]\nparam = "params"\n[tokens]\nmetric = "tokens"\n')
    for argv, message in [
        (("csv", str(tmp_path / "none.csv")), "no such CSV file"),
        (("tensorboard", str(tmp_path)), "no TensorBoard event files"),
        (("wandb", str(tmp_path)), "no W&B run files"),
        (("mlflow", str(tmp_path / "none")), "no such MLflow tracking store"),
    ]:
        if argv[0] != "csv":
            pytest.importorskip({"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}[argv[0]])
        code, _, err = cli(capsys, "import", *argv, "--store", str(store), "--map", str(mapping))
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, _, err = cli(capsys, "import", "csv", str(runs_csv), "--store", str(store), "--map", str(tmp_path / "x.toml"))
    assert code == 2 and "--map" in err and "no such file" in err


def test_unreachable_tracking_uri_exits_2(capsys, tmp_path, runs_csv, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mapping = tmp_path / "src.toml"
    mapping.write_text('loss = "loss"\n[N]\nparam = "params"\n[tokens]\nmetric = "tokens"\n')
    code, _, err = cli(capsys, "import", "mlflow", f"http://127.0.0.1:{port}", "--store", str(tmp_path / "s.sqlite"),
                       "--map", str(mapping))
    assert code == 2 and err.count("\n") == 1
    assert f"http://127.0.0.1:{port}: MLflow tracking store unreachable" in err
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # the user's setting is kept


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    out = capsys.readouterr().out
    assert "lmscale import mlflow sqlite:///mlflow.db --store runs.sqlite --map map.toml" in out
    assert "[tokens]" in out and "C = 6 N D" in out
