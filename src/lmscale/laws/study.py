"""Fit every law a study's runs support: ``fit_study(store) -> StudyFits``.

:class:`StudyFrames` is the plain data object between the results store and
everything downstream (fits, figures, report). It is built from a
``lmscale.store.Store`` (or its path), from a mapping of DataFrames, or from
a single DataFrame of final points (another lab's ``N, D, loss`` table), so
a study can be fitted without a training stack.

:func:`fit_study` applies [K]'s selection rules (``lmscale.laws.selection``)
to choose the runs of each law, fits it with ``lmscale.laws.fitting.fit``
(bootstrap intervals), finds the compute-optimal frontier three ways
(``lmscale.laws.frontier``), runs the held-out check (the largest model
predicted from the others), and says for every law it could not fit which
runs are missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.forms import OffsetPowerLaw, get_form
from lmscale.laws.result import FitResult, LawSet

#: Store read methods, one per table of :class:`StudyFrames`.
TABLES = (
    "final_points", "runs", "curves", "distribution_losses",
    "final_distribution_losses", "per_position", "noise_scale",
)


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass
class StudyFrames:
    """A study's results as DataFrames (columns as ``lmscale.store.Store`` reads them).

    Attributes:
        final_points: one row per finished run: ``N, D, C, loss, run_id,
            group, rule, architecture, batch_tokens, n_layer, d_model, ...``.
        runs: every run with its status (including failed and pending ones).
        curves: learning curves, one row per point (``run_id, N, D, C, loss,
            step, batch_tokens, lr, noise_scale``).
        distribution_losses: test loss per distribution at every curve point.
        final_distribution_losses: final test loss per run and distribution.
        per_position: final loss per context position (``run_id, position, loss``).
        noise_scale: gradient-noise-scale estimates along the curves.
        source: where the frames came from (a store path, a file, ``"frames"``).
    """

    final_points: pd.DataFrame = field(default_factory=_empty)
    runs: pd.DataFrame = field(default_factory=_empty)
    curves: pd.DataFrame = field(default_factory=_empty)
    distribution_losses: pd.DataFrame = field(default_factory=_empty)
    final_distribution_losses: pd.DataFrame = field(default_factory=_empty)
    per_position: pd.DataFrame = field(default_factory=_empty)
    noise_scale: pd.DataFrame = field(default_factory=_empty)
    source: str = "frames"

    @classmethod
    def from_store(cls, store: Any) -> StudyFrames:
        """Read every table of a ``Store`` (anything with the store's read methods)."""
        tables = {}
        for name in TABLES:
            reader = getattr(store, name, None)
            tables[name] = reader() if callable(reader) else _empty()
        return cls(**tables, source=str(getattr(store, "path", "store")))

    @classmethod
    def load(cls, store_or_frames: Any) -> StudyFrames:
        """StudyFrames from a Store, a store path, a mapping of frames or one final-points frame."""
        obj = store_or_frames
        if isinstance(obj, StudyFrames):
            return obj
        if isinstance(obj, str | Path):
            from lmscale.store import Store

            path = Path(obj)
            if not path.exists():
                raise LmscaleError(f"{path}: no such store (run 'lmscale sweep run STUDY --store {path}')")
            store = Store(path, create=False)
            try:
                return cls.from_store(store)
            finally:
                store.close()
        if isinstance(obj, pd.DataFrame):
            return cls(final_points=obj.copy())
        if isinstance(obj, Mapping):
            known = {f.name for f in fields(cls)} - {"source"}
            unknown = sorted(set(obj) - known)
            if unknown:
                raise LmscaleError(f"unknown study table(s) {', '.join(unknown)}; expected some of {', '.join(TABLES)}")
            return cls(**{k: v.copy() for k, v in obj.items()})
        if callable(getattr(obj, "final_points", None)):
            return cls.from_store(obj)
        raise LmscaleError(
            f"expected a results store, its path, or DataFrames of final points; got {type(obj).__name__}"
        )

    def results(self, architecture: str | None = "transformer") -> pd.DataFrame:
        """Final points of one architecture (all when ``None``); no architecture column = all."""
        frame = self.final_points
        if architecture is None or frame.empty or "architecture" not in frame:
            return frame
        arch = frame["architecture"].fillna("transformer")
        return frame[arch == architecture]


# ---------------------------------------------------------------------------
# What fitting a study gives
# ---------------------------------------------------------------------------


@dataclass
class HoldoutCheck:
    """The largest model's loss predicted by a law fitted on the smaller ones.

    Attributes:
        law: the law used (``kaplan_n`` by default).
        run_id: the held-out run.
        N, D: its size and data.
        loss: its measured final loss (nats/token).
        predicted: the law's prediction for it, fitted without it.
        n_fit: number of points the held-out fit used.
    """

    law: str
    run_id: str
    N: float
    D: float
    loss: float
    predicted: float
    n_fit: int

    @property
    def rel_error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted - self.loss) / self.loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law, "run_id": self.run_id, "N": self.N, "D": self.D, "loss": self.loss,
            "predicted": self.predicted, "rel_error": self.rel_error, "n_fit": self.n_fit,
        }


