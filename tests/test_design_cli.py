"""``lmscale next`` and ``lmscale simulate`` on the command line: proposals, JSON, and bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmscale.cli import main
from lmscale.laws import catalog

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRUE = catalog.load("besiroglu2024").laws["chinchilla"]


def grid_runs(path, sizes=(2e7, 5e7, 1.25e8), ratios=(5, 20, 80), seed=0):
    """A 3 x 3 seed grid of synthetic runs from the Besiroglu et al. law (0.5% noise)."""
    rng = np.random.default_rng(seed)
    N, R = np.meshgrid(sizes, ratios, indexing="ij")
    N, D = N.ravel(), (N * R).ravel()
    loss = TRUE.predict(N=N, D=D) * np.exp(0.005 * rng.standard_normal(len(N)))
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(path, index=False)
    return path


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_next_json_proposals_within_budget(tmp_path, capsys):
    runs = grid_runs(tmp_path / "runs.csv")
    code, out, err = run_cli(capsys, "next", runs, "--target", "7e9,1.4e11", "--budget", "3e19", "--k", "4",
                             "--bootstrap", "32", "--json")
    assert code == 0, err
    rep = json.loads(out)
    props = rep["proposals"]
    assert 1 <= len(props) <= 4
    assert sum(p["C"] for p in props) <= 3e19 * (1 + 1e-9)
    for p in props:
        assert p["C"] == pytest.approx(6 * p["N"] * p["D"])
        assert p["n_layer"] >= 1 and p["lr"] > 0  # a shape from the shape helper, LR(N) of [K] eq. D.1
    narrowing = [p["narrowing"] for p in props]
    assert np.all(np.diff(narrowing) >= -1e-12) and 0 < narrowing[-1] < 1
    assert rep["target"]["N"] == [7e9] and rep["forecast"]["lo"][0] < rep["forecast"]["loss"][0] < rep["forecast"]["hi"][0]
    # the text form prints the same runs, their cost and the expected narrowing
    code, out, _ = run_cli(capsys, "next", runs, "--target-compute", "1e22", "--budget", "3e19", "--k", "2",
                           "--bootstrap", "16")
    assert code == 0 and "expected narrowing" in out and "compute-optimal point" in out


def test_next_pool_chooses_among_existing_runs(tmp_path, capsys):
    runs = grid_runs(tmp_path / "runs.csv")
    pool = tmp_path / "pool.csv"
    N = np.array([2e8, 3e8, 5e8])
    pd.DataFrame({"N": N, "D": 20 * N, "run": ["a", "b", "c"]}).to_csv(pool, index=False)
    code, out, err = run_cli(capsys, "next", runs, "--pool", pool, "--target", "7e9,1.4e11", "--budget", "1e21",
                             "--bootstrap", "16", "--json")
    assert code == 0, err
    picked = json.loads(out)["proposals"]
    assert picked and {p["run"] for p in picked} <= {"a", "b", "c"}


@pytest.mark.parametrize("args, message", [
    (["--target", "5e7,1e9", "--budget", "1e19"], "inside the fitted data"),
    (["--target", "7e9,1.4e11", "--budget", "1e10"], "below the cheapest possible run"),
    (["--target", "7e9,1.4e11", "--budget", "1e19", "--law", "no_such_law"], "unknown law 'no_such_law'"),
    (["--target", "7e9", "--budget", "1e19"], "expected N,D"),
])
def test_next_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    runs = grid_runs(tmp_path / "runs.csv")
    code, out, err = run_cli(capsys, "next", runs, *args, "--bootstrap", "8")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_next_needs_three_runs(tmp_path, capsys):
    runs = tmp_path / "two.csv"
    pd.DataFrame({"N": [1e7, 2e7], "D": [2e8, 4e8], "loss": [3.0, 2.9]}).to_csv(runs, index=False)
    code, _, err = run_cli(capsys, "next", runs, "--target", "7e9,1.4e11", "--budget", "1e19")
    assert code == 2 and "at least 3" in err


def test_simulate_bad_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "simulate", "--truth", "no_such_law", "--seeds", "1")
    assert code == 2 and "unknown law" in err
    code, _, err = run_cli(capsys, "simulate", "--truth", "besiroglu2024", "--truth-law", "bogus", "--seeds", "1")
    assert code == 2 and "unknown law 'bogus'" in err
    code, _, err = run_cli(capsys, "simulate", "--truth", "kaplan2020", "--noise-from", tmp_path / "missing.csv")
    assert code == 2 and "no such file" in err


@pytest.mark.skipif(not (DATA / "epoch_chinchilla_svg_extracted_data.csv").exists(), reason="../shared/data absent")
def test_simulate_json_compares_designs_at_equal_flops(tmp_path, capsys):
    design = tmp_path / "mine.csv"
    N = np.geomspace(1e7, 1e9, 5)
    pd.DataFrame({"N": N, "D": 20 * N}).to_csv(design, index=False)
    code, out, err = run_cli(capsys, "simulate", "--truth", "kaplan2020", "--data-dir", DATA, "--seeds", "2",
                             "--design", f"mine={design}", "--json")
    assert code == 0, err
    rep = json.loads(out)
    rows = {r["design"]: r for r in rep["designs"]}
    assert set(rows) == {"next", "loguniform", "isoflop", "mine"}
    budget = rep["budget"]
    assert budget == pytest.approx(float((6 * N * 20 * N).sum()))
    for name in ("next", "loguniform", "isoflop"):
        assert rows[name]["compute"] <= budget * (1 + 1e-6)
    assert rep["noise_sd_log"] == pytest.approx(0.0075, abs=0.001)  # the Epoch residuals
    assert rep["target"]["C"][0] == pytest.approx(100 * rep["max_run"])


def test_report_draws_the_rounds_of_a_grown_study(tmp_path):
    from lmscale.laws.study import StudyFrames
    from lmscale.report.figures import FIGURES, draw_figure

    rng = np.random.default_rng(3)
    N, R = np.meshgrid([2e7, 5e7, 1.25e8], [5, 20, 80], indexing="ij")
    seed = pd.DataFrame({"N": N.ravel(), "D": (N * R).ravel(), "group": "seed"})
    grown = pd.DataFrame({"N": [3e8, 6e8, 1e8], "D": [3e9, 6e9, 2e10], "group": "next-1@N=7e+09,D=1.4e+11"})
    points = pd.concat([seed, grown], ignore_index=True)
    points["loss"] = TRUE.predict(N=points["N"], D=points["D"]) * np.exp(0.005 * rng.standard_normal(len(points)))
    points["architecture"] = "transformer"
    spec = next(s for s in FIGURES if s.key == "fig90_design_rounds")
    outcome = draw_figure(spec, StudyFrames(final_points=points), None, tmp_path, strict=True)
    assert outcome.drawn and outcome.paths["png"].stat().st_size > 1000
    # a store not grown by next: the figure says what it needs instead
    outcome = draw_figure(spec, StudyFrames(final_points=seed.assign(loss=3.0)), None, tmp_path)
    assert not outcome.drawn and "next" in " ".join(outcome.missing)


def test_design_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np, pandas as pd\n"
            "from lmscale.design import api, grow, pool, rounds, scenario, simulate, study_file\n"
            "f = pd.DataFrame({'N': [1e7, 2e7, 4e7, 1e7, 2e7, 4e7], 'D': [2e8, 4e8, 8e8, 8e8, 2e8, 3e8],\n"
            "                  'loss': [3.9, 3.6, 3.4, 3.5, 3.8, 3.5]})\n"
            "api.default_forecaster('chinchilla', 8)(f)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_validated_forecast_plugs_into_the_criterion():
    """Runs once ``lmscale.laws.forecast`` (calibrated intervals) is part of the package."""
    validated = pytest.importorskip("lmscale.laws.forecast")
    from lmscale.design.forecaster import ValidatedForecaster
    from lmscale.design.grow import Target, fresh, propose
    from lmscale.design.space import DesignSpace, seed_grid

    space = DesignSpace(n_min=1e7, n_max=3e9, c_max=1e20)
    runs = seed_grid(space, n_sizes=4)
    runs["loss"] = TRUE.predict(N=runs["N"], D=runs["D"]) * np.exp(0.0075 * np.random.default_rng(0).standard_normal(12))
    forecaster = ValidatedForecaster(make=validated.forecast, n_boot=32)
    target = Target(9e9, 1.8e11)
    prop = propose(runs, target, fresh(space.candidates(), runs), 1e20, forecaster)
    assert len(prop.runs) >= 1 and prop.runs["C"].sum() <= 1e20 * (1 + 1e-9) and 0 < prop.narrowing < 1
    lo, hi = prop.interval
    assert lo[0] < np.exp(prop.forecast.point(target.N, target.D))[0] < hi[0]


def test_next_warns_when_its_law_is_not_identified(tmp_path, capsys):
    """A 3 x 3 seed grid does not pin the [H] form's five parameters down: a compute-optimal target drawn
    from that fit is said to mean little; a wide grid identifies the law and draws no warning. By
    default the grid's 9 compute budgets validate a forecast cut by compute (3 sizes cannot be cut by
    size), whose law (alpha = beta, 4 parameters; the true law has 0.348 and 0.366) they do identify."""
    few = grid_runs(tmp_path / "few.csv")
    law = ("--law", "chinchilla")
    code, out, err = run_cli(capsys, "next", few, "--target-compute", "1e21", "--budget", "3e19", "--k", "2",
                             "--bootstrap", "32", "--json", *law)
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1 and "not identified" in warnings[0] and "--target" in warnings[0]
    code, out, _ = run_cli(capsys, "next", few, "--target-compute", "1e21", "--budget", "3e19", "--k", "2",
                           "--bootstrap", "32", *law)
    assert code == 0 and "warning: chinchilla's parameters are not identified" in out
    code, out, err = run_cli(capsys, "next", few, "--target-compute", "1e21", "--budget", "3e19", "--k", "2",
                             "--bootstrap", "32", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["law"] == "chinchilla_tied" and "cuts by compute" in rep["law_choice"] and rep["warnings"] == []
    wide = grid_runs(tmp_path / "wide.csv", sizes=np.geomspace(1e7, 3e9, 6), ratios=(2, 8, 32, 128, 512))
    code, out, err = run_cli(capsys, "next", wide, "--target-compute", "1e23", "--budget", "3e20", "--k", "2",
                             "--bootstrap", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == []


@pytest.mark.parametrize("name", ["missing.csv", "missing.sqlite"])
def test_next_on_a_missing_file_exits_2_with_one_line(tmp_path, capsys, name):
    code, _, err = run_cli(capsys, "next", tmp_path / name, "--target", "7e9,1.4e11", "--budget", "1e19")
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1, err


def test_a_candidate_already_trained_is_not_proposed_again():
    """Training rounds D down to whole batches: the run trained for a proposal of D = 354,000 at
    B = 2048 has 352,256 tokens, 0.5% fewer. Compared at the proposal's own D it looked new (fresh()
    allows 0.1%), and `next` proposed it again: with the same recipe and seed, the same run."""
    from lmscale.design.api import next_runs
    from lmscale.design.space import DesignSpace

    B = 2048
    space = DesignSpace(n_min=7e3, n_max=1.77e4, n_sizes=2, ratio_min=20.0, ratio_max=20.0, n_ratios=1)
    again = (1.77e4, np.floor(20 * 1.77e4 / B) * B)  # the candidate (1.77e4, 354,000) as trained
    rng = np.random.default_rng(0)
    N, R = np.meshgrid((5e3, 1.5e4, 4.5e4), (5, 20, 80), indexing="ij")
    N, D = np.r_[N.ravel(), again[0]], np.r_[(N * R).ravel(), again[1]]
    frame = pd.DataFrame({"N": N, "D": D, "loss": TRUE.predict(N=N, D=D) * np.exp(0.005 * rng.standard_normal(len(N)))})
    loose = next_runs(frame, 1e13, target=[(1e6, 2e7)], space=space)
    assert "candidates: 2 runs" in " ".join(loose.notes)
    whole = next_runs(frame, 1e13, target=[(1e6, 2e7)], space=space, batch_tokens=B)
    assert "candidates: 1 runs" in " ".join(whole.notes)
    assert whole.runs["N"].tolist() == [7e3] and whole.runs["D"].tolist() == [np.floor(20 * 7e3 / B) * B]


@pytest.mark.skipif(not (DATA / "olmo_ladder_final_points.csv").exists(), reason="../shared/data absent")
def test_next_forecasts_the_target_as_predict_does(tmp_path, capsys):
    """On runs of enough sizes to validate (the OLMo ladder: 5 sizes), ``next`` by default uses the
    validated forecast that ``predict`` gives, with its cuts following the target: the same law, loss and
    (to the Monte Carlo error of the draws) interval at the target. It used the plain chinchilla fit,
    which these runs do not identify: 2.423 against predict's 2.358 at N = 7e10, D = 1.4e12."""
    from lmscale.laws import datasets

    runs = tmp_path / "olmo.csv"
    datasets.load("olmo-ladder-final", data_dir=DATA)[["N", "D", "loss"]].to_csv(runs, index=False)
    code, out, err = run_cli(capsys, "predict", runs, "--at", "N=7e10,D=1.4e12", "--bootstrap", "32", "--json")
    assert code == 0, err
    pred = json.loads(out)
    code, out, err = run_cli(capsys, "next", runs, "--target", "7e10,1.4e12", "--budget", "1e22", "--k", "2",
                             "--bootstrap", "32", "--json")
    assert code == 0, err
    rep = json.loads(out)
    p = pred["predictions"][0]
    assert rep["law_choice"].startswith("the validated forecast") and pred["law"].startswith(rep["law"])
    assert rep["forecast"]["loss"][0] == pytest.approx(p["loss"], rel=1e-9)
    assert rep["forecast"]["lo"][0] == pytest.approx(p["lo80"], rel=0.01)
    assert rep["forecast"]["hi"][0] == pytest.approx(p["hi80"], rel=0.01)
    # a law named by --law is used as before
    code, out, err = run_cli(capsys, "next", runs, "--target", "7e10,1.4e12", "--budget", "1e22", "--k", "2",
                             "--bootstrap", "32", "--law", "chinchilla", "--json")
    assert code == 0 and json.loads(out)["law"] == "chinchilla" and json.loads(out)["law_choice"] == "--law chinchilla"


