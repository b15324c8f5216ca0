"""One CSV reader for every command: separators, decimal commas, byte-order marks and refusals."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lmscale.errors import LmscaleError
from lmscale.store import Store, import_csv
from lmscale.tables import header_separator, read_csv

ROWS = [(1e6, 1e8, 7.693075), (3e6, 3e8, 6.25), (1e7, 1e9, 5.5), (3e7, 3e9, 4.75)]


def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def _text(sep, decimal=".", header=("N", "D", "loss")):
    lines = [sep.join(header)]
    for row in ROWS:
        lines.append(sep.join(repr(v).replace(".", decimal) if i == 2 else f"{v:g}" for i, v in enumerate(row)))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("sep,decimal", [(",", "."), (";", "."), (";", ","), ("\t", "."), ("|", ".")])
def test_every_separator_and_a_decimal_comma_read_the_same_numbers(tmp_path, sep, decimal):
    frame = read_csv(_write(tmp_path / "runs.csv", _text(sep, decimal)))
    assert list(frame.columns) == ["N", "D", "loss"]
    np.testing.assert_array_equal(frame.to_numpy(dtype=float), np.array(ROWS))


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    frame = read_csv(_write(tmp_path / "runs.csv", _text(","), encoding="utf-8-sig"))
    assert list(frame.columns) == ["N", "D", "loss"]


def test_the_separator_is_the_one_the_header_holds_most_of():
    assert header_separator("N,D,loss\n") == ","
    assert header_separator("N;D;loss;note, free text\n") == ";"
    assert header_separator("loss\n") == ","


def test_decimal_commas_are_read_only_in_a_semicolon_table(tmp_path):
    """A tab-separated table may write 1,234 for one thousand two hundred and thirty-four: it stays
    text there (and fit names its rows as not numbers) instead of being read as 1.234."""
    frame = read_csv(_write(tmp_path / "runs.tsv", "N\tloss\n1,234\t2.5\n"))
    assert frame["N"].tolist() == ["1,234"]


def test_a_text_column_with_some_commas_stays_text(tmp_path):
    frame = read_csv(_write(tmp_path / "runs.csv", "N;name;loss\n1;a,b;2,5\n2;c;3,5\n"))
    assert frame["name"].tolist() == ["a,b", "c"]
    assert frame["loss"].tolist() == [2.5, 3.5]


@pytest.mark.parametrize("text,says", [
    ("", "empty file"),
    ("N,N,loss\n1,2,3\n", "'N' named more than once"),
    ("N,D,loss\n1,2,3,4,5\n", "more fields than the header"),
])
def test_what_the_reader_refuses_names_the_file(tmp_path, text, says):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(LmscaleError, match=says) as info:
        read_csv(path)
    assert "bad.csv" in str(info.value)


def test_fit_and_both_importers_read_a_semicolon_table_with_decimal_commas(tmp_path):
    path = _write(tmp_path / "runs.csv", _text(";", ","))
    done = subprocess.run([sys.executable, "-m", "lmscale", "fit", str(path), "--law", "kaplan_n", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dropped" not in done.stderr  # no row lost to '7,693075' read as text
    store = tmp_path / "s.sqlite"
    assert import_csv(store, path) == len(ROWS)
    with Store(store, create=False) as s:
        final = s.final_points()
    np.testing.assert_allclose(sorted(final["loss"]), sorted(r[2] for r in ROWS))
    (tmp_path / "map.toml").write_text('loss = "loss"\n[N]\nparam = "N"\n[tokens]\nmetric = "D"\n')
    done = subprocess.run([sys.executable, "-m", "lmscale", "import", "csv", str(path), "--store",
                           str(tmp_path / "t.sqlite"), "--map", str(tmp_path / "map.toml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Store(tmp_path / "t.sqlite", create=False) as s:
        final = s.final_points()
    np.testing.assert_allclose(sorted(final["loss"]), sorted(r[2] for r in ROWS))


def test_predict_at_a_budget_alone_points_to_plan(tmp_path):
    from lmscale.laws.prediction import points_frame

    with pytest.raises(LmscaleError, match="lmscale plan --compute"):
        points_frame(pd.DataFrame({"C": [1e21]}))
    with pytest.raises(LmscaleError) as info:
        points_frame(pd.DataFrame({"N": [1e9]}))
    assert "plan" not in str(info.value)


def test_where_and_columns_take_names_and_values_with_commas_in_quotes():
    from lmscale.laws.io import parse_columns
    from lmscale.tables import parse_where, select_rows

    assert parse_where('run="a,b",lr=0.001') == {"run": "a,b", "lr": "0.001"}
    assert parse_where("note='x, y', owner=O'Brien") == {"note": "x, y", "owner": "O'Brien"}
    assert parse_columns('N="Model Size",C="Training FLOP"') == {"N": "Model Size", "C": "Training FLOP"}
    assert parse_columns('loss="val loss, final"') == {"loss": "val loss, final"}
    with pytest.raises(LmscaleError, match="quote is not closed"):
        parse_where('run="a,b')
    frame = pd.DataFrame({"run": ["a,b", "a", "b"], "loss": [1.0, 2.0, 3.0]})
    assert select_rows(frame, parse_where('run="a,b"'))["loss"].tolist() == [1.0]


# -- Excel workbooks ----------------------------------------------------------------------------
@pytest.fixture()
def workbook(tmp_path):
    """A workbook whose first sheet is a note and whose second holds the runs two rows down, one column in."""
    pytest.importorskip("openpyxl")
    path = tmp_path / "runs.xlsx"
    frame = pd.DataFrame(ROWS, columns=["N", "D", "loss"])
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        pd.DataFrame({"note": ["runs of the ladder"]}).to_excel(book, sheet_name="readme", index=False)
        frame.to_excel(book, sheet_name="ladder", index=False, startrow=2, startcol=1)
    return path


def test_a_sheet_of_a_workbook_reads_as_its_csv_would(workbook, tmp_path):
    from lmscale.tables import read_rows

    frame = read_rows(f"{workbook}#ladder")
    assert list(frame.columns) == ["N", "D", "loss"] and frame.attrs["sheet"] == "ladder"
    np.testing.assert_array_equal(frame.to_numpy(dtype=float), np.array(ROWS))
    assert "notes" not in frame.attrs  # the sheet was named: nothing to say
    first = read_rows(workbook)
    assert first.attrs["sheet"] == "readme" and "read its first sheet, 'readme', of 2" in first.attrs["notes"][0]
    with pytest.raises(LmscaleError, match="no sheet 'nope'; its sheets: readme, ladder"):
        read_rows(f"{workbook}#nope")
    assert import_csv(tmp_path / "s.sqlite", f"{workbook}#ladder") == len(ROWS)
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert sorted(store.final_points()["loss"]) == sorted(r[2] for r in ROWS)


def test_fit_reads_a_workbook_sheet_like_the_csv_and_names_the_sheet_in_errors(workbook, tmp_path):
    csv_path = _write(tmp_path / "runs.csv", _text(","))
    fits = []
    for source in (csv_path, f"{workbook}#ladder"):
        done = subprocess.run([sys.executable, "-m", "lmscale", "fit", str(source), "--law", "kaplan_n", "--json"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        fits.append(json.loads(done.stdout)["params"])
    assert fits[0] == pytest.approx(fits[1], rel=1e-12)
    done = subprocess.run([sys.executable, "-m", "lmscale", "fit", str(workbook)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert "runs.xlsx#readme (the first of its sheets readme, ladder; choose one with runs.xlsx#SHEET)" in done.stderr


def test_workbooks_lmscale_cannot_read_are_refused_with_what_to_do(tmp_path, workbook, monkeypatch):
    from lmscale.tables import read_rows

    with pytest.raises(LmscaleError, match=r"old.xls: a .xls spreadsheet, which lmscale does not read; save"):
        read_rows(_write(tmp_path / "old.xls", "N,D,loss\n"))
    with pytest.raises(LmscaleError, match="broken.xlsx: not a readable Excel workbook"):
        read_rows(_write(tmp_path / "broken.xlsx", "N,D,loss\n"))
    pd.DataFrame([[1, 2, 3]], columns=["N", "N ", "loss"]).to_excel(tmp_path / "twice.xlsx", index=False)
    with pytest.raises(LmscaleError, match="'N' named more than once"):
        read_rows(tmp_path / "twice.xlsx")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as where the extra is not installed
    with pytest.raises(LmscaleError, match=r"needs openpyxl: pip install 'lmscale\[excel\]'"):
        read_rows(workbook)


def test_a_title_above_the_header_is_left_out_and_a_nameless_column_refused(tmp_path):
    """Spreadsheets put a title above the table: the header is the first all-text row filling the most
    cells, and the note says what was left out. A column of values without a name, or a sheet of
    numbers without a header row, is refused."""
    openpyxl = pytest.importorskip("openpyxl")
    from lmscale.tables import read_rows

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "runs"
    sheet["A1"] = "Ladder runs, December"
    sheet.append([])
    sheet.append([None, "N", "D", "loss"])
    for row in ROWS:
        sheet.append([None, *row])
    book.save(tmp_path / "title.xlsx")
    frame = read_rows(tmp_path / "title.xlsx")
    assert list(frame.columns) == ["N", "D", "loss"]
    np.testing.assert_array_equal(frame.to_numpy(dtype=float), np.array(ROWS))
    assert frame.attrs["notes"] == ["%s#runs: the 1 row(s) above the header row (N, D, loss) were taken for "
                                    "titles and left out" % (tmp_path / "title.xlsx")]
    for rows, says in [([["N", "D", None], [1, 2, 3]], "a column with values has no name"),
                       ([[1, 2, 3]], "no header row")]:
        book = openpyxl.Workbook()
        for row in rows:
            book.active.append(row)
        book.save(tmp_path / "bad.xlsx")
        with pytest.raises(LmscaleError, match=says):
            read_rows(tmp_path / "bad.xlsx")


# -- tables at an address ---------------------------------------------------------------------------
@pytest.fixture()
def served(tmp_path):
    """A folder served over HTTP on localhost (a real server in a thread): its base address."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fit_reads_a_table_at_an_address_as_it_reads_the_file(served):
    from lmscale.laws.io import read_table

    folder, base = served
    _write(folder / "runs.csv", _text(";", ","))
    local = read_table(folder / "runs.csv")
    remote = read_table(f"{base}/runs.csv")
    pd.testing.assert_frame_equal(local, remote)
    assert remote.attrs["source"] == f"{base}/runs.csv"
    done = subprocess.run([sys.executable, "-m", "lmscale", "fit", f"{base}/runs.csv", "--law", "kaplan_n", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fitted = json.loads(done.stdout)["params"]
    done = subprocess.run([sys.executable, "-m", "lmscale", "fit", str(folder / "runs.csv"), "--law", "kaplan_n",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert json.loads(done.stdout)["params"] == pytest.approx(fitted, rel=1e-12)


def test_an_address_that_fails_says_so_with_the_address(served):
    from lmscale.laws.io import read_table

    folder, base = served
    with pytest.raises(LmscaleError, match=rf"{base}/none.csv: the server answered 404"):
        read_table(f"{base}/none.csv")
    _write(folder / "twice.csv", "N,N,loss\n1,2,3\n")
    with pytest.raises(LmscaleError) as info:
        read_table(f"{base}/twice.csv")
    assert str(info.value).startswith(f"{base}/twice.csv: column(s) 'N' named more than once")
    with pytest.raises(LmscaleError, match="could not download"):
        read_table("http://127.0.0.1:9/runs.csv")  # nothing listens on the discard port


def test_a_chosen_sheet_is_not_called_the_first_one(tmp_path):
    """A sheet named after '#' whose table has a title row above it: its name in messages was
    'the first of its sheets ...' (the title row's note was taken for the first-sheet note)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl")
    from lmscale.laws.io import read_table

    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path) as book:
        pd.DataFrame({"N": [1e6, 2e6], "D": [2e7, 4e7], "loss": [3.0, 2.9]}).to_excel(book, sheet_name="a", index=False)
        pd.DataFrame([["My ladder", None, None], ["N", "D", "loss"], [1e6, 2e7, 3.0], [2e6, 4e7, 2.9]]).to_excel(
            book, sheet_name="b", index=False, header=False)
    assert read_table(f"{path}#b").attrs["source"] == "two.xlsx#b"
    assert read_table(path).attrs["source"] == "two.xlsx#a (the first of its sheets a, b; choose one with two.xlsx#SHEET)"


DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (DATA / "olmo_ladder_final_points.csv").exists(), reason="../shared/data absent")
@pytest.mark.parametrize("name,expected", [
    ("olmo_ladder_final_points", "N=N_params,D=total_tokens,loss=c4_en_CE"),
    ("epoch_chinchilla_svg_extracted_data", 'N="Model Size",C="Training FLOP"'),
    ("muennighoff2023_datablations_runs", "N=N_params,D=D_tokens,loss=val_loss"),
])
def test_a_table_with_other_names_gets_the_columns_flag_that_fits_it(tmp_path, capsys, name, expected):
    """Other labs name the columns N_params, total_tokens, "Model Size", val_loss: the error names the
    --columns flag its columns suggest, and that flag, pasted, fits the table."""
    from lmscale.cli import main

    path = DATA / f"{name}.csv"
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"perhaps --columns '{expected}'" in err, err
    if name.startswith("olmo"):  # the other losses are named too
        assert "loss could also be dolma_books_CE" in err
    assert main(["fit", str(path), "--columns", expected]) == 0, capsys.readouterr().err


def test_a_column_of_text_is_not_offered_for_a_number():
    """Porian et al. name a column param_count that holds the words 'standard' and 'kaplan'."""
    from lmscale.tables import columns_hint

    frame = pd.DataFrame({"param_count": ["standard", "kaplan"], "n_params": [1e6, 2e6], "D_tokens": [1e8, 2e8],
                          "val_loss": [3.1, 3.0]})
    assert columns_hint(frame, ["N", "D", "loss"]) == "; perhaps --columns 'N=n_params,D=D_tokens,loss=val_loss'"
    assert columns_hint(frame[["param_count"]], ["N"]) == ""


def test_sweep_import_takes_quoted_column_names_as_fit_does(tmp_path, capsys):
    """`lmscale fit --columns 'N="Model Size"'` worked; `sweep import` kept the quotes as part of the name
    and refused: column '"Model Size"' not found."""
    from lmscale.cli import main

    path = _write(tmp_path / "epoch.csv", 'Model Size,Training FLOP,loss\n1e8,6e18,3.0\n3e8,1.8e19,2.8\n1e9,6e19,2.6\n')
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "import", str(path), "--store", str(store),
                 "--columns", 'N="Model Size",C="Training FLOP"']) == 0, capsys.readouterr().err
    points = Store(store, create=False).final_points()
    assert sorted(points["N"]) == [1e8, 3e8, 1e9]
    assert np.allclose(sorted(points["D"]), [6e18 / 6e8, 1.8e19 / 1.8e9, 6e19 / 6e9])