@dataclass
class StudyFits:
    """Every law fitted to one study, with what each was fitted on.

    Attributes:
        laws: the fitted laws (key -> FitResult); keys are law names
            (``kaplan_n``, ``bcrit``, ...), ``transfer:<distribution>`` and
            ``position:<run_id>`` for the per-distribution and per-run laws.
            ``laws.extras["allocation"]`` holds the fitted compute-optimal
            frontier when there is one, so ``lmscale plan`` can use the set.
        points: key -> the rows each law was fitted on (its input columns and
            ``loss``/``B``, with ``run_id`` where the rows are runs).
        rules: key -> the selection rule that chose those rows, in words.
        missing: key -> why a law was not fitted (which runs are missing).
        holdout: the largest model predicted from the others, when possible.
        exponents: approach -> ``{"a", "b", "ci", "published", "how"}``:
            N_opt ~ C^a and D_opt ~ C^b from each compute-optimal method.
        frontiers: approach (``envelope``, ``isoflop``, ``parametric``) ->
            its ``lmscale.laws.frontier.Frontier``.
        accounting: how N, D, C and the loss were counted.
    """

    laws: LawSet
    points: dict[str, pd.DataFrame] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    holdout: HoldoutCheck | None = None
    exponents: dict[str, dict[str, Any]] = field(default_factory=dict)
    frontiers: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, fit: FitResult, points: pd.DataFrame, rule: str) -> None:
        """Record one fitted law with its points and selection rule."""
        fit.notes.setdefault("selection_rule", rule)
        self.laws.laws[key] = fit
        self.points[key] = points
        self.rules[key] = rule
        self.missing.pop(key, None)

    def summary_rows(self, published: tuple[str, ...] = ("kaplan2020", "hoffmann2022")) -> list[dict[str, Any]]:
        """One row per fitted parameter: law, parameter, value, 95% interval, the published value.

        ``published`` names catalog law sets (``lmscale.laws.catalog``); the
        first that has the law gives ``published`` and ``published_in``.
        """
        from lmscale.laws import catalog

        sets = [catalog.load(name) for name in published]
        rows = []
        for key, fit in self.laws.laws.items():
            ref = next((s for s in sets if key in s.laws), None)
            for name in fit.form.params:
                lo, hi = (fit.ci or {}).get(name) or (None, None)
                rows.append({
                    "law": key, "param": name, "value": fit.params[name], "lo": lo, "hi": hi,
                    "published": ref.laws[key].params.get(name) if ref is not None else None,
                    "published_in": ref.name if ref is not None else None, "n_points": fit.n_points,
                })
        return rows

    def summary(self) -> str:
        """Plain-text table of every fitted constant beside the paper's, and the held-out check."""
        lines = [f"{'law':<26} {'param':<12} {'fitted':>11} {'95% interval':>25} {'published':>11}"]
        for r in self.summary_rows():
            ci = f"[{r['lo']:.4g}, {r['hi']:.4g}]" if r["lo"] is not None else "-"
            pub = f"{r['published']:.4g}" if r["published"] is not None else "-"
            lines.append(f"{r['law']:<26} {r['param']:<12} {r['value']:>11.4g} {ci:>25} {pub:>11}")
        if self.holdout is not None:
            h = self.holdout
            lines.append(f"held-out check: {h.law} fitted without the largest model (N = {h.N:.3g}) predicts "
                         f"{h.predicted:.4f} nats/token, measured {h.loss:.4f}: {h.rel_error:+.2%}")
        for key, why in self.missing.items():
            lines.append(f"not fitted: {key}: {why}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Choosing the points of each law (the study-level part of [K]'s rules)
# ---------------------------------------------------------------------------


class NotEnough(LmscaleError):
    """The study lacks the runs a law needs; the message says which."""


def _rule_text(frame: pd.DataFrame, fallback: str) -> str:
    """The selection record of ``lmscale.laws.selection`` in words."""
    parts = []
    for step in frame.attrs.get("selection", []) or []:
        if isinstance(step, Mapping):
            details = ", ".join(f"{k} {v}" for k, v in step.items() if k not in ("rule", "criterion"))
            parts.append(f"{step.get('rule')}: {step.get('criterion', '')} ({details})")
        else:
            parts.append(str(step))
    return "; ".join(parts) or fallback


def _rule_of(frame: pd.DataFrame) -> pd.Series:
    return frame["rule"].fillna("plain") if "rule" in frame else pd.Series("plain", index=frame.index)


def _count_distinct(values: pd.Series, rtol: float = 0.05) -> int:
    """Distinct values, those within ``rtol`` of a neighbour counted once."""
    v = np.sort(np.log(values.to_numpy(dtype=float)))
    return 0 if len(v) == 0 else int(1 + np.sum(np.diff(v) > np.log1p(rtol)))


def _enough(frame: pd.DataFrame, law: str, need: int, what: str) -> pd.DataFrame:
    n_params = len(get_form(law).params)
    if len(frame) < max(need, n_params + 1):
        raise NotEnough(f"needs {what}: at least {max(need, n_params + 1)} (the study has {len(frame)})")
    return frame


def select_size_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N) ([K] eq. 1.1): Transformers trained near convergence.

    Runs of a ``converge`` group (early stopping on, a large budget) count as
    converged whatever their status; runs of other groups must pass
    ``selection.converged_runs`` (early stopped, or D >= 5e3 N^0.74), except
    ``data`` and ``isoflop`` groups, whose D is limited on purpose.
    """
    from lmscale.laws.selection import converged_runs

    runs = frames.results("transformer")
    if runs.empty:
        raise NotEnough("needs finished Transformer runs of 3 or more sizes (the study has none)")
    rule = _rule_of(runs)
    declared, others = rule == "converge", ~rule.isin(["converge", "data", "isoflop"])
    parts, rules = [], []
    if declared.any():
        parts.append(runs[declared])
        rules.append(f"{int(declared.sum())} runs of 'converge' groups (early stopping on, large budget)")
    if others.any():
        chosen = converged_runs(runs[others])
        parts.append(chosen)
        rules.append("other groups except 'data' and 'isoflop' (their D is limited on purpose): "
                     + _rule_text(chosen, "converged_runs"))
    if not parts:
        raise NotEnough("needs Transformers trained near convergence at 3 or more sizes (a 'converge' "
                        "group, or early-stopped runs); the study's Transformer runs are all in 'data' or "
                        "'isoflop' groups")
    pts = pd.concat(parts).sort_values("N")
    distinct = _count_distinct(pts["N"]) if len(pts) else 0
    if distinct < 3:
        raise NotEnough(
            f"needs Transformers trained near convergence at 3 or more sizes (a 'converge' group, or "
            f"early-stopped runs); the study has {distinct} size(s)"
        )
    return pts, "; ".join(rules)


def select_data_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(D) ([K] eq. 1.2): the largest model at each dataset size, from ``data`` groups."""
    from lmscale.laws.selection import largest_model_per_data

    runs = frames.results("transformer")
    runs = runs[_rule_of(runs) == "data"] if not runs.empty else runs
    if runs.empty:
        raise NotEnough("needs a 'data' group: a large Transformer trained on 3 or more dataset sizes "
                        "with early stopping (the study has none)")
    pts = largest_model_per_data(runs)
    if len(pts) < 3:
        raise NotEnough(f"needs 3 or more dataset sizes in 'data' groups (the study has {len(pts)})")
    return pts, "runs of 'data' groups; " + _rule_text(pts, "largest_model_per_data")


