"""Property-based fuzzing of the table readers: those of ``fit`` (``lmscale.laws.io``: files of any
content, then the columns a law needs) and of ``import`` (a CSV of runs and its MAP). Each gets
``fuzzing.CASES`` derandomised cases; each is accepted, or refused with an :class:`LmscaleError`
naming the file, key or row; no other exception escapes.
"""

from __future__ import annotations

import io
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import strategies as st  # noqa: E402

from fuzzing import (  # noqa: E402
    BAD_CELLS,
    CELLS,
    COLUMN_NAMES,
    NUMBERS,
    TOML_VALUES,
    fuzz,
)
from lmscale.errors import LmscaleError  # noqa: E402


# -- 1. the table readers of fit -------------------------------------------------------------------
@st.composite
def csv_texts(draw):
    header = draw(st.lists(COLUMN_NAMES, min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=8))
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    return "\n".join([sep.join(header)] + [sep.join(r) for r in rows])


FIELDS = ["N", "D", "C", "loss", "S", "B", "L", "t", "L_train", "X", "run_id", "tokens", "C_min"]


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


# -- 2. the table readers of import (a CSV of runs or curve points, and its MAP) --------------------
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




# -- 3. the points of predict (--at: a table file, or inline N=..,D=..;...) -----------------------------
INLINE_PARTS = st.one_of(st.sampled_from(["N=", "D=", "C=", "U=", "X=", ",", ";", "=", " "]),
                         NUMBERS.map(repr), st.sampled_from(["7e10", "1.4e12", "1e9", "2e10", "nan", "-1", "0", "x"]))


def test_fuzz_predict_points(scratch):
    from lmscale.cli.predict import read_points
    from lmscale.laws.prediction import points_frame

    def check(case):
        kind, value = case
        if kind == "file":
            suffix, raw = value
            path = scratch / f"points{suffix}"
            path.write_bytes(raw)
            spec = str(path)
        else:
            spec = value
        try:
            frame, _ = read_points(spec)
            N, D, U = points_frame(frame)
        except LmscaleError as exc:
            said = str(exc)
            assert spec in said or "--at" in said or said.startswith(("points:", "predict:")), said
            raise
        assert np.all(np.isfinite(N) & (N > 0)) and np.all(np.isfinite(D) & (D > 0))

    inline = st.lists(INLINE_PARTS, min_size=1, max_size=10).map("".join).filter(lambda t: "=" in t)
    fuzz(st.one_of(st.tuples(st.just("inline"), inline), st.tuples(st.just("file"), tables())), check)