@pytest.mark.skipif(not (DATA / "porian2024_isoflop_points.csv").exists(), reason="../shared/data absent")
def test_next_for_a_compute_budget_cuts_by_compute(tmp_path, capsys):
    """Porian et al.'s IsoFLOP points (one setting), a budget 1.6 decades beyond them: cut by size,
    the validation held out the most over-sized model of each budget (12.7% validated error, an 80%
    interval at the target of 119%); the question is a larger budget, so `next` cuts by compute, as
    `predict` does for points beyond in compute (3.1%), and says so; --by N asks for the sizes."""
    raw = pd.read_csv(DATA / "porian2024_isoflop_points.csv")
    setting = dict(dataset="rw", hparams="tuned", warmup="short", decay="const", param_count="standard",
                   loss_split="val")
    for col, value in setting.items():
        raw = raw[raw[col] == value]
    runs = tmp_path / "rw.csv"
    raw.rename(columns={"D_tokens": "D"})[["N", "D", "loss"]].to_csv(runs, index=False)
    args = ("next", runs, "--target-compute", "1e21", "--budget", "2e19", "--k", "2", "--bootstrap", "16", "--json")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    by_compute = json.loads(out)
    assert "cuts by compute: the compute asked about lies up to 1.59 decades beyond the runs" in by_compute["law_choice"]
    code, out, err = run_cli(capsys, *args, "--by", "N")
    assert code == 0, err
    by_size = json.loads(out)
    assert "cuts by compute" not in by_size["law_choice"]

    def validated(rep):
        return float(rep["law_choice"].split("validated error ")[1].split("%")[0])

    assert validated(by_compute) < 5.0 < 10.0 < validated(by_size)


def test_the_validated_forecast_takes_a_run_to_scatter_as_the_runs_do():
    """The criterion's noise is the scatter of one run about the law. For a compute-weighted fit the
    forecast's in-data scale s0 is that of the few largest runs the fit passes through (2e-5 here, on
    runs with 2% noise): taken as the noise, a new run looked like an exact measurement (the floor, 1e-3),
    and ``next`` promised narrowing no run can give (18.6% where 5.8% is expected on the smoke store)."""
    from lmscale.design.forecaster import ValidatedForecaster
    from lmscale.laws.forecast import forecast

    rng = np.random.default_rng(1)
    N, R = np.meshgrid(np.geomspace(2e7, 2e9, 6), (5, 20, 80), indexing="ij")
    N, D = N.ravel(), (N * R).ravel()
    runs = pd.DataFrame({"N": N, "D": D, "loss": TRUE.predict(N=N, D=D) * np.exp(0.02 * rng.standard_normal(18))})
    make = lambda frame, **kw: forecast(frame, law="chinchilla+compute_weighted", **kw)  # noqa: E731
    fc = ValidatedForecaster(make=make, n_boot=16)(runs)
    assert fc.source.error.s0 < 1e-3
    assert 0.01 < fc.noise_sd < 0.06
