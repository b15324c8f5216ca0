"""Property-based fuzzing of the specification boundaries: the study TOML parser
(``lmscale.sweeps.spec``), the fit-JSON reader of ``plan`` (``lmscale.laws.catalog.resolve``) and the
command line of ``plan``. Each gets ``fuzzing.CASES`` derandomised cases (the same on every run): each
is accepted, or refused with an :class:`LmscaleError` that names the file, key or row; no other
exception escapes (the command line: exit status 2 and one line on stderr, or argparse's usage error).
The table readers are fuzzed in ``test_fuzz_tables.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import strategies as st  # noqa: E402

from fuzzing import (  # noqa: E402
    JSON_VALUES,
    NAMES,
    NUMBERS,
    TOML_VALUES,
    fuzz,
)
from lmscale.errors import LmscaleError  # noqa: E402


# -- 1. the study TOML parser ------------------------------------------------------------------
def _study_keys():
    from lmscale.sweeps.data import DATA_KEYS
    from lmscale.sweeps.keys import GROUP_META, KEY_TYPES
    from lmscale.sweeps.spec import STUDY_KEYS

    return {"study": list(STUDY_KEYS), "data": list(DATA_KEYS), "run": list(KEY_TYPES) + list(GROUP_META),
            "shape": ["n_layer", "d_model", "n_head", "d_ff", "n_ctx", "n_vocab", "architecture"]}


KEYS = _study_keys()
PLACES = {"top": ["study", "group", "x"], "study": KEYS["study"], "data": KEYS["data"],
          "defaults": KEYS["run"], "group": KEYS["run"], "shape": KEYS["shape"]}
KEY_AT = {where: st.one_of(st.sampled_from(keys), NAMES) for where, keys in PLACES.items()}
PARAMS = st.sampled_from([5e3, 1.5e4, 0, -1, 1e30, math.nan, [5e3, 1e4], "5e3"])
BASE_STUDY = {
    "study": {"name": "fuzz", "data": {"sources": ["python-stdlib"], "vocab_size": 512},
              "defaults": {"n_ctx": 64, "batch_tokens": 2048, "tokens": 100000}},
    "group": [{"name": "g", "shape": {"n_layer": 1, "d_model": 16, "n_head": 2}},
              {"name": "h", "rule": "data", "dataset_tokens": [50000, 100000],
               "shape": {"n_layer": 2, "d_model": 32, "n_head": 4}}],
}


def _table_at(doc: dict, where: str, gi: int):
    """The table of ``doc`` a mutation goes to (None when an earlier one replaced it by a non-table)."""
    def get(obj, key):
        return obj.get(key) if isinstance(obj, dict) else None

    study = get(doc, "study")
    groups = get(doc, "group")
    group = groups[gi] if isinstance(groups, list) and len(groups) > gi else None
    return {"top": doc, "study": study, "data": get(study, "data"), "defaults": get(study, "defaults"),
            "group": group, "shape": get(group, "shape")}[where]


@st.composite
def study_docs(draw):
    """The base study with 1-4 keys set to random values, removed, or added at random places."""
    doc = json.loads(json.dumps(BASE_STUDY))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(list(PLACES)))
        key = draw(KEY_AT[where])
        value = draw(TOML_VALUES)
        gi = draw(st.integers(0, 1))
        table = _table_at(doc, where, gi)
        if not isinstance(table, dict):
            continue
        if key == "params" and draw(st.booleans()):  # a plausible target N (the shape helper is slow)
            value = draw(PARAMS)
        if draw(st.integers(0, 4)) == 0:
            table.pop(key, None)
        else:
            table[key] = value
    return doc


TOML_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["[study]", "[[group]]", "[study.defaults]", "name = \"x\"", "data = \"d\"",
                              "data = { sources = [\"python-stdlib\"], vocab_size = 512 }", "tokens = 1e5",
                              "n_layer = 1", "d_model = 16", "n_head = 2", "rule = \"isoflop\"",
                              "flops = [1e12]", "params = [5e3]", "x = [", "= 1", "\"", "n_ctx = 0",
                              "shape = { n_layer = 1, d_model = 16, n_head = 2 }"]), max_size=12).map("\n".join),
)


def test_fuzz_study_parser(scratch):
    from lmscale.sweeps.spec import load_study, parse_study

    path = scratch / "fuzz.toml"
    file = str(path)

    def check(case):
        kind, value = case
        if kind == "text":
            path.write_bytes(value.encode("utf-8", "surrogatepass"))
            try:
                load_study(path)
            except LmscaleError as exc:
                assert file in str(exc), exc
                raise
        else:
            try:
                parse_study(value, path)
            except LmscaleError as exc:
                assert file in str(exc), exc  # the file, and (SpecError) the key
                raise

    fuzz(st.one_of(st.tuples(st.just("text"), TOML_TEXT), st.tuples(st.just("doc"), study_docs())), check)


# -- 2. the fit-JSON reader of plan ----------------------------------------------------------------
def _paths(obj, prefix=()):
    """Every key path of a JSON object."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    return out


def _base_jsons() -> list[dict]:
    from lmscale.laws import catalog

    sets = [json.loads(catalog.load(name).to_json()) for name in catalog.names()]
    single = [law for s in sets[:2] for law in s["laws"].values()]
    return [json.dumps(doc) for doc in sets + single] + [_forecast_json()] * 3


