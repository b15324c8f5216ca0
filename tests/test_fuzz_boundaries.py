"""Property-based fuzzing of every boundary where a user's input enters lmscale.

Entry points: the study TOML parser (``lmscale.sweeps.spec``), the table readers of ``fit``
(``lmscale.laws.io``: files of any content, then the columns a law needs), the fit-JSON reader of
``plan`` (``lmscale.laws.catalog.resolve``), and the command line of ``plan``. For each, at least
``CASES`` generated inputs (derandomised: the same cases on every run): each is accepted, or
refused with an :class:`LmscaleError` that names the file, key or row; no other exception
escapes (the command line: exit status 2 and one line on stderr, or argparse's usage error).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sqlite3
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lmscale.errors import LmscaleError  # noqa: E402

#: Generated cases per entry point (``LMSCALE_FUZZ_CASES=20000`` fuzzes deeper).
CASES = int(os.environ.get("LMSCALE_FUZZ_CASES", "2000"))

SETTINGS = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture
def scratch(tmp_path):
    """A directory for the files each case writes: in memory (/dev/shm) where there is one, since
    thousands of small writes to a busy disk cost more than the cases themselves."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="lmscale-fuzz-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fuzz(strategy, check) -> dict[str, int]:
    """Run ``check`` on ``CASES`` cases of ``strategy``; count what was accepted and refused."""
    seen = {"cases": 0, "accepted": 0, "refused": 0}

    @SETTINGS
    @given(strategy)
    def run(case):
        seen["cases"] += 1
        try:
            check(case)
        except LmscaleError as exc:
            seen["refused"] += 1
            assert str(exc).strip() and "Traceback" not in str(exc)
            return
        seen["accepted"] += 1

    run()
    assert seen["cases"] >= CASES, seen
    print(f"\n{seen}")
    return seen


# -- values ------------------------------------------------------------------------------------
NAMES = st.text(string.ascii_letters + string.digits + "_-. ", min_size=0, max_size=10)
SPECIAL_FLOATS = st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, math.inf, -math.inf, math.nan,
                                  0.5, 1.0, 2.0, 1e6, 1e21, -1.0, 3.999999])
NUMBERS = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-5, 70000),
                    st.floats(allow_nan=True, allow_infinity=True), SPECIAL_FLOATS)
WORDS = st.sampled_from(["transformer", "lstm", "universal", "cosine", "wsd", "constant", "bpe", "byte",
                         "gpt2", "plain", "converge", "data", "isoflop", "zip", "product", "python-stdlib",
                         "python-docs", "auto", "cpu", "cuda", "", " ", "é", "\x00", "../..", "nan"])
SCALARS = st.one_of(NUMBERS, st.booleans(), WORDS, st.text(max_size=8))


#: What a TOML value can be (strategies are built once: building one costs more than drawing).
FLAT = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(NAMES, SCALARS, max_size=2))
TOML_VALUES = st.one_of(SCALARS, SCALARS, st.lists(FLAT, max_size=2), st.dictionaries(NAMES, FLAT, max_size=2))


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


# -- 2. the table readers of fit -------------------------------------------------------------------
COLUMN_NAMES = st.one_of(st.sampled_from(["N", "D", "C", "C_min", "S", "B", "L", "t", "L_train", "X",
                                          "loss", "run_id", "tokens", "Model Size", "Training FLOP"]), NAMES)
CELLS = st.one_of(NUMBERS.map(repr), st.sampled_from(["", "nan", "inf", "-inf", "1e400", "0x10", " 3 ", "NA",
                                                       "None", "true", "1,5", '"', "'a'", "1e-400"]),
                  st.text(max_size=6))


@st.composite
def csv_texts(draw):
    header = draw(st.lists(COLUMN_NAMES, min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=8))
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    return "\n".join([sep.join(header)] + [sep.join(r) for r in rows])


FIELDS = ["N", "D", "C", "loss", "S", "B", "L", "t", "L_train", "X", "run_id", "tokens", "C_min"]


BAD_CELLS = ["", "nan", "inf", "-inf", "1e400", "abc", "-1", "0", "1,5", "NA", "None", "0x10", "-0"]


