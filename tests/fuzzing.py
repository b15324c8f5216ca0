"""What the fuzz tests share: the harness (a fixed number of derandomised cases, each accepted or
refused with an LmscaleError) and strategies for values of every type (the ``scratch`` directory the
cases write their files to is a fixture of conftest.py)."""

from __future__ import annotations

import math
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmscale.errors import LmscaleError

#: Generated cases per entry point (``LMSCALE_FUZZ_CASES=20000`` fuzzes deeper).
CASES = int(os.environ.get("LMSCALE_FUZZ_CASES", "2000"))

SETTINGS = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


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


# -- cells of tables, JSON values -------------------------------------------------------------
COLUMN_NAMES = st.one_of(st.sampled_from(["N", "D", "C", "C_min", "S", "B", "L", "t", "L_train", "X",
                                          "loss", "run_id", "tokens", "Model Size", "Training FLOP"]), NAMES)
CELLS = st.one_of(NUMBERS.map(repr), st.sampled_from(["", "nan", "inf", "-inf", "1e400", "0x10", " 3 ", "NA",
                                                       "None", "true", "1,5", '"', "'a'", "1e-400"]),
                  st.text(max_size=6))
BAD_CELLS = ["", "nan", "inf", "-inf", "1e400", "abc", "-1", "0", "1,5", "NA", "None", "0x10", "-0"]
JSON_SCALARS = st.one_of(st.none(), NUMBERS, st.booleans(), st.text(max_size=6), WORDS)
JSON_FLAT = st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3),
                      st.dictionaries(NAMES, JSON_SCALARS, max_size=2))
JSON_VALUES = st.one_of(JSON_SCALARS, JSON_SCALARS, st.lists(JSON_FLAT, max_size=2),
                        st.dictionaries(NAMES, JSON_FLAT, max_size=2))
