"""The demo: the method of [K] reproduced at the scale of this machine.

One call runs the whole flow of ``docs``' architecture: prepare real text
(the Python standard library always; Debian texts when installed), train a
shipped study into a results store (resumable: a second call continues),
fit every law the runs support with bootstrap intervals, write the HTML
report, and summarise the fitted constants beside the paper's with the
held-out check (the largest model predicted from the smaller ones).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError

#: Studies shipped with lmscale, by the name ``--study`` also accepts.
SHIPPED = {
    "kaplan-cpu": "kaplan-cpu.toml",
    "kaplan-quick": "kaplan-quick.toml",
    "kaplan-gpu": "kaplan-gpu.toml",
    "chinchilla-isoflop": "chinchilla-isoflop.toml",
    "smoke": "smoke.toml",
}


def studies_dir() -> Path:
    """The folder of shipped study files (``studies/`` of the source tree)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "studies", here.parent / "studies"):
        if candidate.is_dir():
            return candidate
    raise LmscaleError("the shipped studies/ folder was not found; pass --study FILE")


def resolve_study(study: str | Path) -> Path:
    """A study file from a path or a shipped study name (``kaplan-cpu``, ...)."""
    path = Path(study)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise LmscaleError(f"--study {path}: no such file")
        return path
    name = str(study)
    if name not in SHIPPED:
        raise LmscaleError(f"--study {name!r}: not a file, nor a shipped study ({', '.join(SHIPPED)})")
    return studies_dir() / SHIPPED[name]


@dataclass
class DemoResult:
    """What the demo did and found.

    Attributes:
        study: the study file.
        store: the results store.
        report: the report's index.html (``None`` when not written).
        counts: runs by status after the sweep.
        trained: run ids this call trained (or resumed from a checkpoint).
        skipped: run ids already finished before this call (not trained again).
        fits: the fitted laws (``lmscale.laws.study.StudyFits``).
        timings: seconds spent per stage.
        left_out: run ids in the store that the study as it stands does not name
            (trained by an earlier version of its file, or by another study):
            not fitted, not reported, still in the store.
    """

    study: Path
    store: Path
    report: Path | None
    counts: dict[str, int]
    fits: Any
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        fits = self.fits
        return {
            "study": str(self.study),
            "store": str(self.store),
            "report": str(self.report) if self.report else None,
            "counts": self.counts,
            "trained": self.trained,
            "skipped": self.skipped,
            "left_out": self.left_out,
            "timings_s": self.timings,
            "fits": fits.summary_rows() if fits is not None else [],
            "holdout": fits.holdout.to_dict() if fits is not None and fits.holdout is not None else None,
            "r2": {k: f.stats.get("r2") for k, f in fits.laws.laws.items()} if fits is not None else {},
            "not_identified": fits.not_identified() if fits is not None else {},
            "not_fitted": dict(fits.missing) if fits is not None else {},
            "exponents": fits.exponents if fits is not None else {},
            "checks": fits.checks if fits is not None else {},
            "crossing": fits.crossing.to_dict() if fits is not None and fits.crossing is not None else None,
        }

    def summary(self) -> str:
        lines = [f"study: {self.study}", f"store: {self.store}",
                 "runs: " + ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
                 + f" (trained now: {len(self.trained)}, already done: {len(self.skipped)})"]
        if self.left_out:
            lines.append(f"left out: {len(self.left_out)} run(s) in the store that the study as it stands does "
                         "not name (trained by an earlier version of its file, or by another study): not fitted, "
                         "not reported")
        if self.fits is not None:
            lines += ["", self.fits.summary()]
        if self.report is not None:
            lines += ["", f"report: {self.report}"]
        lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items()))
        return "\n".join(lines)


def run_demo(
    study: str | Path = "kaplan-cpu",
    *,
    store: str | Path | None = None,
    out: str | Path | None = None,
    workers: int | None = None,
    bootstrap: int = 200,
    report: bool = True,
    progress: bool = True,
    flops: str = "6N",
) -> DemoResult:
    """Run ``study`` into ``store``, fit, report; returns what was found.

    Defaults put the store and the report under ``runs/`` of the current
    directory: ``runs/<study>.sqlite`` and ``runs/<study>-report/``.
    ``flops``: the FLOP accounting of the fits (``"6N"`` or ``"exact"``).
    """
    from lmscale.laws.study import fit_study
    from lmscale.sweeps import load_study, run_sweep

    path = resolve_study(study)
    parsed = load_study(path)
    root = Path("runs")
    store_path = Path(store) if store is not None else root / f"{parsed.name}.sqlite"
    out_dir = Path(out) if out is not None else root / f"{parsed.name}-report"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    swept = run_sweep(parsed, store_path, workers=workers, progress=progress)
    timings["train"] = time.perf_counter() - start
    if swept.interrupted:
        raise LmscaleError(f"the sweep was interrupted; run the demo again to continue ({store_path} keeps "
                           f"every finished run)")

    start = time.perf_counter()
    frames, left_out = study_frames(store_path, parsed)
    fits = fit_study(frames, bootstrap=bootstrap, holdout=True, progress=progress, flops=flops)
    timings["fit"] = time.perf_counter() - start

    index = None
    if report:
        from lmscale.report import ReportOptions, build_report

        start = time.perf_counter()
        built = build_report(frames, out_dir, ReportOptions(bootstrap=bootstrap, progress=progress,
                                                                flops=flops), fits=fits)
        index = Path(built.index)
        timings["report"] = time.perf_counter() - start
    return DemoResult(study=path, store=store_path, report=index, counts=dict(swept.counts), fits=fits,
                      trained=list(swept.trained), skipped=list(swept.skipped), timings=timings,
                      left_out=left_out)


def study_frames(store: Any, study: Any) -> tuple[Any, list[str]]:
    """The tables of ``store`` (its path, or its ``StudyFrames``) restricted to the runs ``study``
    (a parsed study file) plans, and the ids of the other runs the store holds: an edited study file plans new runs beside the old ones,
    which fitting the whole store would mix in (two learning rates at one size, say, as two
    points of L(N))."""
    from lmscale.laws.study import StudyFrames

    planned = {run.run_id for run in study.runs}
    frames = StudyFrames.load(store)
    known = set(frames.runs["run_id"].astype(str)) if "run_id" in frames.runs else set()
    return frames.restricted_to(planned), sorted(known - planned)
