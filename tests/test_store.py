"""The results store: transactions, re-writes, reads for the fits, import/export."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lmscale.errors import LmscaleError
from lmscale.store import SCHEMA_VERSION, Store, export, import_csv, parse_columns
from lmscale.training.record import CurvePoint, RunRecord

SHARED = Path(__file__).resolve().parents[2] / "shared"


def make_record(run_id: str = "abc123", n: int = 12 * 2 * 64 * 64, status: str = "finished",
                points: int = 5, loss: float = 3.5) -> RunRecord:
    config = {
        "model": {"architecture": "transformer", "n_layer": 2, "d_model": 64, "n_head": 2,
                  "d_ff": 256, "n_ctx": 32, "n_vocab": 512, "dropout": 0.0, "tied_embeddings": True},
        "data_dir": "data", "tokens": 4096 * points, "batch_tokens": 4096, "seed": 1, "lr": 1e-3,
        "dataset_tokens": None,
    }
    curve = [
        CurvePoint(step=i + 1, tokens=4096 * (i + 1), flops=6.0 * n * 4096 * (i + 1),
                   flops_exact=7.0 * n * 4096 * (i + 1), lr=1e-3, train_loss=loss + 1.0 / (i + 1),
                   test_loss={"python-stdlib": loss + 1.0 / (i + 1), "python-docs": loss + 0.5 + 1.0 / (i + 1)},
                   noise_scale=1000.0 * (i + 1), grad_sq_small=2.0, grad_sq_big=1.0, wall_time_s=0.1 * i)
        for i in range(points)
    ]
    return RunRecord(
        run_id=run_id, config=config, status=status, non_embedding_params=n,
        exact_non_embedding_params=n + 1000, embedding_params=(512 + 32) * 64, flops_per_token=2.2 * n,
        train_distribution="python-stdlib", curve=curve,
        final_test_loss={"python-stdlib": curve[-1].test_loss["python-stdlib"],
                         "python-docs": curve[-1].test_loss["python-docs"]},
        best_test_loss=curve[-1].test_loss["python-stdlib"], per_position_loss=[5.0 - 0.01 * t for t in range(32)],
        steps=points, tokens=4096 * points, batch_tokens=4096, wall_time_s=1.5, tokens_per_second=1e4,
        mfu=0.3, peak_flops=1e11, device="cpu (1 threads)", versions={"lmscale": "0.1.0", "torch": "2.x"},
    )


def test_write_read_final_points(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    rec = make_record()
    store.mark(rec.run_id, "running", spec=rec.config, study="t", group="sizes", rule="converge")
    assert store.status_of() == {rec.run_id: "running"}
    store.write_record(rec)
    points = store.final_points()
    assert len(points) == 1
    row = points.iloc[0]
    assert row["group"] == "sizes" and row["rule"] == "converge"  # tags kept from mark()
    assert row["N"] == rec.non_embedding_params and row["N_exact"] == rec.non_embedding_params + 1000
    assert row["D"] == rec.tokens
    assert row["C"] == pytest.approx(6.0 * rec.non_embedding_params * rec.tokens, rel=1e-12)
    assert row["C_exact"] == pytest.approx(3 * 2.2 * rec.non_embedding_params * rec.tokens, rel=1e-12)
    assert row["loss"] == pytest.approx(rec.final_test_loss["python-stdlib"])
    assert (row["architecture"], row["n_layer"], row["d_model"], row["batch_tokens"]) == ("transformer", 2, 64, 4096)
    runs = store.runs()
    assert runs.loc[0, "torch_version"] == "2.x" and runs.loc[0, "lmscale_version"] == "0.1.0"
    assert store.integrity_check() == "ok"
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rewrite_never_duplicates(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    rec = make_record(points=7)
    for _ in range(3):
        store.write_record(rec, group="g", rule="plain")
    curves = store.curves()
    assert len(curves) == 7 and curves["idx"].is_unique
    assert len(store.distribution_losses()) == 14
    assert len(store.per_position()) == 32
    assert list(store.per_position()["position"]) == list(range(1, 33))
    shorter = make_record(points=3)  # a re-written run owns exactly its new children
    store.write_record(shorter)
    assert len(store.curves()) == 3 and len(store.distribution_losses()) == 6
    assert store.final_points().iloc[0]["group"] == "g"
    ns = store.noise_scale()
    assert list(ns["noise_scale"]) == [1000.0, 2000.0, 3000.0]
    curves = store.curves()
    assert list(curves["loss"]) == pytest.approx([3.5 + 1 / k for k in (1, 2, 3)])
    assert list(curves["C"]) == pytest.approx(list(6.0 * curves["N"] * curves["D"]))


def test_diverged_nan_and_foreign_keys(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    rec = make_record("div1", status="diverged")
    rec.final_test_loss = {"python-stdlib": math.nan}
    rec.curve[-1].train_loss = math.inf
    rec.error = "loss became nan at step 5"
    store.write_record(rec)
    store.write_record(make_record("ok1"))
    assert set(store.final_points()["run_id"]) == {"ok1"}  # only results the fits may use
    everything = store.final_points(statuses=("finished", "diverged"))
    assert everything.set_index("run_id").loc["div1", "loss"] is None or pd.isna(
        everything.set_index("run_id").loc["div1", "loss"])
    assert store.runs().set_index("run_id").loc["div1", "error"] == "loss became nan at step 5"
    with store.transaction() as db:
        db.execute("DELETE FROM runs WHERE run_id = 'div1'")
    left = store._db.execute("SELECT COUNT(*) FROM curve_points WHERE run_id = 'div1'").fetchone()[0]
    assert left == 0
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction() as db:
            db.execute("INSERT INTO position_losses (run_id, position, loss) VALUES ('nope', 1, 2.0)")


def test_schema_2_store_gains_the_standard_error_columns(tmp_path):
    from conftest import schema_2_ddl
    from lmscale.store.schema import ADDED_COLUMNS

    old = schema_2_ddl()
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript(old)
    db.execute("INSERT INTO schema_info VALUES (2, '0.1.0', '2025-01-01')")
    db.commit()
    db.close()
    store = Store(tmp_path / "old.sqlite")
    assert store._db.execute("SELECT version FROM schema_info").fetchone()[0] == SCHEMA_VERSION
    for table, column, _ in ADDED_COLUMNS:
        assert column in {r[1] for r in store._db.execute(f"PRAGMA table_info({table})")}
    rec = make_record("r1")
    rec.per_position_loss, rec.per_position_se, rec.per_position_se_shape = [3.0, 2.5], [0.01, 0.02], [0.003, 0.004]
    store.write_record(rec)
    assert store.per_position()[["loss", "se", "se_shape"]].values.tolist() == [[3.0, 0.01, 0.003],
                                                                                [2.5, 0.02, 0.004]]


def test_failed_transaction_keeps_old_state(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.write_record(make_record(points=4))
    bad = make_record(points=6)
    bad.status = "exploded"
    with pytest.raises(LmscaleError, match="exploded"):
        store.write_record(bad)
    assert len(store.curves()) == 4


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_info SET version = ?, lmscale_version = '9.0'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(LmscaleError, match=rf"newer lmscale \(9.0, store schema version {SCHEMA_VERSION + 1}\).*upgrade"):
        Store(path)
    proc = subprocess.run([sys.executable, "-m", "lmscale", "sweep", "status", "--store", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "newer lmscale" in proc.stderr and "Traceback" not in proc.stderr


def test_not_a_store(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LmscaleError, match="not a readable lmscale store"):
        Store(junk)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(LmscaleError, match="not an lmscale store"):
        Store(other)
    with pytest.raises(LmscaleError, match="no such store"):
        Store(tmp_path / "missing.sqlite", create=False)


def test_export_csv_and_parquet(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.write_record(make_record("r1"), group="a")
    store.write_record(make_record("r2", n=50000, loss=3.0), group="a")
    for fmt in ("csv", "parquet"):
        paths = export(store, tmp_path / fmt, fmt)
        assert {p.name for p in paths} >= {f"final_points.{fmt}", f"curves.{fmt}", f"runs.{fmt}"}
        reader = pd.read_csv if fmt == "csv" else pd.read_parquet
        back = reader(tmp_path / fmt / f"final_points.{fmt}")
        assert list(back["run_id"]) == ["r2", "r1"]  # ordered by N
        assert list(back["loss"]) == pytest.approx(list(store.final_points()["loss"]))
        assert len(reader(tmp_path / fmt / f"curves.{fmt}")) == 10
    with pytest.raises(LmscaleError, match="format"):
        export(store, tmp_path / "x", "xlsx")


def test_import_csv_with_mapping(tmp_path):
    csv = tmp_path / "lab.csv"
    pd.DataFrame({"params": [1e6, 1e7, 1e8], "flop": [6e15, 6e17, 6e19], "val": [4.0, 3.5, 3.0]}).to_csv(csv, index=False)
    store = Store(tmp_path / "s.sqlite")
    n = import_csv(store, csv, parse_columns("N=params,C=flop,loss=val"))
    assert n == 3
    assert import_csv(store, csv, {"N": "params", "C": "flop", "loss": "val"}) == 3  # replaces, no duplicates
    points = store.final_points()
    assert len(points) == 3 and set(points["group"]) == {"lab"}
    assert list(points["D"]) == [1e9, 1e10, 1e11]  # D = C / 6N
    assert list(points["C"]) == pytest.approx([6e15, 6e17, 6e19])
    assert list(points["loss"]) == [4.0, 3.5, 3.0]
    assert set(points["source"]) == {"imported:lab.csv"}


def test_import_csv_errors(tmp_path):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e6, 1e7], "D": [1e9, "lots"], "loss": [3.0, 2.0]}).to_csv(csv, index=False)
    with pytest.raises(LmscaleError, match=r"bad.csv: row 2 \(line 3\), column 'D' \(D\) = 'lots'"):
        import_csv(tmp_path / "s.sqlite", csv)
    with pytest.raises(LmscaleError, match="missing column"):
        import_csv(tmp_path / "s.sqlite", _write(tmp_path / "x.csv", "a,b\n1,2\n"))
    with pytest.raises(LmscaleError, match="column 'nope'"):
        import_csv(tmp_path / "s.sqlite", csv, {"N": "nope"})
    with pytest.raises(LmscaleError, match="FIELD=COLUMN"):
        parse_columns("N:params")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.skipif(not (SHARED / "data" / "epoch_chinchilla_svg_extracted_data.csv").exists(),
                    reason="../shared/data not beside the checkout")
def test_import_chinchilla_points_via_cli(tmp_path):
    src = SHARED / "data" / "epoch_chinchilla_svg_extracted_data.csv"
    store = tmp_path / "chinchilla.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "lmscale", "sweep", "import", str(src), "--store", str(store),
         "--columns", "N=Model Size,C=Training FLOP,loss=loss", "--group", "chinchilla"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    raw = pd.read_csv(src)
    points = Store(store).final_points()
    assert len(points) == len(raw) == 245
    raw["D"] = raw["Training FLOP"] / (6 * raw["Model Size"])
    merged = points.sort_values(["loss", "D"]).reset_index(drop=True)
    expect = raw.sort_values(["loss", "D"]).reset_index(drop=True)
    assert list(merged["loss"]) == pytest.approx(list(expect["loss"]))
    assert list(merged["D"]) == pytest.approx(list(expect["D"]), rel=1e-6)
    assert list(merged["C"]) == pytest.approx(list(expect["Training FLOP"]), rel=1e-12)


def test_import_refuses_mixed_settings_and_where_picks_one(tmp_path, capsys):
    """Two data sets at the same N and D, 10% apart in loss: imported together, the store (N, D,
    loss) could not tell them apart, so the import is refused with the --where that picks one;
    --where imports that setting's rows only."""
    from lmscale.cli import main

    n = [1e6, 1e6, 1e7, 1e7]
    path = tmp_path / "two.csv"
    pd.DataFrame({"N": n + n, "D": [1e9, 2e9] * 4, "dataset": ["web"] * 4 + ["code"] * 4,
                  "seed": [0, 1] * 4, "loss": [3.0, 2.9, 2.7, 2.6, 3.3, 3.2, 3.0, 2.9]}).to_csv(path, index=False)
    store = tmp_path / "s.sqlite"
    with pytest.raises(LmscaleError, match=r"differ in dataset \(code, web\).*could not tell apart.*--where dataset="):
        import_csv(store, path)
    assert main(["sweep", "import", str(path), "--store", str(store), "--where", "dataset=web"]) == 0
    points = Store(store, create=False).final_points()
    assert sorted(points["loss"]) == [2.6, 2.7, 2.9, 3.0]
    assert main(["sweep", "import", str(path), "--store", str(store), "--where", "dataset=books"]) == 2
    assert "dataset holds code, web" in capsys.readouterr().err


