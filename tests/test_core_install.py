"""`pip install lmscale` is the torch-free core: a fresh virtual environment (no system site
packages) gets lmscale from this checkout with the dependencies its metadata names, and fits,
plans, imports and reports there; `lmscale train` says which extra to install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import lmscale as ls
from conftest import OLMO_CURVES, ROOT, SHARED_DATA

#: This machine's package index (it holds wheels of the core dependencies): installing from it
#: needs no network. Elsewhere pip uses its configured registries.
LOCAL_INDEX = Path("/opt/pypi/simple")
MAP = """\
run = "source_path"
step = "_step"
loss = "c4_en_CE"
[losses]
books = "dolma_books_CE"
[N]
param = "N_params"
[tokens]
metric = "total_tokens"
"""


def clean_env() -> dict[str, str]:
    """This environment without what points Python at the checkout (PYTHONPATH) or this venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    return env


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=clean_env())


@pytest.fixture(scope="module")
def core_env(tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with lmscale (built from the checkout) and only its core dependencies."""
    if not OLMO_CURVES.exists():
        pytest.skip(f"{OLMO_CURVES} not found (the shared data folder sits beside the checkout)")
    tmp = tmp_path_factory.mktemp("core")
    src = tmp / "lmscale-src"  # a copy, so that building leaves the checkout untouched
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp / "wheels"
    built = pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src), cwd=tmp)
    if built.returncode != 0:  # this environment's setuptools cannot build it: let pip fetch the backend
        built = pip("wheel", "-q", "--no-deps", "-w", str(wheels), str(src), cwd=tmp)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("lmscale-*.whl")
    venv = tmp / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    index = ["--index-url", LOCAL_INDEX.as_uri()] if LOCAL_INDEX.is_dir() else []
    installed = pip("--python", str(python), "install", "-q", "--no-compile", *index, str(wheel), cwd=tmp)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return {"python": python, "lmscale": venv / "bin" / "lmscale", "tmp": tmp}


def run_in(env: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env["lmscale"]), *args], cwd=env["tmp"], capture_output=True, text=True,
                          timeout=300, env=clean_env())


def test_core_fits_plans_imports_and_reports(core_env):
    tmp = core_env["tmp"]
    raw = pd.read_csv(OLMO_CURVES)
    raw[raw["chinchilla_multiple"].isin(["1xC", "2xC", "5xC"])].to_csv(tmp / "curves.csv", index=False)
    (tmp / "map.toml").write_text(MAP)

    imported = run_in(core_env, "import", "csv", "curves.csv", "--store", "s.sqlite", "--map", "map.toml", "--json")
    assert imported.returncode == 0, imported.stderr
    info = json.loads(imported.stdout)
    assert info["runs"] == raw.loc[raw["chinchilla_multiple"].isin(["1xC", "2xC", "5xC"]), "source_path"].nunique()
    assert info["derived"] == {"C": info["runs"]}  # no FLOPs in the map: C = 6 N D, labelled

    fitted = run_in(core_env, "fit", "s.sqlite", "--law", "chinchilla", "--json")
    assert fitted.returncode == 0, fitted.stderr
    params = json.loads(fitted.stdout)["params"]
    final = pd.read_csv(SHARED_DATA / "olmo_ladder_final_points.csv")
    final = final[final["chinchilla_multiple"].isin(["1xC", "2xC", "5xC"])]
    here = ls.fit(final, law="chinchilla", columns={"N": "N_params", "D": "total_tokens", "loss": "c4_en_CE"},
                  bootstrap=0)  # the published final points, fitted here with torch present
    # the same optimum, not bit equality: the core venv's numpy/scipy builds may differ, and along
    # the fit's flat directions (A's standard error is 0.7 x A) that moves a parameter by 1e-6 of
    # itself; each parameter agrees to 1e-3 of its standard error, the objective to 1e-6
    for key, value in here.params.items():
        assert abs(params[key] - value) <= 1e-3 * here.stderr[key], key
    assert json.loads(fitted.stdout)["stats"]["objective"] == pytest.approx(here.stats["objective"], rel=1e-6)

    report = run_in(core_env, "report", "--store", "s.sqlite", "--out", "rep", "--bootstrap", "0",
                    "--no-holdout", "--json")
    assert report.returncode == 0, report.stderr
    page = (tmp / "rep" / "index.html").read_text()
    assert f"{info['runs']} from csv" in page and "chinchilla" in json.loads(report.stdout)["laws"]

    # the planner: a published law set and the one fitted to the imported runs, side by side
    planned = run_in(core_env, "plan", "--compute", "5.76e23", "--law", "hoffmann2022,rep/fits.json", "--json")
    assert planned.returncode == 0, planned.stderr
    published, own = json.loads(planned.stdout)
    assert published["N_opt"] == pytest.approx(4.04e10, rel=0.01)  # the paper's "40B" at the Gopher budget
    assert published["D_opt"] == pytest.approx(5.76e23 / (6 * published["N_opt"]), rel=1e-9)  # C = 6 N D
    p = json.loads((tmp / "rep" / "fits.json").read_text())["laws"]["chinchilla"]["params"]
    a, b = p["alpha"], p["beta"]  # [H] approach 3 in closed form
    n_opt = (a * p["A"] / (b * p["B"])) ** (1 / (a + b)) * (5.76e23 / 6) ** (b / (a + b))
    assert own["N_opt"] == pytest.approx(n_opt, rel=1e-9)


def test_no_torch_and_training_says_which_extra(core_env):
    out = run_in(core_env, "train", "--data", "shards", "--steps", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == ("lmscale train: error: lmscale train needs torch, which is not installed: "
                          "pip install 'lmscale[train]'\n")
    # in one process: torch absent, the core imported without it, the other training commands' hints
    probe = """if True:
        import contextlib, importlib.util, io, sys
        import lmscale.accounting, lmscale.importers, lmscale.laws, lmscale.report, lmscale.store
        from lmscale.cli import main
        print(importlib.util.find_spec("torch") is None, "torch" in sys.modules, lmscale.__file__)
        for argv in (["sweep", "run", sys.argv[1], "--store", "x.sqlite"], ["demo", "--quick"],
                     ["data", "prepare", "--source", "python-docs", "--vocab-size", "512", "--out", "d"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            print(code, err.getvalue().strip())
    """
    out = subprocess.run([str(core_env["python"]), "-c", probe, str(ROOT / "studies" / "smoke.toml")],
                         capture_output=True, text=True, timeout=120, env=clean_env(), cwd=core_env["tmp"])
    assert out.returncode == 0, out.stderr
    first, *lines = out.stdout.splitlines()
    absent, imported, where = first.split()
    assert (absent, imported) == ("True", "False")
    assert where.startswith(str(core_env["tmp"] / "venv"))  # the installed copy, not the checkout
    assert len(lines) == 3
    for line, command in zip(lines, ("sweep run", "demo", "data prepare")):
        assert line.startswith(f"2 lmscale {command.split()[0]}: error: lmscale {command} needs "), line
        assert line.endswith("is not installed: pip install 'lmscale[train]'"), line
    assert not (core_env["tmp"] / "x.sqlite").exists() and not (core_env["tmp"] / "d").exists()
    assert not (core_env["tmp"] / "runs").exists()