def select_nd_grid(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, D) ([K] eq. 1.5): every Transformer of the ``data`` groups (a grid of N and D)."""
    runs = frames.results("transformer")
    runs = runs[_rule_of(runs) == "data"] if not runs.empty else runs
    n_sizes = _count_distinct(runs["N"]) if len(runs) else 0
    d_sizes = _count_distinct(runs["D"]) if len(runs) else 0
    if n_sizes < 2 or d_sizes < 2:
        raise NotEnough(f"needs 'data' groups covering 2 or more model sizes and 2 or more dataset sizes "
                        f"(the study has {n_sizes} sizes x {d_sizes} dataset sizes)")
    return _enough(runs, "kaplan_nd", 6, "runs in the N x D grid"), \
        f"every Transformer run of the 'data' groups ({n_sizes} sizes x {d_sizes} dataset sizes)"


def select_parametric(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """[H] eq. 2: every finished Transformer run whose D was set by the study (not early stopping)."""
    runs = frames.results("transformer")
    runs = runs[_rule_of(runs).isin(["data", "isoflop", "plain"])] if not runs.empty else runs
    n_sizes = _count_distinct(runs["N"]) if len(runs) else 0
    d_sizes = _count_distinct(runs["D"]) if len(runs) else 0
    if n_sizes < 3 or d_sizes < 3:
        raise NotEnough(f"needs runs of 'data', 'isoflop' or 'plain' groups at 3 or more model sizes and "
                        f"dataset sizes (the study has {n_sizes} sizes x {d_sizes} dataset sizes)")
    return _enough(runs, "chinchilla", 8, "runs of varied N and D"), \
        f"every finished Transformer run of 'data', 'isoflop' and 'plain' groups ({len(runs)} runs)"


def finished_only(frames: StudyFrames, table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``table`` that belong to runs with a result (those in ``final_points``)."""
    if table.empty or "run_id" not in table or "run_id" not in frames.final_points:
        return table
    return table[table["run_id"].isin(set(frames.final_points["run_id"]))]


