"""What ``lmscale simulate`` is given: the truth, its noise, the designs, the design space.

:func:`truth_from` builds a :class:`~lmscale.design.simulate.Truth` from a
catalog law set or a fit JSON and the residuals of a law fitted to real runs
(a public dataset such as ``epoch-chinchilla``, or a table of your own);
:func:`read_design` reads a design (a study TOML: its planned N and D; or a
CSV of N and D); :func:`space_for` derives the design space and budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lmscale.design.simulate import Truth, residuals_of
from lmscale.design.space import DesignSpace, run_cost
from lmscale.errors import LmscaleError

#: Laws of N and D a truth may be, in order of preference within a law set.
TRUTH_LAWS = ("chinchilla", "kaplan_nd")

#: The benchmark's design space when no design is given.
DEFAULT_SIZES = (1e7, 3e9)
DEFAULT_MAX_RUN = 1e20
#: Total compute when no design or budget is given: three times the largest run.
DEFAULT_BUDGET_RUNS = 3.0


def truth_from(spec: str, law: str | None, noise_from: str, noise_law: str = "chinchilla",
               noise_columns: str | None = None, drop_highest: int | None = None,
               data_dir: str | None = None) -> Truth:
    """The true law (catalog name or fit JSON) with the residuals of ``noise_law`` fitted to ``noise_from``."""
    from lmscale.laws import catalog, datasets
    from lmscale.laws.forms import get_form
    from lmscale.laws.io import parse_columns, read_table

    laws = catalog.resolve(spec)
    if law is not None:
        get_form(law)  # an unknown name: the error lists the known laws
        chosen = laws.get(law, "the truth of a simulation")
    else:
        found = [name for name in TRUTH_LAWS if name in laws]
        if not found:
            raise LmscaleError(f"--truth {spec}: the law set has no law of N and D ({', '.join(TRUTH_LAWS)}); "
                               f"it has {', '.join(sorted(laws.laws)) or 'none'}")
        chosen = laws.laws[found[0]]
    if not chosen.params or set(chosen.form.inputs) != {"N", "D"}:
        raise LmscaleError(f"--truth {spec}: law {chosen.law} is not a law of N and D")
    if noise_from in datasets.names():
        frame = datasets.load(noise_from, data_dir=data_dir)
        where = f"dataset {noise_from} ({frame.attrs.get('path', '')})"
        drop = 5 if drop_highest is None and noise_from == "epoch-chinchilla" else int(drop_highest or 0)
    else:
        frame = read_table(noise_from)
        where = str(noise_from)
        drop = int(drop_highest or 0)
    residuals, fit = residuals_of(frame, noise_law, columns=parse_columns(noise_columns), drop_highest_loss=drop)
    source = (f"log residuals of {noise_law} fitted to {where}" + (f" less its {drop} highest losses" if drop else "")
              + f": {len(residuals)} runs, rmse {fit.stats.get('rmse_log', float('nan')):.4f}")
    return Truth(law=chosen, residuals=residuals, name=f"{laws.name}:{chosen.law}", noise_source=source)


def read_design(item: str) -> tuple[str, pd.DataFrame]:
    """``NAME=FILE`` (or ``FILE``): a study TOML's planned runs, or a table with N and D."""
    name, _, path = item.partition("=") if "=" in item else (Path(item).stem, "", item)
    path = path.strip()
    if not name.strip() or not path:
        raise LmscaleError(f"--design {item!r}: expected NAME=FILE")
    if name in ("next", "loguniform", "isoflop"):
        raise LmscaleError(f"--design {item!r}: {name!r} names a built-in design; choose another name")
    if Path(path).suffix.lower() == ".toml":
        from lmscale.sweeps.spec import load_study

        study = load_study(path)
        frame = pd.DataFrame({"N": [float(r.N) for r in study.runs], "D": [float(r.D) for r in study.runs]})
    else:
        from lmscale.laws.io import derive_columns, read_table

        frame, _ = derive_columns(read_table(path), ("N", "D"))
        if not {"N", "D"} <= set(frame.columns):
            raise LmscaleError(f"--design {path}: needs columns N and D (or C and N)")
        frame = frame[["N", "D"]].apply(pd.to_numeric, errors="coerce")
    values = frame.to_numpy(float)
    if len(frame) < 3 or not np.all(np.isfinite(values) & (values > 0)):
        raise LmscaleError(f"--design {path}: expected at least 3 runs with positive N and D")
    return name.strip(), frame.reset_index(drop=True)


def space_for(designs: Mapping[str, pd.DataFrame], budget: float | None, max_run: float | None,
              sizes: str | None, ratios: str) -> tuple[DesignSpace, float, list[str]]:
    """The design space and budget: from the first design when one is given, else the defaults."""
    lo_r, hi_r = _pair(ratios, "--tokens-per-param")
    notes: list[str] = []
    first = next(iter(designs.values()), None)
    if sizes:
        n_min, n_max = _pair(sizes, "--sizes")
    elif first is not None:
        n_min, n_max = float(first["N"].min()), float(first["N"].max()) * 10.0
    else:
        n_min, n_max = DEFAULT_SIZES
    if max_run is None:
        max_run = float(run_cost(first["N"], first["D"]).max()) if first is not None else DEFAULT_MAX_RUN
    if budget is None:
        budget = float(run_cost(first["N"], first["D"]).sum()) if first is not None else DEFAULT_BUDGET_RUNS * max_run
    for name, frame in designs.items():
        cost = float(run_cost(frame["N"], frame["D"]).sum())
        if abs(cost / budget - 1.0) > 0.05:
            notes.append(f"design {name} costs {cost:.3g} FLOPs, not the budget {budget:.3g}: not an equal-FLOPs "
                         "comparison")
    space = DesignSpace(n_min=n_min, n_max=n_max, ratio_min=lo_r, ratio_max=hi_r, c_max=float(max_run))
    return space, float(budget), notes


def _pair(text: str, flag: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in str(text).split(","))
    except ValueError:
        raise LmscaleError(f"{flag} {text!r}: expected two numbers LO,HI") from None
    if not 0 < a <= b:
        raise LmscaleError(f"{flag} {text!r}: expected 0 < LO <= HI")
    return a, b


__all__ = ["read_design", "space_for", "truth_from"]
