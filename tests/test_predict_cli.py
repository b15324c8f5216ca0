"""``lmscale predict``, ``lmscale fit --audit`` and plans from a forecast: output, JSON round trip, bad input."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lmscale.cli import main
from lmscale.laws.forecast import Forecast
from lmscale.laws.synthetic import simulate_runs

COLUMNS = ["N", "D", "loss", "lo80", "hi80", "lo95", "hi95"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """runs.csv, points.csv, and bare.json (``fit --audit --bootstrap 0 --out``) with its printed audit."""
    folder = tmp_path_factory.mktemp("predict")
    simulate_runs("chinchilla_tied", seed=4).to_csv(folder / "runs.csv", index=False)
    pd.DataFrame({"N": [1e9, 3e9], "D": [2e10, 6e10]}).to_csv(folder / "points.csv", index=False)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["fit", str(folder / "runs.csv"), "--audit", "--bootstrap", "0", "--out",
                     str(folder / "bare.json")]) == 0
    (folder / "audit.txt").write_text(text.getvalue())
    return folder


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved(files):
    """``lmscale predict runs.csv --at points.csv --json --save fc.json``: its JSON output."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["predict", str(files / "runs.csv"), "--at", str(files / "points.csv"), "--json",
                     "--bootstrap", "20", "--save", str(files / "fc.json")]) == 0
    return json.loads(text.getvalue())


def test_predict_json_save_and_read_back(files, saved, capsys):
    data = saved
    assert set(data) == {"law", "reason", "cuts_by", "predictions", "validation", "fit_warnings", "not_candidates",
                         "notes"}
    assert data["fit_warnings"] == [] and data["notes"] == []  # a CSV: no store runs left out
    assert [set(p) for p in data["predictions"]] == [set(COLUMNS)] * 2
    for p in data["predictions"]:
        assert p["lo95"] <= p["lo80"] < p["loss"] < p["hi80"] <= p["hi95"]
    assert data["validation"] and {row["candidate"] for row in data["validation"]} == {data["law"]}
    # the saved forecast predicts the same (same draws, same seed), from the CLI and from Python
    code, again, _ = run(capsys, "predict", files / "fc.json", "--at", files / "points.csv", "--json")
    assert code == 0 and json.loads(again)["predictions"] == data["predictions"]
    fc = Forecast.from_json(files / "fc.json")
    assert fc.law == data["law"] and fc.predict(N=3e9, D=6e10, level=None).loss == pytest.approx(
        data["predictions"][1]["loss"])
    # text: one row per point with the columns
    code, text, _ = run(capsys, "predict", files / "fc.json", "--at", "N=1e9,D=2e10;N=3e9,C=1.08e21",
                        "--out", files / "pred.csv")
    assert code == 0 and text.splitlines()[1].split() == COLUMNS
    table = pd.read_csv(files / "pred.csv")
    assert list(table.columns) == COLUMNS and table["D"].iloc[1] == pytest.approx(1.08e21 / 18e9)


def test_plan_from_a_forecast_has_intervals(files, saved, capsys):
    code, out, err = run(capsys, "plan", "--compute", "1e21", "--law", files / "fc.json", "--json")
    assert code == 0, err
    plan = json.loads(out)
    lo, hi = plan["intervals"]["levels"]["95"]["N_opt"]
    assert lo < plan["N_opt"] < hi and plan["law"].startswith("forecast:")
    assert "extrapolation error" in plan["intervals"]["method"]
    assert any("decades beyond the fitted data" in w for w in plan["warnings"])
    code, text, _ = run(capsys, "plan", "--compute", "1e21", "--law", files / "fc.json")
    assert code == 0 and "80% / 95%" in text


def test_fit_audit_prints_every_candidate(files):
    out = (files / "audit.txt").read_text()
    for name in ("chinchilla", "chinchilla_tied", "kaplan_nd", "chinchilla+compute_weighted", "kaplan_nd+linear"):
        assert f"\n{name} " in out
    assert "chosen: " in out and "not a candidate: data_constrained" in out
    assert "no bootstrap draws" in out


@pytest.mark.parametrize("points, message", [
    ("N=1e9,D=0", "D must be positive and finite; point(s) 1"),
    ("N=-1e9,D=2e10", "N must be positive and finite; point(s) 1"),
    ("N=1e9,X=2", "expected N=..., D=..."),
])
def test_bad_points_exit_2_and_write_nothing(files, capsys, points, message):
    save, out = files / "bad.json", files / "bad.csv"
    code, _, err = run(capsys, "predict", files / "runs.csv", "--at", points, "--save", save, "--out", out)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not save.exists() and not out.exists()