def transformer_curves(frames: StudyFrames) -> pd.DataFrame:
    """Learning-curve points of finished Transformer runs with positive loss and compute."""
    curves = finished_only(frames, frames.curves)
    if curves.empty or "loss" not in curves:
        return pd.DataFrame()
    arch = curves["architecture"].fillna("transformer") if "architecture" in curves else "transformer"
    ok = (arch == "transformer") & (curves["loss"] > 0) & (curves["C"] > 0)
    return curves[ok]


def after_warmup(curves: pd.DataFrame) -> pd.DataFrame:
    """Curve points after each run's learning-rate peak (the end of warm-up; all when lr is unknown)."""
    if curves.empty or "lr" not in curves or not curves["lr"].notna().any():
        return curves
    peak_at = curves.loc[curves["lr"].fillna(-np.inf).groupby(curves["run_id"]).idxmax()]
    peak = peak_at.set_index("run_id")["step"]
    return curves[(curves["step"] >= curves["run_id"].map(peak)) & (curves["step"] > 0)]


def select_critical_batch(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """B_crit(L) ([K] eq. 5.3): gradient-noise-scale estimates B_simple ~ B_crit ([K] 5.1).

    Every Transformer curve point past the first ``WARMUP_SHARE`` of its run
    with a positive estimate; the bootstrap resamples whole runs.
    """
    noise = finished_only(frames, frames.noise_scale)
    if noise.empty or "noise_scale" not in noise:
        raise NotEnough("needs gradient-noise-scale estimates (runs with noise_scale = true)")
    arch = noise["architecture"].fillna("transformer") if "architecture" in noise else "transformer"
    late = noise["step"] >= WARMUP_SHARE * noise.groupby("run_id")["step"].transform("max")
    ok = (arch == "transformer") & late & (noise["noise_scale"] > 0) & (noise["loss"] > 0)
    pts = noise[ok].rename(columns={"loss": "L", "noise_scale": "B"})
    if pts["run_id"].nunique() < 2 or len(pts) < 6:
        raise NotEnough(f"needs noise-scale estimates along 2 or more Transformer runs (the study has "
                        f"{pts['run_id'].nunique()} runs with {len(pts)} usable estimates)")
    return pts, (f"B_crit = B_simple = tr(Sigma)/|G|^2, the gradient noise scale ([K] 5.1), at every "
                 f"Transformer curve point past the first {WARMUP_SHARE:.0%} of its steps "
                 f"({pts['run_id'].nunique()} runs, {len(pts)} points)")


def _bcrit_choice(fits: StudyFits) -> tuple[Any, str]:
    if "bcrit" in fits.laws:
        return dict(fits.laws.laws["bcrit"].params), "B_crit(L) fitted to this study"
    return None, "the measured noise scale where available, [K]'s B_crit(L) elsewhere"


def select_cmin_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C_min) ([K] eq. 1.3): the lower envelope of the curves in C_min = C / (1 + B/B_crit)."""
    from lmscale.laws.selection import cmin_envelope

    curves = after_warmup(transformer_curves(frames))
    if curves.empty or curves["run_id"].nunique() < 2:
        raise NotEnough("needs learning curves of 2 or more Transformer runs")
    bcrit, how = _bcrit_choice(fits)
    pts = cmin_envelope(curves, bcrit=bcrit)
    _enough(pts, "kaplan_cmin", 4, "points on the C_min envelope")
    return pts, f"curve points after warm-up; {_rule_text(pts, 'cmin_envelope')}; B_crit from {how}"


def select_steps(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, S_min) ([K] eq. 1.6): curve points after warm-up, steps converted to S_min (eq. 5.4)."""
    from lmscale.laws.forms import critical_batch, min_steps

    curves = transformer_curves(frames)
    if "bcrit" not in fits.laws:
        raise NotEnough("needs the fitted B_crit(L) to convert steps to S_min ([K] eq. 5.4): "
                        + fits.missing.get("bcrit", "not fitted"))
    if curves.empty or _count_distinct(curves.groupby("run_id")["N"].first()) < 2:
        raise NotEnough("needs learning curves of Transformers at 2 or more sizes")
    after = after_warmup(curves)
    b_crit = critical_batch(fits.laws.laws["bcrit"].params, after["loss"].to_numpy(dtype=float))
    pts = after.assign(S=min_steps(after["step"].to_numpy(dtype=float),
                                   after["batch_tokens"].to_numpy(dtype=float), b_crit))
    _enough(pts, "kaplan_ns", 8, "curve points after warm-up")
    return pts, ("every Transformer curve point after warm-up (after the learning-rate peak), "
                 "S_min = S / (1 + B_crit(L)/B) with the fitted B_crit(L) ([K] eq. 5.4)")


