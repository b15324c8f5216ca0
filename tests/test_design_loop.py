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

import pandas as pd
import pytest

from lmscale.cli import main
from lmscale.design.api import default_forecaster
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
    # three sizes: too few to validate at scale, so the default forecast is chinchilla, and says why
    assert before["law"] == "chinchilla" and "not possible on these runs" in before["law_choice"]
    props = before["proposals"]
    assert 1 <= len(props) <= 3 and before["cost"] <= 1e11 * (1 + 1e-9)
    seed_D = Store(store, create=False).final_points()["D"].min()
    assert all(p["D"] >= seed_D * 0.999 and p["D"] <= 444_411 and p["n_layer"] for p in props)
    text = (tmp_path / "next.toml").read_text()
    assert 'name = "next-1@N=2e+05,D=4e+05"' in text and text.startswith(study.read_text().rstrip())
    sweep(tmp_path / "next.toml", store)
    points = Store(store, create=False).final_points()
    assert len(points) == 9 + len(props)
    # the same law before and after: the runs bought narrowed its interval at the target
    after = next_json(capsys, store, "--target", TARGET, "--budget", "1e11", "--k", "3", "--law", "chinchilla")
    assert after["round"] == 2 and after["n_runs"] == 9 + len(props)
    w0, w1 = before["forecast"]["relative_width"][0], after["forecast"]["relative_width"][0]
    assert w1 < w0, (w0, w1)
    fixed = study_rounds(points, lambda: default_forecaster("chinchilla", 64))
    assert fixed["width"].tolist() == pytest.approx([w0, w1], rel=1e-6)
    # the report's figure reads the rounds back from the group names, each round fitted by the
    # forecast next uses by default, which it names
    default = next_json(capsys, store, "--target", TARGET, "--budget", "1e11", "--k", "3")
    rounds = study_rounds(points)
    assert rounds["round"].tolist() == [0, 1] and rounds["runs"].tolist() == [9, 9 + len(props)]
    assert rounds["law"].iloc[0] == "chinchilla" and rounds["law"].iloc[1] == default["law"]
    assert rounds["width"].iloc[1] == pytest.approx(default["forecast"]["relative_width"][0], rel=1e-6)
    assert rounds["later_error"].notna().tolist() == [True, False]


def test_the_written_study_takes_the_recipe_of_the_runs_the_forecast_extends(tmp_path):
    """A store with a batch-size sweep beside its main runs: the proposals' recipe (batch, the study's
    lr_scale, schedule) is that of the runs the forecast uses, not the trainer's defaults (the sweep's
    other batch sizes and schedule made those fields differ, so they were left out of the written study,
    and its lr_scale was not carried at all: the new runs would have trained at 1/4 of the rate)."""
    from lmscale.design import study_file as sf
    from lmscale.laws.forecast import store_runs
    from lmscale.models.shapes import paper_learning_rate

    base = (ROOT / "studies" / "design-smoke.toml").read_text().split("[[group]]")[0]
    study = tmp_path / "two-recipes.toml"
    study.write_text(base.replace("seed = 0", "seed = 0\nlr_scale = 4.0\nschedule = \"cosine\"") + '''
[[group]]
name = "main"
rule = "plain"
params = [5e3, 1e4]
tokens = [2e4, 2e4]

[[group]]
name = "batch"
rule = "plain"
schedule = "constant"
batch_tokens = [1024]
params = [5e3]
tokens = [2e4]
''')
    store = tmp_path / "two.sqlite"
    sweep(study, store)
    with Store(store, create=False) as db:
        points = db.final_points()
    used = store_runs(points)  # the batch sweep's run is left out of the forecast
    assert len(used) == 2 and set(used["run_id"]) == set(points.loc[points["group"] == "main", "run_id"])
    every = sf.context_from_store(store).defaults
    assert "batch_tokens" not in every and "schedule" not in every and every["lr_scale"] == 4.0
    mine = sf.context_from_store(store, used["run_id"]).defaults
    assert mine["batch_tokens"] == 2048 and mine["schedule"] == "cosine" and mine["lr_scale"] == 4.0
    proposal = sf.recipes(used[["N"]].head(1), mine).iloc[0]
    assert proposal["lr"] == pytest.approx(4.0 * paper_learning_rate(proposal["N_shape"]))
    assert proposal["batch_tokens"] == 2048 and "lr_scale" in proposal["lr_source"]

    # the rebuilt study names its data as the store's runs do, wherever it is written: its runs' ids
    # carry the same data identity (an absolute path became '../../root/.cache/...' relative to the file)
    from lmscale.sweeps.spec import load_study

    ctx = sf.context_from_store(store, used["run_id"])
    with Store(store, create=False) as db:
        data_ids = {json.loads(spec)["data_dir"] for spec in db.runs()["spec_json"]}
    (data_id,) = data_ids
    assert data_id.startswith("prepared:") and f'data = "{data_id}"' in sf.study_toml(ctx, tmp_path)
    elsewhere = tmp_path / "a" / "b" / "next.toml"
    sf.write_study(elsewhere, sf.group_toml(1, sf.recipes(pd.DataFrame({"N": [8e3], "D": [2048 * 10]}), mine)
                                            .assign(C=6 * 8e3 * 2048 * 10), [1e5], [1e6], "test"), ctx=ctx)
    assert {r.config.data_dir for r in load_study(elsewhere).runs} == {data_id}
