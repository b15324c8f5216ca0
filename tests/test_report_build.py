"""Reports from stores with too few runs, hostile names, and the command line."""

from __future__ import annotations

import html
import json
import sqlite3
from pathlib import Path

import pytest

from lmscale.cli import main
from lmscale.laws.result import LawSet
from lmscale.report import ReportOptions, build_report
from lmscale.store import Store

HOSTILE = '<img src=x onerror="alert(1)">&"'


def copy_store(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:  # a consistent copy of a WAL database
        a.backup(b)
    return dst


def keep_runs(store: Path, where: str) -> list[str]:
    db = sqlite3.connect(store)
    db.execute("PRAGMA foreign_keys = ON")
    with db:
        db.execute(f"DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs WHERE {where} LIMIT 1)")
    kept = [r[0] for r in db.execute("SELECT run_id FROM runs")]
    db.close()
    return kept


@pytest.fixture()
def one_run_store(smoke_store, tmp_path) -> Path:
    store = copy_store(smoke_store, tmp_path / "one.sqlite")
    assert len(keep_runs(store, "architecture = 'transformer'")) == 1
    return store


def test_too_few_runs_says_which_runs_are_missing(one_run_store, tmp_path):
    report = build_report(one_run_store, tmp_path / "out", ReportOptions(bootstrap=0, strict=True))
    page = report.index.read_text()
    fits = report.fits
    # nothing fitted that needs several runs; each law says what it would need
    assert "kaplan_n" not in fits.laws and "3 or more sizes" in fits.missing["kaplan_n"]
    assert "2 or more Transformer runs" in fits.missing["bcrit"]
    assert "envelope" in fits.missing and fits.holdout is None
    # figures that need several runs are listed with the runs they need, in the page too
    assert "fig02_learning_curves" in report.not_drawn
    assert "(the study has 1)" in " ".join(report.not_drawn["fig02_learning_curves"])
    assert 'id="missing-figures"' in page and 'id="missing-laws"' in page
    for key, needs in report.not_drawn.items():
        for text in needs:
            assert html.escape(text, quote=True) in page, key
    drawn_imgs = page.count("<img ")
    assert drawn_imgs == len(report.drawn)
    assert json.loads(report.fits_json.read_text())["kind"] == "lawset"


def test_empty_store(tmp_path):
    Store(tmp_path / "empty.sqlite").close()
    report = build_report(tmp_path / "empty.sqlite", tmp_path / "out", ReportOptions(bootstrap=0, strict=True))
    page = report.index.read_text()
    assert report.drawn == [] and report.fits.laws.laws == {}
    assert "No law could be fitted" in page and "The store has no runs" in page
    assert LawSet.from_json(report.fits_json).laws == {}


def test_user_strings_are_escaped(smoke_store, tmp_path):
    store = copy_store(smoke_store, tmp_path / "hostile.sqlite")
    db = sqlite3.connect(store)
    with db:
        db.execute("UPDATE runs SET grp = ?, error = ?", (HOSTILE, HOSTILE))
    db.close()
    out = tmp_path / f"out {HOSTILE[:4]}"
    report = build_report(store, out, ReportOptions(bootstrap=0))
    page = report.index.read_text()
    assert HOSTILE not in page and "<img src=x" not in page
    assert html.escape(HOSTILE, quote=True) in page
    assert html.escape(str(store), quote=True) in page


def test_cli_report_json_and_errors(smoke_store, tmp_path, capsys):
    out = tmp_path / "cli-report"
    assert main(["report", "--store", str(smoke_store), "--out", str(out), "--bootstrap", "0", "--json",
                 "--link-figures"]) == 0
    summary = json.loads(capsys.readouterr().out)
    page = (out / "index.html").read_text()
    assert "data:image/png" not in page
    assert Path(summary["index"]) == out / "index.html" and (out / "index.html").exists()
    assert set(summary["laws"]) == set(LawSet.from_json(out / "fits.json").laws)
    assert set(summary["figures"]) == {p.stem for p in (out / "figures").glob("*.png")}
    for key in summary["figures"]:
        assert (out / "figures" / f"{key}.png").exists() and (out / "figures" / f"{key}.svg").exists()
        assert f'src="figures/{key}.png"' in page
    # the fits feed the planner; three sizes leave one between the smallest and the largest, so no
    # frontier: the planner says it cannot allocate, and the report says why
    assert main(["plan", "--law", str(out / "fits.json"), "--compute", "1e13", "--json"]) == 2
    assert "cannot allocate compute" in capsys.readouterr().err
    assert "between the smallest and the largest" in page
    # bad input: exit 2 and a one-line message naming what was wrong
    assert main(["report", "--store", str(tmp_path / "nope.sqlite"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "nope.sqlite" in err and "Traceback" not in err
    not_a_store = tmp_path / "text.sqlite"
    not_a_store.write_text("hello")
    assert main(["report", "--store", str(not_a_store), "--out", str(out)]) == 2
    assert "text.sqlite" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["report", "--store", str(smoke_store), "--out", str(a_file)]) == 2
    assert main(["report", "--store", str(smoke_store), "--out", str(out), "--bootstrap", "-1"]) == 2
    # the store as the first argument, as fit, predict and next take theirs; not twice
    capsys.readouterr()
    assert main(["report", str(smoke_store), "--out", str(tmp_path / "positional"), "--bootstrap", "0",
                 "--json"]) == 0
    assert (tmp_path / "positional" / "index.html").exists()
    capsys.readouterr()
    assert main(["report", str(smoke_store), "--store", str(smoke_store), "--out", str(out)]) == 2
    assert main(["report", "--out", str(out)]) == 2
    assert "give the results store once" in capsys.readouterr().err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    assert "lmscale report --store" in text and "--open" in text and "fits.json" in text


def test_unfinished_runs_are_left_out(smoke_store, tmp_path):
    from lmscale.laws.study import fit_study

    store = copy_store(smoke_store, tmp_path / "running.sqlite")
    db = sqlite3.connect(store)
    with db:
        (run_id,) = db.execute("SELECT run_id FROM runs WHERE architecture = 'transformer' "
                               "ORDER BY non_embedding_params DESC LIMIT 1").fetchone()
        db.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    db.close()
    full, partial = fit_study(smoke_store, bootstrap=0), fit_study(store, bootstrap=0)
    assert any(run_id in set(p.get("run_id", [])) for p in full.points.values())
    for key, points in partial.points.items():
        assert run_id not in set(points.get("run_id", [])), key
    # three sizes: approach 1 has one size between the smallest and the largest, so no frontier
    assert "envelope" not in full.frontiers and "between the smallest and the largest" in full.missing["envelope"]
    assert "envelope" not in partial.frontiers