@st.composite
def plausible_csv(draw):
    """A table a user might have: the fields' names, mostly positive numbers, a few bad cells
    (the cells come from a generator seeded by the case: thousands of draws per table are slow)."""
    header = draw(st.lists(st.sampled_from(FIELDS), min_size=2, max_size=6, unique=True))
    if "loss" not in header and draw(st.integers(0, 3)):
        header.append("loss")
    n_rows = draw(st.integers(0, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bad_rate = draw(st.sampled_from([0.0, 0.02, 0.1, 0.5]))
    cells = np.exp(rng.uniform(-5, 30, size=(n_rows, len(header))))
    rows = []
    for row in cells:
        rows.append([BAD_CELLS[rng.integers(len(BAD_CELLS))] if rng.random() < bad_rate else
                     (str(int(v)) if rng.random() < 0.3 and v < 1e15 else repr(float(v))) for v in row])
    return "\n".join([",".join(header)] + [",".join(r) for r in rows])


@st.composite
def tables(draw):
    """(file suffix, bytes) of a table file: CSV, Parquet, SQLite or garbage."""
    kind = draw(st.sampled_from(["plausible", "plausible", "plausible", "csv", "bytes", "parquet", "sqlite"]))
    if kind == "plausible":
        return ".csv", draw(plausible_csv()).encode()
    if kind == "csv":
        return ".csv", draw(csv_texts()).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.sampled_from([".csv", ".parquet", ".txt", ""])), draw(st.binary(max_size=64))
    if kind == "parquet":
        cols = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=4, unique=True))
        n = draw(st.integers(0, 6))
        data = {}
        for c in cols:
            if draw(st.booleans()):
                data[c] = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n))
            else:
                data[c] = draw(st.lists(st.text(max_size=4), min_size=n, max_size=n))
        buf = io.BytesIO()
        pd.DataFrame(data).to_parquet(buf)
        raw = buf.getvalue()
        if draw(st.booleans()):  # cut short
            raw = raw[: draw(st.integers(0, len(raw)))]
        return ".parquet", raw
    return ".sqlite", b"SQLite format 3\x00" + draw(st.binary(max_size=64))


def test_fuzz_fit_table_readers(scratch, tmp_path):
    from lmscale.laws import FORMS
    from lmscale.laws.io import parse_columns, prepare_points, read_table

    fittable = sorted(name for name, form in FORMS.items() if form.fittable)
    other_db = tmp_path / "other.sqlite"  # an SQLite file, not a store
    with sqlite3.connect(other_db) as db:
        db.execute("CREATE TABLE t (x)")

    def check(case):
        (suffix, raw), law, columns_text, drop = case
        path = scratch / f"t{suffix}"
        path.write_bytes(raw)
        try:
            frame = read_table(path)
        except LmscaleError as exc:
            assert str(path) in str(exc), exc
            raise
        try:
            columns = parse_columns(columns_text)
        except LmscaleError as exc:
            assert "--columns" in str(exc)
            raise
        if law == "match":  # a law the table has the columns of, when there is one
            fits = [n for n in fittable if set(FORMS[n].inputs) | {FORMS[n].output} <= set(frame.columns)]
            law = fits[len(frame) % len(fits)] if fits else "chinchilla"
        try:
            points = prepare_points(frame, FORMS[law], columns, drop_highest_loss=drop)
        except LmscaleError as exc:
            assert path.name in str(exc) or "drop_highest_loss" in str(exc) or "column" in str(exc), exc
            raise
        assert len(points) >= len(FORMS[law].params) and np.all(points.y > 0)
        for v in points.X.values():
            assert np.all(np.isfinite(v) & (v > 0))
        dropped = points.notes.get("dropped_rows")
        if dropped:  # names the rows
            assert dropped["message"].startswith(f"dropped {dropped['count']} of {len(frame)} rows of {path.name}")

    columns = st.one_of(st.none(), st.text(max_size=20),
                        st.dictionaries(st.sampled_from(["N", "D", "C", "loss", "S", "B", "bad"]), COLUMN_NAMES,
                                        max_size=2).map(lambda d: ",".join(f"{k}={v}" for k, v in d.items())))
    laws = st.one_of(st.just("match"), st.sampled_from(fittable))
    fuzz(st.tuples(tables(), laws, columns, st.sampled_from([0, 0, 0, 1, 3, -1])), check)
    with pytest.raises(LmscaleError, match="not an lmscale store"):
        read_table(other_db)


# -- 2b. the table readers of import (a CSV of runs or curve points, and its MAP) --------------------
IMPORT_COLUMNS = ["run", "step", "loss", "val", "N", "n_layer", "d_model", "bs", "ctx", "tokens", "flops",
                  "lr", "books"]
BASE_MAPS = [
    {"run": "run", "loss": "loss", "N": {"param": "N"}, "tokens": "tokens"},
    {"run": "run", "loss": "val", "N": {"model": {"n_layer": {"param": "n_layer"}, "d_model": {"param": "d_model"}}},
     "tokens": {"batch_tokens": [{"param": "bs"}, {"param": "ctx"}]}, "losses": {"books": "books"}},
    {"loss": "loss", "N": {"value": 1e6}, "tokens": {"metric": "tokens", "batch_tokens": 7}, "final": "min",
     "flops": {"metric": "flops"}, "step": "step", "lr": "lr", "group": "g", "rule": "converge"},
]
NEEDED = [["run", "loss", "N", "tokens"], ["run", "val", "n_layer", "d_model", "bs", "ctx", "books"],
          ["loss", "tokens", "flops", "step", "lr"]]
