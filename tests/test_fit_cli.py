"""``lmscale fit`` end to end, and bad input through the API and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmscale.laws as laws
from lmscale.errors import LmscaleError
from lmscale.laws.forms import get_form

H = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
SHARED = Path(__file__).resolve().parents[2] / "shared"
EPOCH = SHARED / "data" / "epoch_chinchilla_svg_extracted_data.csv"


def lmscale(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lmscale", "fit", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def law_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10, n)
    C = 10 ** rng.uniform(18, 22, n)
    loss = np.asarray(get_form("chinchilla").predict(H, N=N, D=C / (6 * N)))
    return pd.DataFrame({"Model Size": N, "Training FLOP": C, "loss": loss * np.exp(0.002 * rng.standard_normal(n))})


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "runs.csv"
    law_frame().to_csv(path, index=False)
    return path


def test_cli_json_with_mapped_columns_and_bootstrap(csv, tmp_path):
    out = tmp_path / "fit.json"
    res = lmscale(csv, "--law", "chinchilla", "--columns", 'N="Model Size",C=Training FLOP',
                  "--bootstrap", "40", "--json", "--out", out)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["law"] == "chinchilla" and data["n_points"] == 60
    assert set(data["ci"]) == {"E", "A", "B", "alpha", "beta"}
    assert data["params"]["alpha"] == pytest.approx(0.34, abs=0.03)
    assert any("D = C / (6 N)" in d for d in data["notes"]["derived"])
    assert data["stats"]["n_bootstrap"] == 40 and "rmse_log" in data["stats"] and "r2_log" in data["stats"]
    back = laws.FitResult.from_json(out)
    assert back.params == pytest.approx(data["params"])


def test_cli_text_says_d_was_derived(csv):
    res = lmscale(csv, "--columns", "N=Model Size,C=Training FLOP", "--holdout", "10")
    assert res.returncode == 0, res.stderr
    assert "D = C / (6 N)" in res.stdout and "alpha" in res.stdout
    assert "extrapolation: fit on 50 rows" in res.stdout


def test_cli_parquet_and_select(tmp_path):
    frame = law_frame(80).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    path = tmp_path / "runs.parquet"
    frame.to_parquet(path)
    res = lmscale(path, "--select", "extrapolation", "--json")
    assert res.returncode == 0, res.stderr
    sel = json.loads(res.stdout)["stats"]["selection"]
    assert sel["chosen"]["law"] in {c["law"] for c in sel["candidates"]}
    assert sel["error"] == min(c["error"] for c in sel["candidates"])


@pytest.mark.skipif(not EPOCH.exists(), reason="../shared/data is not beside the checkout")
def test_cli_epoch_example():
    res = lmscale(EPOCH, "--columns", "N=Model Size,C=Training FLOP", "--drop-highest-loss", "5", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["n_points"] == 240 and data["params"]["E"] == pytest.approx(1.817, abs=0.01)


# -- bad input -----------------------------------------------------------------------------


def test_api_missing_column():
    with pytest.raises(LmscaleError, match=r"needs column\(s\) D"):
        laws.fit(pd.DataFrame({"N": [1e6, 1e7], "loss": [3.0, 2.5]}), law="chinchilla")


def test_api_bad_rows_are_dropped_and_counted():
    frame = law_frame(30).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    frame.loc[0, "loss"] = np.nan
    frame.loc[1, "N"] = -5
    frame.loc[2, "C"] = 0
    fit = laws.fit(frame, law="chinchilla")
    assert fit.n_points == 27
    assert fit.notes["dropped_rows"]["count"] == 3
    assert fit.notes["dropped_rows"]["per_column"] == {"N": 1, "D": 2, "loss": 1}  # D from C / (6 N)


def test_api_no_usable_rows():
    frame = pd.DataFrame({"N": [1e6, 1e7], "D": [1e9, 1e10], "loss": [np.nan, -1.0]})
    with pytest.raises(LmscaleError, match="no usable rows"):
        laws.fit(frame, law="chinchilla")


def test_api_too_few_points():
    frame = law_frame(4).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    with pytest.raises(LmscaleError, match="5 parameters .* only 4 usable"):
        laws.fit(frame, law="chinchilla")


def test_api_unknown_law_lists_known():
    with pytest.raises(LmscaleError, match="unknown law 'chinchila'.*chinchilla.*kaplan_n"):
        laws.fit(law_frame(), law="chinchila")


def test_api_bad_options():
    frame = law_frame().rename(columns={"Model Size": "N", "Training FLOP": "C"})
    with pytest.raises(LmscaleError, match="huber_delta"):
        laws.fit(frame, huber_delta=0)
    with pytest.raises(LmscaleError, match="reduction"):
        laws.fit(frame, reduction="median")
    with pytest.raises(LmscaleError, match="holdout"):
        laws.fit(frame, holdout=60)
    with pytest.raises(LmscaleError, match="overfitting"):
        laws.fit(frame, law="overfitting")


@pytest.mark.parametrize("content,args,message", [
    ("N,loss\n1e6,3\n1e7,2.5\n", ["--law", "chinchilla"], "needs column(s) D"),
    ("N,D,loss\n1e6,1e9,nan\n1e7,1e10,-1\n", [], "no usable rows"),
    ("N,D,loss\n1e6,1e9,3\n1e7,1e10,2.8\n1e8,1e11,2.5\n", [], "only 3 usable row(s)"),
    ("N,D,loss\n1e6,1e9,3\n", ["--law", "nope"], "known laws: "),
    ("N,D,loss\n1e6,1e9,3\n", ["--columns", "N=Size"], "'Size'"),
    ("N,D,loss\n1e6,1e9,3\n", ["--columns", "Q=N"], "expected one of"),
])
def test_cli_bad_input_exit_2_without_traceback(tmp_path, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    res = lmscale(path, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("lmscale fit: error:")


def test_cli_missing_file(tmp_path):
    res = lmscale(tmp_path / "nothing.csv")
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


def test_laws_work_without_torch(csv):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import pandas as pd, lmscale.laws as ls\n"
        "from lmscale.laws import frontier, selection, bootstrap, io\n"
        f"f = ls.fit(pd.read_csv({str(csv)!r}), columns={{'N': 'Model Size', 'C': 'Training FLOP'}},"
        " bootstrap=20)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(round(f.params['alpha'], 2))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) == pytest.approx(0.34, abs=0.03)
    cli = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None\nfrom lmscale.cli import main\n"
         f"sys.exit(main(['fit', {str(csv)!r}, '--columns', 'N=Model Size,C=Training FLOP', '--json']))"],
        capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr


def test_cli_reads_a_results_store(tmp_path):
    from lmscale.store import Store, import_csv

    frame = law_frame(40).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    frame.to_csv(tmp_path / "runs.csv", index=False)
    with Store(tmp_path / "study.sqlite") as store:
        assert import_csv(store, tmp_path / "runs.csv") == 40
    res = lmscale(tmp_path / "study.sqlite", "--law", "chinchilla", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["n_points"] == 40
    assert data["params"]["alpha"] == pytest.approx(0.34, abs=0.03)


@pytest.mark.skipif(not EPOCH.exists(), reason="../shared/data is not beside the checkout")
def test_a_table_of_several_settings_is_flagged_and_where_picks_one(capsys):
    """Porian et al.'s IsoFLOP points hold 2 data sets, 2 tunings, 2 warm-ups and 3 schedules at the same
    N and D: fitted across them, the note names the settings and a --where that picks one; the OLMo
    ladder's labels (size names, a 1xC rerun) and the Epoch points' colours are no settings."""
    import pandas as pd

    from lmscale.cli import main
    from lmscale.laws.io import derive_columns, rename_columns
    from lmscale.tables import mixed_settings

    porian = SHARED / "data" / "porian2024_isoflop_points.csv"
    assert main(["fit", str(porian), "--columns", "D=D_tokens", "--json"]) == 0
    err = capsys.readouterr().err
    assert "runs at the same N and D differ in" in err and "--where" in err
    for setting in ("dataset (owt2, rw)", "hparams (base, tuned)", "warmup (long, short)",
                    "decay (chinchilla, const, kaplan)"):
        assert setting in err
    where = {"dataset": "rw", "hparams": "tuned", "warmup": "short", "decay": "const", "param_count": "standard",
             "loss_split": "val"}
    assert main(["fit", str(porian), "--columns", "D=D_tokens", "--json",
                 "--where", ",".join(f"{k}={v}" for k, v in where.items())]) == 0
    out, err = capsys.readouterr()
    raw = pd.read_csv(porian)
    expect = raw[np.logical_and.reduce([raw[k] == v for k, v in where.items()])]
    assert json.loads(out)["n_points"] == len(expect) and "differ in" not in err
    # predict and next carry the note into their JSON (stdout stays one JSON document)
    assert main(["predict", str(porian), "--columns", "D=D_tokens", "--at", "N=1e9,D=2e10", "--bootstrap", "4",
                 "--cuts", "1", "--json"]) == 0
    assert any("runs at the same N and D differ in" in n for n in json.loads(capsys.readouterr().out)["notes"])
    assert main(["next", str(porian), "--columns", "D=D_tokens", "--target", "1e10,2e11", "--budget", "1e20",
                 "--k", "1", "--bootstrap", "8", "--json"]) == 0
    assert any("runs at the same N and D differ in" in n for n in json.loads(capsys.readouterr().out)["notes"])
    assert main(["fit", str(porian), "--columns", "D=D_tokens", "--where", "dataset=c4"]) == 2
    assert "dataset holds owt2, rw" in capsys.readouterr().err
    assert main(["fit", str(porian), "--columns", "D=D_tokens", "--where", "corpus=rw"]) == 2
    assert "no column 'corpus'" in capsys.readouterr().err

    def settings(name, columns):
        frame, _ = derive_columns(rename_columns(pd.read_csv(SHARED / "data" / name), columns), ("N", "D"))
        return mixed_settings(frame)

    assert settings("olmo_ladder_final_points.csv", {"N": "N_params", "D": "total_tokens", "loss": "c4_en_CE"}) == {}
    assert settings("epoch_chinchilla_svg_extracted_data.csv", {"N": "Model Size", "C": "Training FLOP"}) == {}
    assert settings("muennighoff2023_datablations_runs.csv", {}) == {}


def test_a_table_of_learning_curves_is_flagged(capsys, tmp_path):
    """Four runs' curves (12 checkpoints each, a column naming the run) fitted as final points: the note
    says each checkpoint is taken for a finished run and how to fit each run's last row; the runs' last
    rows alone carry no such note."""
    from lmscale.cli import main

    rows = [{"path": f"r{run}", "N": n, "D": step * 1e8, "loss": 2.0 + 40 / n ** 0.3 + 400 / (step * 1e8) ** 0.3}
            for run, n in enumerate([1e6, 3e6, 1e7, 3e7]) for step in range(1, 13)]
    curves = pd.DataFrame(rows)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    assert main(["fit", str(tmp_path / "curves.csv"), "--law", "chinchilla", "--json"]) == 0
    err = capsys.readouterr().err
    assert "points of learning curves (column 'path' names 4 runs of 12 rows on average" in err
    assert "--last-per path" in err
    curves.groupby("path").tail(1).to_csv(tmp_path / "last.csv", index=False)
    assert main(["fit", str(tmp_path / "last.csv"), "--law", "kaplan_n", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "learning curves" not in err
    # --last-per takes the same rows from the curves themselves
    assert main(["fit", str(tmp_path / "curves.csv"), "--law", "kaplan_n", "--json", "--last-per", "path"]) == 0
    taken, err = capsys.readouterr()
    assert "learning curves" not in err and json.loads(taken)["params"] == json.loads(out)["params"]
    assert json.loads(taken)["n_points"] == 4