#: Share of a run's steps whose noise-scale estimates are left out (warm-up, EMA start).
WARMUP_SHARE = 0.1


def select_fixed_batch_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C) at fixed batch ([K] figure 13): the compute-efficient frontier of the curves in C."""
    front = fits.frontiers.get("envelope")
    if front is None or front.points is None or front.points.empty:
        raise NotEnough("needs the envelope of learning curves of 2 or more Transformer sizes: "
                        + fits.missing.get("envelope", "not found"))
    pts = front.points[["C", "loss", "N_opt"]]
    _enough(pts, "kaplan_c", 4, "points on the envelope")
    return pts, (f"the envelope of the Transformer learning curves after warm-up, in C = 6ND at each "
                 f"run's batch size: "
                 f"the lowest interpolated loss at {len(pts)} log-spaced C values reached by 2 or more runs")


def select_transfer(frames: StudyFrames, distribution: str) -> tuple[pd.DataFrame, str]:
    """L_other(L_train) ([K] 3.2.2): final losses of the Transformers on ``distribution``."""
    final = finished_only(frames, frames.final_distribution_losses)
    arch = final["architecture"].fillna("transformer") if "architecture" in final else "transformer"
    final = final[arch == "transformer"]
    train = final[final["distribution"] == final["train_distribution"]].set_index("run_id")["loss"]
    other = final[final["distribution"] == distribution]
    pts = other.assign(L_train=other["run_id"].map(train)).dropna(subset=["L_train", "loss"])
    if len(pts) < 3:
        raise NotEnough(f"needs 3 or more Transformer runs evaluated on {distribution} (the study has {len(pts)})")
    return pts, f"final test loss of every finished Transformer on {distribution} against its training loss"


def select_positions(frames: StudyFrames, run_id: str) -> tuple[pd.DataFrame, str]:
    """L(t) ([K] figure 20): one run's final loss at each context position t."""
    pos = frames.per_position
    pts = pos[(pos["run_id"] == run_id) & (pos["loss"] > 0) & (pos["position"] > 0)]
    pts = pts.rename(columns={"position": "t"})
    _enough(pts, "position", 8, "context positions")
    arch = pts["architecture"].iloc[0] if "architecture" in pts else "transformer"
    return pts, f"final test loss at each context position of the largest {arch} run ({run_id})"


