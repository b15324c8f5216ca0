"""One look for every figure: matplotlib (Agg), log axes, units, law lines.

Every law curve is drawn by :func:`law_line`, which evaluates the fitted law
through ``FitResult.predict`` (never a re-typed formula) and tags the line
with ``gid = "law:<key>"`` so tests and readers can find exactly what was
drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.files import atomic_path

#: rcParams shared by every figure of the report.
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
    "lines.markersize": 4.5,
    "svg.fonttype": "none",
    "svg.hashsalt": "lmscale",
    "image.cmap": "viridis",
}

#: Colour map for model size (learning curves are coloured by N, as in [K]).
SIZE_CMAP = "viridis"
#: Colour of fitted laws and of the paper's published laws.
FIT_COLOR = "#c0392b"
PAPER_COLOR = "#7f8c8d"
FRONTIER_COLOR = "#e67e22"

LOSS_LABEL = "test loss L (nats/token)"

#: Axis labels with units, one per quantity the figures plot.
LABELS = {
    "N": "non-embedding parameters N",
    "N_total": "parameters including embeddings",
    "D": "dataset size D (tokens)",
    "tokens": "tokens processed",
    "C": "compute C = 6ND (FLOPs)",
    "C_exact": "compute, exact FLOPs",
    "C_min": "compute C_min (FLOPs, [K] eq. 5.5)",
    "S": "steps S_min ([K] eq. 5.4)",
    "B": "critical batch size B_crit (tokens)",
    "loss": LOSS_LABEL,
    "t": "context position t (tokens)",
}


@contextmanager
def style() -> Iterator[None]:
    """The report's rcParams, applied for the duration of a block (draw and save inside it)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.6, height: float = 3.5):
    """A figure of ``nrows x ncols`` panels (inches per panel); returns (fig, flat axes).

    Built without pyplot, so no GUI backend or global figure state is involved.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


def save(fig, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    with style():
        for ax in fig.axes:
            tidy_log_ticks(ax)
        for fmt in ("png", "svg"):
            final = out / f"{stem}.{fmt}"
            with atomic_path(final) as tmp:
                fig.savefig(tmp, format=fmt, metadata=_metadata(fmt))
            paths[fmt] = final
    return paths


def tick_text(value: float) -> str:
    """Tick label: plain for ordinary numbers, m x 10^e for very large or small ones."""
    if value <= 0 or 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    if abs(mantissa - 1.0) < 1e-6:
        return f"$10^{{{exponent}}}$"
    return f"${mantissa:g}\\times10^{{{exponent}}}$"


def tidy_log_ticks(ax) -> None:
    """Readable ticks on log axes: labelled minor ticks on short spans, decades only on long ones."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    text = FuncFormatter(lambda v, _: tick_text(v))
    for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                             (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale != "log" or min(lim) <= 0:
            continue
        decades = abs(np.log10(lim[1] / lim[0]))
        if decades < 0.3 and max(lim) >= 1e4:
            # a sliver of a decade in m x 10^e labels: matplotlib falls back to evenly spaced ticks
            # there, one label every 0.2 x 10^e, wider than their spacing; three of them, no minor ones
            axis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
            axis.set_minor_locator(NullLocator())
            axis.set_major_formatter(text)
            continue
        if decades < 0.5:
            subs: tuple[float, ...] | None = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
        elif decades < 1.0:
            subs = (2.0, 3.0, 5.0)
        elif decades < 2.5:
            subs = (2.0, 5.0)
        else:
            subs = None
        if subs is None:
            axis.set_minor_formatter(NullFormatter())
            continue
        axis.set_minor_locator(LogLocator(subs=subs))
        axis.set_minor_formatter(text)
        axis.set_major_formatter(text)


def _metadata(fmt: str) -> dict[str, Any]:
    # no time stamps: the same study gives byte-identical figures
    if fmt == "svg":
        return {"Date": None}
    return {"Software": "lmscale"}


def label(ax, x: str, y: str = "loss", xlog: bool = True, ylog: bool = True) -> None:
    """Axis labels from :data:`LABELS` (or given text) and log scales."""
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")


def log_grid(values: Sequence[float] | np.ndarray, pad: float = 0.15, n: int = 200) -> np.ndarray:
    """``n`` log-spaced points spanning ``values``, widened by ``pad`` decades each side."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = np.log10(v.min()) - pad, np.log10(v.max()) + pad
    return np.logspace(lo, hi, n)


#: What the legend of a law line adds when the law's runs do not identify it.
NOT_IDENTIFIED = " (not identified)"


def law_line(ax, fit, key: str, x: np.ndarray, along: str, label: str | None = None,
             color: str = FIT_COLOR, **fixed: Any):
    """Draw ``fit.predict(**{along: x}, **fixed)`` against ``x``; returns the Line2D.

    ``fixed`` gives the other inputs (e.g. ``D=1e9`` for a slice of L(N, D)).
    The line's gid is ``law:<key>;along=<input>`` followed by ``;<input>=<value>``
    for each fixed input (see :func:`parse_gid`); its label is the law's formula
    with the fitted constants unless ``label`` is given. A law its runs do not
    identify (``fit.identified is False``) is drawn dashed, its label ending in
    :data:`NOT_IDENTIFIED`: its constants are not a result.
    """
    y = np.asarray(fit.predict(**{along: x}, **fixed), dtype=float)
    text = marked(fit, label) if label is not None else law_text(fit)
    (line,) = ax.plot(x, y, line_style(fit), color=color, label=text, zorder=3)
    line.set_gid(law_gid(key, along, **fixed))
    return line


def law_gid(key: str, along: str, **fixed: float) -> str:
    """``law:<key>;along=<input>;<input>=<value>...``: what a law line was drawn from.

    ``key`` is the law-set key of the study's fit, or ``<law>@<catalog name>``
    for a published law (e.g. ``kaplan_cmin@kaplan2020``).
    """
    return f"law:{key};along={along}" + "".join(f";{k}={float(v)!r}" for k, v in fixed.items())


def parse_gid(gid: str) -> tuple[str, str, dict[str, float]]:
    """(law key, input along x, fixed inputs) of a gid written by :func:`law_gid`."""
    head, *parts = gid.split(";")
    items = dict(p.split("=", 1) for p in parts)
    along = items.pop("along")
    return head.removeprefix("law:"), along, {k: float(v) for k, v in items.items()}


def law_text(fit) -> str:
    """Short legend text for a fitted law: its formula with the fitted constants."""
    form = fit.form
    parts = ", ".join(f"{p}={fit.params[p]:.3g}" for p in form.params)
    return marked(fit, f"{form.title}: {parts}")


def unidentified(fit) -> bool:
    """Whether the law's runs were judged and do not identify it (``lmscale.laws.identification``)."""
    return getattr(fit, "identified", None) is False


def marked(fit, text: str) -> str:
    """``text`` + :data:`NOT_IDENTIFIED` when the runs do not identify ``fit``."""
    return text + NOT_IDENTIFIED if unidentified(fit) else text


def line_style(fit) -> str:
    """Solid for an identified (or unjudged) law, dashed for one its runs do not identify."""
    return "--" if unidentified(fit) else "-"


def size_colors(values: Sequence[float]):
    """(colour per value, ScalarMappable) on a log colour scale: bigger models brighter."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    v = np.asarray(values, dtype=float)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    if hi <= lo:
        hi = lo * 1.01
    norm = LogNorm(vmin=lo, vmax=hi)
    cmap = matplotlib.colormaps[SIZE_CMAP]
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    return [cmap(norm(x)) for x in v], mappable