MAP_KEYS = st.sampled_from(["run", "loss", "distribution", "train_loss", "lr", "step", "final", "group", "rule",
                            "study", "losses", "N", "tokens", "flops", "experiments", "include", "x"])
SUB_KEYS = st.sampled_from(["param", "metric", "value", "model", "batch_tokens", "n_layer", "d_model", "x"])


@st.composite
def import_cases(draw):
    """(CSV text, MAP): curve points of a few runs (cells from a seeded generator) and a mutated MAP."""
    which = draw(st.integers(0, len(BASE_MAPS) - 1))
    header = draw(st.lists(st.sampled_from(IMPORT_COLUMNS), min_size=1, max_size=9, unique=True))
    if draw(st.integers(0, 3)):  # usually the columns the MAP names are there
        header = list(dict.fromkeys(NEEDED[which] + header))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bad_rate = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
    rows = []
    for i in range(draw(st.integers(0, 12))):
        row = []
        for col in header:
            if rng.random() < bad_rate:
                row.append(BAD_CELLS[rng.integers(len(BAD_CELLS))])
            elif col == "run":
                row.append(f"r{rng.integers(3)}")
            elif col in ("step", "n_layer", "d_model", "bs", "ctx"):
                row.append(str(int(rng.integers(1, 300))))
            elif col == "tokens":
                row.append(str((i + 1) * 1000))
            else:
                row.append(repr(float(np.exp(rng.uniform(-3, 25)))))
        rows.append(row)
    text = "\n".join([",".join(header)] + [",".join(r) for r in rows])
    mapping = json.loads(json.dumps(BASE_MAPS[which]))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(MAP_KEYS)
        target = mapping
        if isinstance(mapping.get(key), dict) and draw(st.booleans()):
            target, key = mapping[key], draw(SUB_KEYS)
        if draw(st.integers(0, 3)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(st.one_of(st.sampled_from(IMPORT_COLUMNS), TOML_VALUES))
    return text, mapping


def test_fuzz_import_readers(scratch):
    from lmscale.importers import build
    from lmscale.importers.mapping import ImportMap

    csv_path, map_path = scratch / "runs.csv", scratch / "map.toml"

    def check(case):
        kind, value = case
        if kind == "map-text":  # the MAP file itself
            map_path.write_bytes(value.encode("utf-8", "surrogatepass"))
            try:
                ImportMap.load(map_path)
            except LmscaleError as exc:
                assert str(map_path) in str(exc), exc
                raise
            return
        text, mapping = value
        csv_path.write_text(text)
        try:
            uri, records, _ = build("csv", csv_path, mapping)
        except LmscaleError as exc:
            assert csv_path.name in str(exc) or "MAP" in str(exc), exc
            raise
        for rec in records:
            assert rec.record.curve and all(p.tokens >= 0 for p in rec.record.curve)

    map_texts = st.one_of(st.text(max_size=80), st.lists(st.sampled_from(
        ['loss = "loss"', "[N]", 'param = "N"', "value = 1e6", "[tokens]", 'metric = "tokens"', "batch_tokens = 7",
         'final = "min"', "[N.model]", "n_layer = 2", 'run = "run"', "x = [", "= 1"]), max_size=8).map("\n".join))
    fuzz(st.one_of(st.tuples(st.just("csv"), import_cases()), st.tuples(st.just("map-text"), map_texts)), check)


# -- 3. the fit-JSON reader of plan ----------------------------------------------------------------
JSON_SCALARS = st.one_of(st.none(), NUMBERS, st.booleans(), st.text(max_size=6), WORDS)
JSON_FLAT = st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3),
                      st.dictionaries(NAMES, JSON_SCALARS, max_size=2))
JSON_VALUES = st.one_of(JSON_SCALARS, JSON_SCALARS, st.lists(JSON_FLAT, max_size=2),
                        st.dictionaries(NAMES, JSON_FLAT, max_size=2))


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
    return [json.dumps(doc) for doc in sets + single]


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

    raw = st.one_of(st.text(max_size=40).map(lambda s: ("text", s)), st.binary(max_size=40).map(lambda b: ("bytes", b)),
                    JSON_VALUES.map(lambda v: ("text", json.dumps(v))))
    fuzz(st.one_of(fit_jsons(bases).map(lambda t: ("text", t)), raw), check)


# -- 4. the command line of plan -------------------------------------------------------------------
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