def position_runs(frames: StudyFrames) -> list[str]:
    """The largest run of each architecture with per-position losses."""
    pos = finished_only(frames, frames.per_position)
    if pos.empty:
        return []
    sizes = pos.groupby("run_id").agg(N=("N", "first"), architecture=("architecture", "first"))
    sizes["architecture"] = sizes["architecture"].fillna("transformer")
    return [str(sizes[sizes["architecture"] == a]["N"].idxmax()) for a in sorted(sizes["architecture"].unique())]


def other_distributions(frames: StudyFrames) -> list[str]:
    final = frames.final_distribution_losses
    if final.empty or "train_distribution" not in final:
        return []
    return sorted(set(final["distribution"]) - set(final["train_distribution"].dropna()))


#: The laws fitted to a study, in order (later rules use earlier fits):
#: (key, law, selection).
STUDY_LAWS = (
    ("bcrit", "bcrit", select_critical_batch),
    ("kaplan_n", "kaplan_n", select_size_sweep),
    ("kaplan_d", "kaplan_d", select_data_sweep),
    ("kaplan_nd", "kaplan_nd", select_nd_grid),
    ("chinchilla", "chinchilla", select_parametric),
    ("kaplan_c", "kaplan_c", select_fixed_batch_envelope),
    ("kaplan_cmin", "kaplan_cmin", select_cmin_envelope),
    ("kaplan_ns", "kaplan_ns", select_steps),
)

#: [H] table 2 and [K] table 6: published exponent a of N_opt ~ C^a per approach.
PUBLISHED_A = {"envelope": 0.50, "isoflop": 0.49, "parametric": 0.46}
APPROACHES = {
    "envelope": "approach 1: envelope of learning curves",
    "isoflop": "approach 2: IsoFLOP parabolas",
    "parametric": "approach 3: parametric L(N, D) ([H] eq. 2)",
}


# ---------------------------------------------------------------------------
# Fitting a study
# ---------------------------------------------------------------------------


def fit_study(
    store_or_frames: Any, bootstrap: int = 200, holdout: bool = True, seed: int = 0,
    name: str | None = None, progress: bool = False,
) -> StudyFits:
    """Fit every law the study's runs support.

    Args:
        store_or_frames: a ``Store``, its path, a mapping of DataFrames, a
            final-points DataFrame, or :class:`StudyFrames`.
        bootstrap: bootstrap refits per law for the 95% intervals (0: none).
        holdout: predict the largest model's loss from L(N) fitted on the others.
        seed: seed of every bootstrap.
        name: name of the law set (default: the store's file name).
        progress: progress bars on stderr.

    Returns:
        :class:`StudyFits`; laws that could not be fitted are in ``missing``
        with the runs they would need.
    """
    from lmscale.laws.fitting import fit

    frames = StudyFrames.load(store_or_frames)
    label = name or (Path(frames.source).stem if frames.source not in ("frames", "") else "study")
    fits = StudyFits(laws=LawSet(name=label, source="fit", notes={"store": frames.source}))
    fits.accounting = accounting(frames)
    for key, law, select in STUDY_LAWS:
        if key == "kaplan_c":
            fit_frontiers(frames, fits, bootstrap, seed)
        _fit_one(fits, key, law, lambda s=select: s(frames, fits), fit, bootstrap, seed, progress)
    if "chinchilla" in fits.laws:
        _frontier(fits, "parametric", lambda: _parametric(fits))
    for dist in other_distributions(frames):
        _fit_one(fits, f"transfer:{dist}", "transfer", lambda d=dist: select_transfer(frames, d), fit,
                 bootstrap, seed, progress)
    if not other_distributions(frames):
        fits.missing["transfer"] = "needs runs evaluated on another distribution besides the training one"
    for run_id in position_runs(frames):
        _fit_one(fits, f"position:{run_id}", "position", lambda r=run_id: select_positions(frames, r), fit,
                 0, seed, progress)
    set_allocation(fits)
    if holdout:
        fits.holdout = holdout_check(fits)
    return fits