def test_an_error_after_where_names_the_row_of_the_file(tmp_path):
    """--where keeps rows 2 and 4 of the file; a bad value in row 4 is named as row 4 (line 5), not as
    the second row kept, and a row imported with --where has the id it has in a whole import."""
    path = tmp_path / "lab.csv"
    pd.DataFrame({"N": [1e6, 1e6, 1e7, 1e7], "D": [1e9, 2e9, 1e9, "x"], "loss": [3.0, 2.9, 2.7, 2.6],
                  "arm": ["a", "b", "a", "b"]}).to_csv(path, index=False)
    with pytest.raises(LmscaleError, match=r"row 4 \(line 5\), column 'D'"):
        import_csv(tmp_path / "s.sqlite", path, where={"arm": "b"})
    good = tmp_path / "good.csv"
    pd.DataFrame({"N": [1e6, 1e7], "D": [1e9, 2e9], "loss": [3.0, 2.7], "arm": ["a", "b"]}).to_csv(good, index=False)
    import_csv(tmp_path / "one.sqlite", good, where={"arm": "b"})
    import_csv(tmp_path / "all.sqlite", good)
    one = set(Store(tmp_path / "one.sqlite", create=False).runs()["run_id"])
    assert len(one) == 1 and one < set(Store(tmp_path / "all.sqlite", create=False).runs()["run_id"])