def test_too_few_sizes_and_missing_draws(files, capsys, tmp_path):
    few = tmp_path / "few.csv"
    simulate_runs("chinchilla", sizes=(1e7, 1e8, 1e9)).to_csv(few, index=False)
    code, _, err = run(capsys, "predict", few, "--at", "N=1e10,D=2e11")
    assert code == 2 and "the runs have 3 distinct model sizes; 4 are needed" in err
    bare = files / "bare.json"
    code, _, err = run(capsys, "predict", bare, "--at", "N=1e10,D=2e11")
    assert code == 2 and "no bootstrap draws" in err and str(bare) in err
    code, _, err = run(capsys, "plan", "--compute", "1e21", "--law", bare, "--intervals")
    assert code == 2 and "no bootstrap draws" in err


def test_exit_code_and_one_line_from_a_fresh_process(files):
    res = subprocess.run([sys.executable, "-m", "lmscale", "predict", str(files / "runs.csv"), "--at",
                          "N=1e9,D=-5", "--bootstrap", "0"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("lmscale predict: error:") and np.char.count(res.stderr, "\n") == 1


def test_unknown_column_names_are_listed_with_the_way_to_map_them(files, capsys, tmp_path):
    """A table whose columns are named otherwise (OLMo's N_params, total_tokens, c4_en_CE): the error
    lists the table's columns and says how to map them; mapped, the same table forecasts."""
    runs = pd.read_csv(files / "runs.csv").rename(columns={"N": "n_params", "D": "tokens", "loss": "val_loss"})
    named = tmp_path / "named.csv"
    runs.to_csv(named, index=False)
    code, _, err = run(capsys, "predict", named, "--at", "N=1e9,D=2e10", "--bootstrap", "20")
    assert code == 2 and "The table has: n_params, tokens, val_loss" in err and "--columns" in err
    code, out, err = run(capsys, "predict", named, "--at", "N=1e9,D=2e10", "--bootstrap", "5", "--json",
                         "--columns", "N=n_params,D=tokens,loss=val_loss")
    assert code == 0, err
    mapped = json.loads(out)["predictions"][0]["loss"]
    code, out, _ = run(capsys, "predict", files / "runs.csv", "--at", "N=1e9,D=2e10", "--bootstrap", "5", "--json")
    assert mapped == pytest.approx(json.loads(out)["predictions"][0]["loss"])


def test_repetition_left_unmapped_is_said_so(capsys, tmp_path):
    """Runs that repeat data with their unique tokens under another name (U_unique_tokens, as in
    Muennighoff et al.'s table), N, D and loss mapped but not U: the data-constrained form is no
    candidate, and the output says so and how to map U; points that give U are warned that it is
    ignored. Mapped, the data-constrained form is a candidate and U moves the prediction."""
    runs = simulate_runs("data_constrained", seed=0).rename(columns={"N": "n", "D": "d", "U": "U_unique_tokens"})
    path = tmp_path / "repeats.csv"
    runs.to_csv(path, index=False)
    at = ["--at", "N=1e9,D=2e10,U=2e9", "--bootstrap", "5", "--json"]
    code, out, err = run(capsys, "predict", path, *at, "--columns", "N=n,D=d")
    assert code == 0, err
    data = json.loads(out)
    assert "U=U_unique_tokens" in data["not_candidates"]["data_constrained"]
    assert any("the points give U, which" in w and "ignored" in w for w in data["fit_warnings"])
    code, out, err = run(capsys, "predict", path, *at[:-1], "--columns", "N=n,D=d")
    assert "not a candidate: data_constrained: needs column(s) U (or epochs); perhaps --columns 'U=U_unique_tokens'" \
        in out
    code, out, err = run(capsys, "predict", path, *at, "--columns", "N=n,D=d,U=U_unique_tokens")
    assert code == 0, err
    data = json.loads(out)
    assert data["law"].startswith("data_constrained") and "data_constrained" not in data["not_candidates"]
    assert not any("the points give U" in w for w in data["fit_warnings"])


def test_a_law_that_did_not_converge_or_is_not_identified_is_said_so(files, capsys):
    """Muennighoff et al.'s 296 runs: the validated choice (data-constrained, compute-weighted) is
    refitted on all runs without converging, and its parameters are not identified; the forecast
    says both, in the text and the JSON. A law its runs identify gets no such warning."""
    from conftest import SHARED_DATA

    runs = SHARED_DATA / "muennighoff2023_datablations_runs.csv"
    if not runs.exists():
        pytest.skip(f"{runs} not found (the shared data folder sits beside the checkout)")
    mapping = "N=N_params,D=D_tokens,U=U_unique_tokens,loss=val_loss"
    code, out, err = run(capsys, "predict", runs, "--columns", mapping, "--at", "N=2e10,D=4e11", "--bootstrap", "20",
                         "--by", "N")
    assert code == 0, err
    assert "warning: the refit of data_constrained+compute_weighted on all runs did not converge" in out
    assert "parameters are not identified by these runs" in out
    code, out, _ = run(capsys, "predict", runs, "--columns", mapping, "--at", "N=2e10,D=4e11", "--bootstrap", "20",
                       "--by", "N", "--json")
    assert len(json.loads(out)["fit_warnings"]) == 2
    code, out, _ = run(capsys, "predict", files / "runs.csv", "--at", "N=1e9,D=2e10", "--bootstrap", "20", "--json")
    assert code == 0 and json.loads(out)["fit_warnings"] == []


def test_a_store_forecast_leaves_out_the_batch_sweep_and_repeated_data_and_says_so(tmp_path, capsys):
    from lmscale.store import Store
    from lmscale.training.record import CurvePoint, RunRecord

    def record(i, n, tokens, batch, dataset=None):
        loss = 1.7 + 400 / n**0.34 + 410 / (dataset or tokens) ** 0.28 + 0.05 * abs(np.log2(batch / 4096))
        config = {"model": {"architecture": "transformer", "n_layer": 2, "d_model": 64, "n_head": 2, "n_ctx": 32,
                            "n_vocab": 512}, "tokens": tokens, "batch_tokens": batch, "dataset_tokens": dataset,
                  "seed": i, "lr": 1e-3}
        point = CurvePoint(step=1, tokens=tokens, flops=6.0 * n * tokens, flops_exact=6.0 * n * tokens, lr=1e-3,
                           train_loss=loss, test_loss={"text": loss})
        return RunRecord(run_id=f"r{i}", config=config, status="finished", non_embedding_params=n,
                         exact_non_embedding_params=n, embedding_params=0, flops_per_token=2.0 * n,
                         train_distribution="text", curve=[point], final_test_loss={"text": loss},
                         best_test_loss=loss, steps=1, tokens=tokens, batch_tokens=batch)

    runs = [(n, 20 * n * r, 4096, None) for n in np.geomspace(1e6, 1e8, 5) for r in (0.5, 1, 2)]
    runs += [(1e6, 2e7, b, None) for b in (1024, 16384)] + [(1e6, 8e7, 4096, 8e6), (1e7, 8e8, 4096, 8e7)]
    store = Store(tmp_path / "s.sqlite")
    for i, (n, tokens, batch, dataset) in enumerate(runs):
        store.write_record(record(i, n, tokens, batch, dataset))
    code, out, err = run(capsys, "predict", tmp_path / "s.sqlite", "--at", "N=3e8,D=6e9", "--bootstrap", "10", "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert code == 0 and len(notes) == 2
    assert "left out 2 run(s) of a batch-size sweep" in notes[0] and "4096 tokens" in notes[0]
    assert "left out 2 run(s) that repeat their data" in notes[1]
    code, out, _ = run(capsys, "predict", tmp_path / "s.sqlite", "--at", "N=3e8,D=6e9", "--bootstrap", "10")
    assert code == 0 and out.count("note: left out") == 2
    code, out, _ = run(capsys, "predict", tmp_path / "s.sqlite", "--at", "N=3e8,D=6e9", "--bootstrap", "10",
                       "--json", "--every-run")
    assert code == 0 and json.loads(out)["notes"] == []
    code, _, err = run(capsys, "fit", tmp_path / "s.sqlite", "--every-run")
    assert code == 2 and "--every-run go with --audit" in err


def test_predict_cuts_by_compute_when_the_points_ask_for_more_compute(capsys, tmp_path):
    """Runs of a grid of sizes and tokens; points at the largest size trained 8x longer lie 0.9
    decades beyond in compute and none in size: the cuts go by compute, and the text says why."""
    runs = simulate_runs("chinchilla", seed=1)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    n_max, d_max = runs["N"].max(), runs["D"].max()
    pd.DataFrame({"N": [n_max], "D": [8 * d_max]}).to_csv(tmp_path / "longer.csv", index=False)
    code, out, err = run(capsys, "predict", tmp_path / "runs.csv", "--at", tmp_path / "longer.csv",
                         "--bootstrap", "20", "--json")
    assert code == 0, err
    assert json.loads(out)["cuts_by"] == "C" and "as the question does" in json.loads(out)["reason"]
    code, out, _ = run(capsys, "predict", tmp_path / "runs.csv", "--at", tmp_path / "longer.csv",
                       "--bootstrap", "20")
    assert "as the question does" in out.splitlines()[0]
    code, out, _ = run(capsys, "predict", tmp_path / "runs.csv", "--at", tmp_path / "longer.csv",
                       "--bootstrap", "20", "--by", "N", "--json")
    assert json.loads(out)["cuts_by"] == "N"