def _fit_one(fits: StudyFits, key: str, law: str, select: Any, fit: Any, bootstrap: int, seed: int,
             progress: bool) -> None:
    try:
        pts, rule = select()
        result = fit(pts, law=law, bootstrap=bootstrap, seed=seed, progress=progress)
    except LmscaleError as exc:
        fits.missing[key] = str(exc)
        return
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:  # one bad law never stops the others
        warnings.warn(f"fitting {key} failed: {exc!r}", stacklevel=2)
        fits.missing[key] = f"the fit failed: {type(exc).__name__}: {exc}"
        return
    bad = [p for p, v in result.params.items() if not np.isfinite(v)]
    if bad:
        fits.missing[key] = (f"the fit ran away: {', '.join(bad)} not finite on {len(pts)} points "
                             f"({rule})")
        return
    wrong = {p: v for p, v in result.params.items() if p.startswith(("alpha", "beta")) and v <= 0}
    if wrong:  # an exponent <= 0: loss not falling with scale; the runs do not pin the law down
        text = ", ".join(f"{p} = {v:.3g}" for p, v in wrong.items())
        fits.missing[key] = f"the fit gives {text} (not positive) on {len(pts)} points; needs runs spanning more scale"
        return
    degenerate = collapsed_offset(result, pts)
    if degenerate:
        fits.missing[key] = f"{degenerate} on {len(pts)} points ({rule})"
        return
    fits.add(key, result, pts, rule)


#: An offset below this fraction of the smallest fitted loss counts as collapsed to 0.
COLLAPSED_OFFSET = 1e-3


def collapsed_offset(result: FitResult, points: pd.DataFrame) -> str | None:
    """Why an ``E + (X_0 / X)^alpha`` fit is degenerate, or None.

    When the fit drives the irreducible term E to zero, the offset is not
    identified by the points: the rest of the law becomes a pure power law
    with a tiny exponent and a scale X_0 decades outside the data (t_0 ~
    1e90 positions on a small model's per-position loss): its parameters
    mean nothing, so the law is reported as not fitted, with the reason.
    """
    if not isinstance(result.form, OffsetPowerLaw):
        return None
    offset, scale, alpha = result.form.params
    floor = float(points[result.form.output].min())
    value = result.params[offset]
    if value >= COLLAPSED_OFFSET * floor:
        return None
    return (f"the fit drives {offset} to {value:.3g} (smallest loss {floor:.4g}) with {scale} = "
            f"{result.params[scale]:.3g}, {alpha} = {result.params[alpha]:.3g}: the points do not "
            f"identify an irreducible loss (a plateau or a pure power law, not {result.form.formula})")


def _frontier(fits: StudyFits, method: str, make: Any) -> None:
    try:
        front = make()
    except LmscaleError as exc:
        fits.missing.setdefault(method, str(exc))
        return
    fits.frontiers[method] = front
    fits.missing.pop(method, None)
    a_ci = front.ci.get("a") if front.ci else None
    fits.exponents[APPROACHES[method]] = {
        "a": front.a, "b": front.b, "ci": a_ci, "published": PUBLISHED_A[method],
        "how": "; ".join(f"{k}: {v}" for k, v in front.notes.items() if isinstance(v, str | int | float)),
    }


def _parametric(fits: StudyFits) -> Any:
    from lmscale.laws.frontier import parametric_frontier

    return parametric_frontier(fits.laws.laws["chinchilla"])


