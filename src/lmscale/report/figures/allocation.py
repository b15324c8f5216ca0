"""Compute-optimal allocation: N_opt and D_opt against C_min ([K] figure 14), the
contradiction ([K] figure 15), and the exponent a of N_opt ~ C^a three ways ([H] table 2)."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from lmscale.errors import LmscaleError
from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing, has_fit, why_missing

#: [K] table 6 and [H] table 2: the published exponent a of N_opt ~ C^a.
PUBLISHED_A = {"[K] table 6": 0.73, "[H] approach 1": 0.50, "[H] approach 2": 0.49, "[H] approach 3": 0.46}


def _allocation(fits: Any) -> dict[str, Any] | None:
    alloc = fits.laws.extras.get("allocation") if fits is not None else None
    return alloc if isinstance(alloc, dict) and alloc.get("relations") else None


def _paper():
    from lmscale.laws import catalog

    return catalog.load("kaplan2020")


def draw_optimal_sizes(frames: Any, fits: Any):
    from lmscale.laws.planner import allocation_relation, has_relation

    alloc = _allocation(fits)
    if alloc is None or not (has_relation(fits.laws, "N_opt") and has_relation(fits.laws, "D_opt")):
        raise Missing(why_missing(fits, "allocation", "N_opt(C) and D_opt(C)"))
    method = alloc.get("method", "envelope")
    compute = "C_min" if method == "envelope_cmin" else "C"
    found = fits.frontiers.get(method)
    front = found.points if found is not None else None
    if front is not None and "status" in front:
        front = front[front["status"] == "ok"]
    fig, (ax_n, ax_d) = style.new_figure(ncols=2)
    c_values = front["C"] if front is not None and not front.empty else None
    grid = style.log_grid(c_values if c_values is not None else [1e12, 1e16])
    paper = _paper()
    for ax, key, label in ((ax_n, "N_opt", "N"), (ax_d, "D_opt", "D")):
        if front is not None and not front.empty:
            edge = front["censored"].astype(bool) if "censored" in front else np.zeros(len(front), dtype=bool)
            ax.plot(front["C"][~edge], front[key][~edge], "o", color="#1f4e79", ms=3,
                    label=f"lowest loss at each {compute} (the winning run)")
            if edge.any():
                ax.plot(front["C"][edge], front[key][edge], "o", color="#1f4e79", mfc="none", ms=3,
                        label="won by the smallest or largest size trained: not fitted")
        rel = alloc["relations"][key]
        (line,) = ax.plot(grid, np.asarray(allocation_relation(fits.laws, key, grid), dtype=float), "-",
                          color=style.FIT_COLOR, label=f"fitted in {compute}: {key} ~ {compute}^{rel['exponent']:.2f}")
        line.set_gid(style.law_gid(f"allocation.{key}", compute))
        published = paper.extras["allocation"]["relations"][key]["exponent"]
        ax.plot([], [], " ", label=f"[K] table 6: {key} ~ C_min^{published:g}")
        style.label(ax, compute, "N" if label == "N" else "D")
        ax.set_ylabel("N_opt, non-embedding parameters" if label == "N" else
                      "D_opt, tokens" + (" (E_min = C_min / 6 N_opt)" if compute == "C_min" else ""))
        ax.legend(loc="best")
    ax_n.set_title(f"compute-optimal model size, in {compute}")
    ax_d.set_title(f"compute-optimal data, in {compute}")
    return fig


def draw_contradiction(frames: Any, fits: Any):
    from lmscale.laws.contradiction import crossing
    from lmscale.laws.planner import allocation_relation, has_relation

    needs = [why_missing(fits, k, t) for k, t in (("kaplan_cmin", "L(C_min)"), ("kaplan_d", "L(D)"))
             if not has_fit(fits, k)]
    if fits is None or not has_relation(fits.laws, "D_opt"):
        needs.append(why_missing(fits, "allocation", "D_opt(C)"))
    if needs:
        raise Missing(*needs)
    cross = getattr(fits, "crossing", None)
    if cross is None:
        try:
            cross = crossing(fits.laws)
        except LmscaleError as exc:
            raise Missing(f"the study's L(C_min) and L(D_opt(C_min)) do not cross: {exc}") from None
    paper = _paper()
    paper_cross = crossing(paper)
    unidentified = cross.identification()  # then no point is placed: the curves and the reason only
    fig, (ax,) = style.new_figure(width=6.0, height=4.0)
    study_c = fits.points["kaplan_cmin"]["C_min"]
    shown = [paper_cross.C_star] + ([] if unidentified else [cross.C_star])
    lo = min(float(study_c.min()), *shown) / 10.0
    hi = max(float(study_c.max()), *shown) * 100.0
    grid = np.logspace(np.log10(lo), np.log10(hi), 300)
    for laws, color, who, tag in ((fits.laws, style.FIT_COLOR, "this study", ""),
                                  (paper, style.PAPER_COLOR, "[K]", "@kaplan2020")):
        cmin, data = laws.get("kaplan_cmin"), laws.get("kaplan_d")
        style.law_line(ax, cmin, f"kaplan_cmin{tag}", grid, along="C_min", color=color,
                       label=f"{who}: L(C_min)")
        d_opt = np.asarray(allocation_relation(laws, "D_opt", grid), dtype=float)
        y = np.asarray(data.predict(D=d_opt), dtype=float)
        (line,) = ax.plot(grid, y, "--", color=color, label=f"{who}: L(D_opt(C_min)), data-limited")
        line.set_gid(style.law_gid(f"kaplan_d(D_opt){tag}", "C_min"))
    if cross.ci and "C_star" in cross.ci and not unidentified:
        lo_c, hi_c = cross.ci["C_star"]  # a percentile interval need not hold the point estimate
        ax.plot([lo_c, hi_c], [cross.L_star, cross.L_star], "-|", color=style.FIT_COLOR, lw=1, ms=6, zorder=5)
    if cross.data_max:
        ax.axvline(cross.data_max, color="#1f4e79", ls=":", lw=1)
        ax.text(cross.data_max, ax.get_ylim()[1], " largest C_min fitted", fontsize=6.5, color="#1f4e79",
                va="top")
    if unidentified:
        ax.text(0.98, 0.86, "this study's crossing: not identified\n" + unidentified.replace("C_star", "C*"),
                transform=ax.transAxes, fontsize=7, color=style.FIT_COLOR, ha="right", va="top")
    marked = ((paper_cross, style.PAPER_COLOR, "[K]", -6, "right"),) if unidentified else (
        (cross, style.FIT_COLOR, "study", 6, "left"), (paper_cross, style.PAPER_COLOR, "[K]", -6, "right"))
    for c, color, who, dx, ha in marked:
        ax.plot([c.C_star], [c.L_star], "o", color=color, ms=7, mfc="white", zorder=5)
        text = f"{who}: C* = {c.C_star:.2g} FLOPs\nL* = {c.L_star:.3g}"
        if c is cross and c.ci:
            text += f"\n95%: [{c.ci['C_star'][0]:.2g}, {c.ci['C_star'][1]:.2g}]"
        if c is cross and c.decades_beyond is not None and c.decades_beyond > 0:
            text += f"\n{c.decades_beyond:.1f} decades beyond the data"
        ax.annotate(text, (c.C_star, c.L_star), textcoords="offset points", xytext=(dx, 8), ha=ha,
                    fontsize=7, color=color)
    ax.plot(fits.points["kaplan_cmin"]["C_min"], fits.points["kaplan_cmin"]["loss"], "o", color="#1f4e79",
            ms=3, label="study's frontier points")
    style.label(ax, "C_min", "loss")
    ax.set_title("where the compute frontier meets the data wall ([K] 6.3)")
    ax.legend(loc="lower left", fontsize=7)
    return fig


def draw_exponents(frames: Any, fits: Any):
    rows = {k: v for k, v in (fits.exponents if fits is not None else {}).items() if v.get("a") is not None
            and v.get("identified", True)}
    if not rows:
        raise Missing(why_missing(fits, "allocation", "compute-optimal exponents"),
                      *(f"{k}: a not identified ({v.get('why')})" for k, v in
                        (fits.exponents if fits is not None else {}).items()))
    fig, (ax,) = style.new_figure(width=6.0, height=3.4)
    names = list(rows)
    y = np.arange(len(names))
    for i, name in enumerate(names):
        row = rows[name]
        a = float(row["a"])
        ci = row.get("ci")
        xerr = None if not ci else [[a - float(ci[0])], [float(ci[1]) - a]]
        ax.errorbar([a], [i], xerr=xerr, fmt="o", color=style.FIT_COLOR, capsize=3,
                    label="this study (95% interval)" if i == 0 else "_nolegend_")
        if row.get("published") is not None:
            ax.plot([row["published"]], [i], "D", color=style.PAPER_COLOR, ms=6, mfc="white",
                    label="published" if i == 0 else "_nolegend_")
    ax.axvline(PUBLISHED_A["[K] table 6"], color=style.PAPER_COLOR, ls=":", lw=1)
    ax.text(PUBLISHED_A["[K] table 6"], -0.5, " [K] 0.73", fontsize=7, color=style.PAPER_COLOR)
    ax.axvline(0.5, color=style.PAPER_COLOR, ls=":", lw=1)
    ax.text(0.5, -0.5, " [H] ~0.5", fontsize=7, color=style.PAPER_COLOR)
    ax.set_yticks(y, [textwrap.fill(n, 22) for n in names])
    ax.set_ylim(-0.6, len(names) - 0.2)
    hidden = [k for k, v in fits.exponents.items() if not v.get("identified", True)]
    if hidden:
        ax.text(0.01, 0.01, "not identified (not drawn): " + "; ".join(hidden), transform=ax.transAxes,
                fontsize=6.5, color="#555555")
    ax.set_xlabel("exponent a of N_opt ~ C^a or C_min^a (dimensionless)")
    ax.set_ylabel("approach ([H] section 3)")
    ax.set_title("N_opt ~ C^a: the exponent a by approach")
    ax.legend(loc="lower right")
    ax.invert_yaxis()
    return fig


FIGURES = (
    FigureSpec(
        key="fig14_optimal_size",
        title="Compute-optimal model size and data against compute",
        paper="[K] figure 14, table 6",
        caption=(
            "The runs on the compute-efficient frontier (the lowest loss reached at each compute, "
            "the winner changing only where a larger model overtakes) and the power laws N_opt and "
            "D_opt fitted to them, in C_min = C / (1 + B / B_crit(L)) as [K] table 6 (N_opt = "
            "1.3e9 C_min^0.73, D_opt = 2e10 C_min^0.27 with C_min in PF-days); the axis names what "
            "was fitted (C when the study has no B_crit(L))."
        ),
        needs="learning curves of 3 or more model sizes spanning the compute range",
        draw=draw_optimal_sizes,
    ),
    FigureSpec(
        key="fig15_contradiction",
        title="The contradiction: the compute frontier meets the data wall",
        paper="[K] figure 15, section 6.3",
        caption=(
            "L(C_min) along the compute-efficient frontier (solid) falls faster than L(D) allows "
            "for the data the frontier uses, D_opt(C_min) (dashed); past the crossing C* the "
            "frontier would beat what its data permits. The study's laws in colour with the 95% "
            "interval of C* (bootstrap of the three fits) and how far beyond the largest C_min "
            "fitted (dotted) it lies; [K]'s in grey."
        ),
        needs="L(C_min), L(D) and the D_opt(C) frontier",
        draw=draw_contradiction,
    ),
    FigureSpec(
        key="fig16_exponents",
        title="Compute-optimal exponents, three ways",
        paper="[H] table 2 and section 3",
        caption=(
            "The exponent a of N_opt ~ C^a from the envelope of learning curves (approach 1), "
            "IsoFLOP parabolas (approach 2) and the parametric fit of L(N, D) (approach 3), in C, "
            "and [K]'s envelope in C_min, with 95% intervals, beside the published values ([H]: "
            "0.50, 0.49, 0.46; [K]: 0.73). Exponents the runs do not identify are listed, not drawn."
        ),
        needs="learning curves for approach 1, IsoFLOP groups for approach 2, an L(N, D) grid for approach 3",
        draw=draw_exponents,
    ),
)
