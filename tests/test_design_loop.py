"""End to end on real runs: fit, ``next --write-study``, ``sweep run``, fit again; the report's rounds.

The study is ``studies/design-smoke.toml`` (nine tiny Transformers on the
smoke data); ``next`` proposes up to three runs for a target ten times
larger in N than the largest (the data's 444k tokens cap D), ``sweep run``
trains them into the same store, and the forecast interval at the target is
narrower afterwards.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmscale.cli import main
from lmscale.design.rounds import study_rounds
from lmscale.store import Store

ROOT = Path(__file__).resolve().parents[1]
TARGET = "2e5,4e5"


def sweep(study, store):
    result = subprocess.run([sys.executable, "-m", "lmscale", "sweep", "run", str(study), "--store", str(store),
                             "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def next_json(capsys, *args):
    code = main(["next", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_fit_next_run_fit_narrows_the_forecast_interval(tmp_path, capsys):
    study = tmp_path / "design-smoke.toml"
    shutil.copy(ROOT / "studies" / "design-smoke.toml", study)
    store = tmp_path / "design.sqlite"
    sweep(study, store)
    assert main(["fit", str(store), "--law", "chinchilla"]) == 0
    capsys.readouterr()
    before = next_json(capsys, store, "--target", TARGET, "--budget", "1e11", "--k", "3", "--study", study,
                       "--write-study", tmp_path / "next.toml")
    props = before["proposals"]
    assert 1 <= len(props) <= 3 and before["cost"] <= 1e11 * (1 + 1e-9)
    seed_D = Store(store, create=False).final_points()["D"].min()
    assert all(p["D"] >= seed_D * 0.999 and p["D"] <= 444_411 and p["n_layer"] for p in props)
    text = (tmp_path / "next.toml").read_text()
    assert 'name = "next-1@N=2e+05,D=4e+05"' in text and text.startswith(study.read_text().rstrip())
    sweep(tmp_path / "next.toml", store)
    points = Store(store, create=False).final_points()
    assert len(points) == 9 + len(props)
    after = next_json(capsys, store, "--target", TARGET, "--budget", "1e11", "--k", "3")
    assert after["round"] == 2 and after["n_runs"] == 9 + len(props)
    w0, w1 = before["forecast"]["relative_width"][0], after["forecast"]["relative_width"][0]
    assert w1 < w0, (w0, w1)
    # the report's figure reads the rounds back from the group names
    rounds = study_rounds(points)
    assert rounds["round"].tolist() == [0, 1] and rounds["runs"].tolist() == [9, 9 + len(props)]
    assert rounds["width"].iloc[1] == pytest.approx(w1, rel=1e-6)
    assert rounds["later_error"].notna().tolist() == [True, False]