def fit_frontiers(frames: StudyFrames, fits: StudyFits, bootstrap: int, seed: int) -> None:
    """[H] approaches 1 and 2 (approach 3 follows the chinchilla fit)."""
    from lmscale.laws.frontier import envelope_frontier, isoflop_frontier

    curves = after_warmup(transformer_curves(frames))
    if curves.empty:
        fits.missing["envelope"] = "needs learning curves of 2 or more Transformer sizes"
    else:
        _frontier(fits, "envelope", lambda: envelope_frontier(curves, bootstrap=bootstrap, seed=seed))
    runs = frames.results("transformer")
    iso = runs[_rule_of(runs) == "isoflop"] if not runs.empty else runs
    if iso.empty:
        fits.missing["isoflop"] = "needs 'isoflop' groups: 3 or more sizes at each of 2 or more compute budgets"
    else:
        _frontier(fits, "isoflop", lambda: isoflop_frontier(iso, bootstrap=max(bootstrap, 0), seed=seed))


def set_allocation(fits: StudyFits) -> None:
    """extras["allocation"]: the study's N_opt(C), D_opt(C) (envelope, else IsoFLOP), for the planner."""
    from lmscale.laws.planner import power_allocation

    for method in ("envelope", "isoflop"):
        front = fits.frontiers.get(method)
        if front is not None:
            fits.laws.extras["allocation"] = power_allocation(
                N_opt=(front.k_N, front.a), D_opt=(front.k_D, front.b),
                where=f"this study, [H] {APPROACHES[method]}; C = 6ND in FLOPs",
            )
            fits.missing.pop("allocation", None)
            return
    fits.missing["allocation"] = ("needs the compute-optimal frontier: learning curves of 2 or more "
                                  "Transformer sizes, or IsoFLOP groups")


def holdout_check(fits: StudyFits, law: str = "kaplan_n") -> HoldoutCheck | None:
    """Fit ``law`` without the largest model and predict its loss.

    Every point of the largest N is left out of the fit; the check reports
    the lowest-loss run of that size (the most converged one).
    """
    from lmscale.laws.fitting import fit

    pts = fits.points.get(law)
    if pts is None or law not in fits.laws:
        fits.missing["holdout"] = f"needs a fitted {law}: {fits.missing.get(law, 'not fitted')}"
        return None
    largest = pts["N"] >= pts["N"].max() * (1.0 - 1e-9)
    train = pts[~largest]
    if _count_distinct(train["N"]) < 2 or len(train) < len(get_form(law).params) + 1:
        fits.missing["holdout"] = f"needs {law} points at 3 or more sizes (has {_count_distinct(pts['N'])})"
        return None
    held = pts[largest].sort_values("loss").iloc[0]
    result = fit(train, law=law)
    return HoldoutCheck(law=law, run_id=str(held.get("run_id", "")), N=float(held["N"]),
                        D=float(held.get("D", float("nan"))), loss=float(held["loss"]),
                        predicted=float(result.predict(N=float(held["N"]))), n_fit=len(train))


def accounting(frames: StudyFrames) -> dict[str, str]:
    """How N, D, C and the loss of the fits were counted (from the store's columns)."""
    pts = frames.final_points
    exact = ""
    if not pts.empty and {"N", "N_exact"} <= set(pts):
        ratio = (pts["N_exact"] / pts["N"]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(ratio):
            exact = f"; the exact count is {ratio.min():.3g}x to {ratio.max():.3g}x of it in this study"
    return {
        "N": "non-embedding parameters by [K]'s formula 2 d_model n_layer (2 d_attn + d_ff) (no biases, "
             "norms or embeddings); the exact count of the instantiated model is in the run table" + exact,
        "D": "tokens trained, capped at the dataset size for multi-epoch runs",
        "C": "C = 6 N D, training FLOPs per [K] section 2.1 (no attention or logits terms); the exact "
             "FLOPs with them are the store's C_exact column, not used by the fits",
        "C_min": "C / (1 + B / B_crit(L)) ([K] eq. 5.5), the compute at a batch far below critical",
        "loss": "final test loss on the training distribution in nats/token (the best one for "
                "early-stopped runs); curves use the test loss at each evaluation",
        "architectures": "the laws are fitted on Transformer runs; LSTM and Universal Transformer runs "
                         "appear only in the architecture figure",
    }
