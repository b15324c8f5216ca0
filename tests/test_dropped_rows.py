"""Dropped rows are named: which rows (up to a few), which column, the value and what is wrong."""

import numpy as np
import pandas as pd
import pytest

from lmscale.cli import main
from lmscale.errors import LmscaleError
from lmscale.laws import FORMS
from lmscale.laws.io import SHOWN_ROWS, prepare_points, read_table


def _frame(n=12):
    n_params = np.geomspace(1e6, 1e9, n)
    d = 20 * n_params
    loss = 1.7 + 400 / n_params**0.34 + 400 / d**0.28
    return pd.DataFrame({"N": n_params, "D": d, "loss": loss})


def test_cli_names_the_bad_rows_and_columns(tmp_path, capsys):
    frame = _frame().astype(object)
    frame.loc[3, "D"] = "abc"
    frame.loc[8, "N"] = -1
    frame.loc[10, "loss"] = None
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "chinchilla"]) == 0
    out = capsys.readouterr().out
    assert ("dropped 3 of 12 rows of runs.csv: row 4 (D = 'abc', not a number), "
            "row 9 (N = -1, not positive), row 11 (loss missing)") in out


def test_only_a_few_rows_named_and_derived_columns_said(tmp_path):
    frame = _frame(30).drop(columns="D")
    frame["C"] = 6 * frame["N"] * 20 * frame["N"]
    frame.loc[:9, "C"] = 0.0  # ten bad rows; D = C / (6 N) is derived from them
    frame.loc[2, "loss"] = np.inf
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    points = prepare_points(read_table(path), FORMS["chinchilla"])
    dropped = points.notes["dropped_rows"]
    assert dropped["count"] == 10 and len({r["row"] for r in dropped["rows"]}) == SHOWN_ROWS
    assert dropped["message"].startswith("dropped 10 of 30 rows of c.csv: row 1 (D = 0, not positive (derived))")
    assert "row 3 (D = 0, not positive (derived); loss = inf, infinite)" in dropped["message"]
    assert dropped["message"].endswith("and 5 more")


def test_no_usable_rows_names_them():
    frame = pd.DataFrame({"N": ["x", -2.0], "D": [1e9, 1e10], "loss": [3.0, 2.0]})
    with pytest.raises(LmscaleError, match=r"row 1 \(N = 'x', not a number\), row 2 \(N = -2, not positive\)"):
        prepare_points(frame, FORMS["chinchilla"])