@pytest.mark.skipif(not (SHARED / "data" / "porian2024_isoflop_points.csv").exists(),
                    reason="../shared/data not beside the checkout")
def test_import_one_setting_of_the_porian_isoflop_points(tmp_path):
    src = SHARED / "data" / "porian2024_isoflop_points.csv"
    cols = {"N": "N", "D": "D_tokens", "C": "flops", "loss": "loss"}
    with pytest.raises(LmscaleError, match="differ in .*dataset \\(owt2, rw\\)"):
        import_csv(tmp_path / "all.sqlite", src, cols)
    where = dict(dataset="rw", hparams="tuned", warmup="short", decay="const", param_count="standard",
                 loss_split="val")
    assert import_csv(tmp_path / "rw.sqlite", src, cols, where=where, rule="isoflop") == 121
    raw = pd.read_csv(src)
    for col, value in where.items():
        raw = raw[raw[col] == value]
    points = Store(tmp_path / "rw.sqlite", create=False).final_points()
    assert sorted(points["loss"]) == pytest.approx(sorted(raw["loss"]))


def test_schema_1_store_is_migrated(tmp_path):
    """A store written before provenance columns existed opens, keeps its runs and gains the columns."""
    from lmscale.store.schema import ADDED_COLUMNS, PROVENANCE_COLUMNS, TRAINING_COLUMNS

    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        store.write_record(make_record(), group="g", rule="plain")
    db = sqlite3.connect(path)
    for column in (*PROVENANCE_COLUMNS, *TRAINING_COLUMNS):  # neither existed in schema version 1
        db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    for table, column, _ in ADDED_COLUMNS:  # and the columns of schema 4
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("UPDATE schema_info SET version = 1")
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        assert store._db.execute("SELECT version FROM schema_info").fetchone()[0] == SCHEMA_VERSION
        runs = store.runs()
        assert set(PROVENANCE_COLUMNS) | set(TRAINING_COLUMNS) <= set(runs.columns)
        assert runs.loc[0, "source"] == "trained" and runs.loc[0, "group"] == "g"
        assert len(store.curves()) == 5
        store.write_record(make_record(run_id="new"))  # and it takes new runs
        assert len(store.runs()) == 2