def _forecast_json() -> str:
    """A forecast saved by 'lmscale predict --save' (plan and predict read it), made on simulated runs."""
    import lmscale as ls
    from lmscale.laws.synthetic import simulate_runs

    return ls.forecast(simulate_runs("chinchilla_tied", seed=5), variants=["huber"], bootstrap=3).to_json()


@st.composite
def fit_jsons(draw, bases):
    doc = json.loads(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.integers(0, 3)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc, allow_nan=True)


def test_fuzz_fit_json_reader_of_plan(scratch):
    from lmscale.laws.catalog import resolve
    from lmscale.laws.contradiction import crossing
    from lmscale.laws.planner import allocation_relation
    from lmscale.laws.prediction import Forecast

    bases = _base_jsons()
    path = scratch / "fit.json"

    def check(case):
        kind, text = case
        path.write_text(text) if kind != "bytes" else path.write_bytes(text)
        try:
            laws = resolve(str(path))
        except LmscaleError as exc:
            assert str(path) in str(exc), exc
            raise
        laws.summary()
        for fit in laws.laws.values():  # what plan reads from each law: parameters it can compute with
            assert all(isinstance(v, float) and math.isfinite(v) for v in fit.params.values())
            with np.errstate(all="ignore"):
                fit.predict(**{name: 1e9 for name in fit.form.inputs})
            fit.to_dict()
        for key in (laws.extras.get("allocation") or {}).get("relations", {}):
            with np.errstate(all="ignore"):
                allocation_relation(laws, key, 1e21)
        if "kaplan_cmin" in laws and "kaplan_d" in laws:
            crossing(laws)  # plan --contradiction
        if "forecast" in laws.extras:  # what predict does with a saved forecast
            with np.errstate(all="ignore"):
                Forecast.from_json(path).predict(N=1e9, D=2e10)

    raw = st.one_of(st.text(max_size=40).map(lambda s: ("text", s)), st.binary(max_size=40).map(lambda b: ("bytes", b)),
                    JSON_VALUES.map(lambda v: ("text", json.dumps(v))))
    fuzz(st.one_of(fit_jsons(bases).map(lambda t: ("text", t)), raw), check)


# -- 3. the command line of plan -------------------------------------------------------------------
NUMBER_TEXT = st.one_of(NUMBERS.map(repr), st.sampled_from(["1e21", "5.76e23", "7e9", "2.5", "0", "-1", "nan",
                                                            "inf", "1e309", "1e-320", "x", "", "1,5", "0x10"]))
OPTIONS = ["--compute", "--params", "--loss", "--contradiction", "--unit", "--law", "--unique-tokens", "--device",
           "--peak-flops", "--mfu", "--devices", "--overhead", "--n-ctx", "--n-vocab", "--require", "--json"]


FIT_FILE = "kaplan-fit.json"  # written by the test, in its working directory
LAWS = st.one_of(st.sampled_from(["hoffmann2022", "kaplan2020", "besiroglu2024", "muennighoff2023",
                                  "hoffmann2022-rounded", "hoffmann2022,kaplan2020", ",", "nope",
                                  "missing.json", FIT_FILE]), st.text(max_size=8))
VALUES = {"--unit": st.sampled_from(["flop", "pf-day", "x"]), "--law": LAWS,
          "--device": st.sampled_from(["h100", "a100", "v100", "cpu", "x"]),
          "--require": st.sampled_from(["", "loss", "bcrit,s_min", "shape,band", "x", "loss,x"])}
ANY_OPTION = st.one_of(st.sampled_from(OPTIONS), st.text(max_size=5))


@st.composite
def plan_argvs(draw):
    if draw(st.integers(0, 9)) == 0:  # a command that may well run the planner
        argv = [draw(st.sampled_from(["--compute", "--params", "--loss"])), draw(NUMBER_TEXT),
                "--law", draw(LAWS)]
        for opt in draw(st.lists(st.sampled_from(OPTIONS[4:]), max_size=3)):
            argv += [opt] if opt == "--json" else [opt, draw(VALUES.get(opt, NUMBER_TEXT))]
        return argv
    argv = []
    for _ in range(draw(st.integers(0, 6))):
        opt = draw(ANY_OPTION)
        argv.append(opt)
        if opt in OPTIONS and opt not in ("--contradiction", "--json") and draw(st.integers(0, 5)):
            argv.append(draw(VALUES.get(opt, NUMBER_TEXT)))
    return argv


def test_fuzz_plan_command_line(tmp_path, monkeypatch):
    from lmscale.cli import main
    from lmscale.laws import catalog

    monkeypatch.chdir(tmp_path)
    catalog.load("kaplan2020").to_json(tmp_path / FIT_FILE)
    codes: dict[int, int] = {}

    def check(argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["plan", *argv])
            except SystemExit as exc:  # argparse: usage and one error line, exit 2 (or --help, 0)
                code = exc.code
                assert code in (0, 2) and (code == 0 or "error:" in err.getvalue())
        codes[code] = codes.get(code, 0) + 1
        if code == 2 and "usage:" not in err.getvalue():
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("lmscale plan: error: "), err.getvalue()
        else:
            assert code in (0, 2), (code, err.getvalue())
        if code == 0 and "--json" in argv and "--help" not in argv:
            json.loads(out.getvalue())

    fuzz(plan_argvs(), check)
    print(f"exit codes: {codes}")
    assert codes.get(0, 0) >= 20 and codes.get(2, 0) >= 1000  # both paths exercised
