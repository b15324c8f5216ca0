"""``lmscale plan`` and ``lmscale laws`` in subprocesses, as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lmscale", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_plan_json_for_the_papers_budgets():
    h = run("plan", "--compute", "5.76e23", "--law", "hoffmann2022", "--json")
    assert h.returncode == 0, h.stderr
    p = json.loads(h.stdout)
    assert abs(p["N_opt"] / 40.4e9 - 1) < 0.03 and abs(p["D_opt"] / 2.38e12 - 1) < 0.03
    for key in ("N_opt", "D_opt", "loss", "tokens_per_param", "law", "inputs", "method"):
        assert key in p
    assert p["law"] == "hoffmann2022" and p["inputs"]["compute"] == 5.76e23
    # [K] eq. D.1 is <= 0 past N ~ 1.2e10: Chinchilla's 40B gets the floor, and the table says so
    assert p["shape"]["learning_rate"] == 1e-5 and p["shape"]["learning_rate_clamped"]
    table = run("plan", "--compute", "5.76e23", "--law", "hoffmann2022")
    assert "1e-05 (floor: D.1 <= 0 past N ~ 1.2e10)" in table.stdout

    k = run("plan", "--compute", "1", "--unit", "pf-day", "--law", "kaplan2020", "--json")
    assert k.returncode == 0, k.stderr
    p = json.loads(k.stdout)
    assert abs(p["N_opt"] / 1.3e9 - 1) < 0.01 and abs(p["D_opt"] / 2e10 - 1) < 0.01
    assert p["inputs"]["unit"] == "pf-day" and p["inputs"]["compute_given"] == 1.0
    assert not p["shape"]["learning_rate_clamped"] and p["shape"]["learning_rate"] > 1e-5


def test_several_laws_give_a_list_and_a_table():
    r = run("plan", "--compute", "1e22", "--law", "kaplan2020,hoffmann2022-rounded", "--json")
    assert r.returncode == 0, r.stderr
    plans = json.loads(r.stdout)
    assert [p["law"] for p in plans] == ["kaplan2020", "hoffmann2022-rounded"]
    assert plans[0]["N_opt"] > plans[1]["N_opt"]
    t = run("plan", "--compute", "1e22", "--law", "kaplan2020,hoffmann2022")
    assert t.returncode == 0 and "N_opt (params)" in t.stdout and "kaplan2020" in t.stdout.splitlines()[0]


def test_contradiction_json():
    r = run("plan", "--contradiction", "--law", "kaplan2020", "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert 5e3 <= c["C_star_pf_days"] <= 3e4 and 5e11 <= c["N_star"] <= 3e12 and 1.6 <= c["L_star"] <= 1.75
    assert c["D_star"] > 0 and "D_opt(C*)" in c["formula"]["D_star"]


@pytest.mark.parametrize("args, message", [
    (("--compute", "0"), "expected a positive budget"),
    (("--compute", "-5e20"), "expected a positive budget"),
    (("--compute", "1e20", "--law", "gpt5"), "known: kaplan2020, hoffmann2022"),
    (("--compute", "1e20", "--law", "hoffmann2022", "--require", "bcrit"), "cannot give bcrit"),
    (("--law", "hoffmann2022"), "give one of --compute"),
])
def test_bad_input_exits_2_with_a_message(args, message):
    r = run("plan", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_laws_list_show_and_datasets(tmp_path):
    r = run("laws", "list", "--json")
    assert r.returncode == 0 and [x["name"] for x in json.loads(r.stdout)][:2] == ["kaplan2020", "hoffmann2022"]
    s = run("laws", "show", "besiroglu2024", "--json")
    data = json.loads(s.stdout)
    assert data["kind"] == "lawset" and data["laws"]["chinchilla"]["params"]["alpha"] == 0.34781
    # the shown JSON is a law set the planner takes as a file
    path = tmp_path / "b.json"
    path.write_text(s.stdout)
    p = run("plan", "--compute", "1e21", "--law", str(path), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["law"] == "besiroglu2024"
    text = run("laws", "show", "kaplan2020")
    assert "N_opt = 1.3e+09 (C / PF-day)^0.73" in text.stdout
    d = run("laws", "datasets", "--json", env={"LMSCALE_DATA": str(SHARED)})
    rows = {x["name"]: x for x in json.loads(d.stdout)}
    assert rows["epoch-chinchilla"]["licence"] == "none stated" and rows["porian2024-isoflop"]["licence"] == "MIT"
    if SHARED.is_dir():
        assert rows["muennighoff2023"]["found"].endswith("muennighoff2023_datablations_runs.csv")


def test_planning_never_imports_torch():
    code = ("import sys; from lmscale.laws.planner import plan; from lmscale.laws.contradiction import crossing; "
            "import lmscale.laws.datasets; plan('kaplan2020', compute=1e21); crossing('kaplan2020'); "
            "from lmscale.cli import main; main(['plan', '--compute', '1e20', '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