def test_learning_curves_are_refused_and_last_per_imports_each_runs_last_row(tmp_path, capsys):
    """Four runs' learning curves (12 points each, a column naming the run): imported as final points,
    every checkpoint would be a finished run, so the import is refused and says how to take each run's
    last row; --last-per imports exactly those. A ladder (3 sizes x 6 token budgets, each its own run,
    a size label) is no curve and imports whole."""
    from lmscale.cli import main

    rows = []
    for run, n in enumerate([1e6, 3e6, 1e7, 3e7]):
        for step in range(1, 13):
            rows.append({"path": f"runs/{run}.csv", "N": n, "D": step * 1e8, "loss": 5.0 / (n * step) ** 0.05})
    curves = pd.DataFrame(rows)
    path = tmp_path / "curves.csv"
    curves.to_csv(path, index=False)
    store = tmp_path / "c.sqlite"
    with pytest.raises(LmscaleError, match=r"points of learning curves \(column 'path' names 4 runs of 12 rows.*"
                                           r"--last-per path"):
        import_csv(store, path)
    assert main(["sweep", "import", str(path), "--store", str(store), "--last-per", "path"]) == 0
    points = Store(store, create=False).final_points().sort_values("N")
    last = curves.groupby("path").tail(1).sort_values("N")
    assert list(points["D"]) == list(last["D"]) and list(points["loss"]) == pytest.approx(list(last["loss"]))
    assert main(["sweep", "import", str(path), "--store", str(store), "--last-per", "run"]) == 2
    assert "no column 'run' to take each run's last row by (columns: path, N, D, loss)" in capsys.readouterr().err
    ladder = pd.DataFrame([{"size": f"{n:g}", "N": n, "D": m * 20 * n, "loss": 3.0 - 0.1 * i - 0.05 * j}
                           for i, n in enumerate([1e6, 1e7, 1e8]) for j, m in enumerate([0.5, 1, 2, 4, 8, 16])])
    ladder.to_csv(tmp_path / "ladder.csv", index=False)
    assert import_csv(tmp_path / "l.sqlite", tmp_path / "ladder.csv") == 18


def test_the_olmo_ladders_curves_give_its_final_points(tmp_path):
    """OLMo's 3,569 curve rows, each run's last taken (--last-per source_path), are the 30 rows of the
    ladder's own final-points table."""
    from conftest import SHARED_DATA

    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not beside the checkout")
    cols = {"N": "N_params", "D": "total_tokens", "loss": "c4_en_CE"}
    with pytest.raises(LmscaleError, match="column 'source_path' names 30 runs of 119 rows"):
        import_csv(tmp_path / "o.sqlite", SHARED_DATA / "olmo_ladder_learning_curves.csv", cols)
    assert import_csv(tmp_path / "o.sqlite", SHARED_DATA / "olmo_ladder_learning_curves.csv", cols,
                      last_per="source_path") == 30
    got = Store(tmp_path / "o.sqlite", create=False).final_points().sort_values(["N", "D", "loss"])
    final = pd.read_csv(SHARED_DATA / "olmo_ladder_final_points.csv").sort_values(
        ["N_params", "total_tokens", "c4_en_CE"])  # a rerun shares its run's N and D
    assert list(got["loss"]) == pytest.approx(list(final["c4_en_CE"]))
    assert list(got["D"]) == pytest.approx(list(final["total_tokens"]))
