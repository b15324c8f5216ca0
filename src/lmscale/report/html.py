"""The report page: one self-contained HTML file (inline CSS, no script, no network).

Every string that comes from the user or the store (run ids, group names,
paths, distribution names, messages) goes through :func:`esc`
(``html.escape``); numbers go through :func:`num`.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from lmscale import __version__
from lmscale.accounting import PF_DAY
from lmscale.store.provenance import Provenance

#: Columns of the run table: (store column, heading).
RUN_COLUMNS = (
    ("run_id", "run"), ("group", "group"), ("rule", "rule"), ("status", "status"),
    ("architecture", "arch."), ("n_layer", "layers"), ("d_model", "d_model"), ("n_head", "heads"),
    ("non_embedding_params", "N (formula)"), ("exact_non_embedding_params", "N (exact)"),
    ("embedding_params", "embedding params"), ("tokens", "tokens"), ("dataset_tokens", "dataset tokens"),
    ("batch_tokens", "batch (tokens)"), ("lr", "peak lr"), ("steps", "steps"), ("precision", "precision"),
    ("final_loss", "final loss"), ("best_test_loss", "best loss"), ("wall_time_s", "wall time (s)"),
    ("error", "error"), ("source", "from"),
)


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant digits; an em dash when missing."""
    if value is None:
        return "&mdash;"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if not math.isfinite(x):
        return "&mdash;"
    if x == int(x) and abs(x) < 1e6:
        return f"{int(x)}"
    return f"{x:.{digits}g}"


def css() -> str:
    return resources.files("lmscale.report").joinpath("report.css").read_text(encoding="utf-8")


def image_src(path: Path, out_dir: Path, embed: bool) -> str:
    """A data URI of the PNG (``embed``) or its path relative to the page."""
    if embed:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return path.relative_to(out_dir).as_posix()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "",
          row_attrs: Sequence[str] | None = None) -> str:
    """An HTML table; cells are already-rendered HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        extra = f" {row_attrs[i]}" if row_attrs else ""
        body.append(f"<tr{extra}>" + "".join(row) + "</tr>")
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def td(text: str, numeric: bool = False) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


# ---------------------------------------------------------------------------
# The law table
# ---------------------------------------------------------------------------


def param_value(fit: Any, name: str) -> str:
    """``value [lo, hi]`` with units that need a note (FLOPs also in PF-days)."""
    value = fit.params[name]
    text = f"<code>{esc(name)}</code> = {num(value)}"
    if fit.ci and fit.ci.get(name):
        lo, hi = fit.ci[name]
        text += f' <span class="ci">[{num(lo)}, {num(hi)}]</span>'
    unit = str(fit.form.units.get(name, ""))
    if unit.startswith("FLOPs") and math.isfinite(value):
        text += f' <span class="ci">({num(value / PF_DAY, 3)} PF-days)</span>'
    return text


def params_cell(fit: Any, needs: str | None = None) -> str:
    """The parameters with their intervals; a law its runs do not identify shows why instead."""
    from lmscale.laws.identification import edge_note

    edge = edge_note(fit.identification)
    if fit.identified is False:
        values = "".join(f"<li><code>{esc(p)}</code> = {num(fit.params[p])}</li>" for p in fit.form.params)
        why = "".join(f"<li>{esc(f)}</li>" for f in [*fit.identification.get("failures", []), *([edge] if edge else [])])
        more = f'<br><span class="note">would need: {esc(needs)}</span>' if needs else ""
        return (f'<strong class="bad">not identified</strong> by its runs (intervals not shown)'
                f'<ul class="params">{values}</ul><ul class="note">{why}</ul>{more}')
    items = "".join(f"<li>{param_value(fit, p)}</li>" for p in fit.form.params)
    return f'<ul class="params">{items}</ul>' + (f'<span class="note">identified, {esc(edge)}</span>' if edge else "")


def published_for(key: str, law: str, published: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(law-set name, FitResult) of each published set that has this law."""
    return [(name, laws.laws[key]) for name, laws in published.items() if key in laws.laws]


def fit_rows(fits: Any, published: Mapping[str, Any]) -> tuple[list[list[str]], list[str]]:
    from lmscale.laws.study.results import needs_for

    rows, attrs = [], []
    for key, fit in fits.laws.laws.items():
        form = fit.form
        law_cell = (f"<strong>{esc(form.title)}</strong><br><code>{esc(key)}</code><br>"
                    f'<span class="note">{esc(form.formula)}<br>{esc(form.equation)}</span>')
        pubs = published_for(key, fit.law, published)
        pub_cell = "<br>".join(f'<span class="note">{esc(n)}</span>{params_cell(p)}' for n, p in pubs) \
            or '<span class="note">none published</span>'
        stats = fit.stats or {}
        quality = [f"{fit.n_points} points"]
        for k, lab in (("r2", "R<sup>2</sup> (log)"), ("rmse_log", "RMSE (log)")):
            if isinstance(stats.get(k), int | float):
                quality.append(f"{lab} {num(stats[k], 3)}")
        if stats.get("n_bootstrap"):
            quality.append(f"{int(stats['n_bootstrap'])} bootstrap fits ({esc(stats.get('bootstrap_unit', ''))})")
        rule = fits.rules.get(key, "")
        rows.append([td(law_cell), td(params_cell(fit, needs_for(key))), td(pub_cell),
                     f'<td class="fitq">{"<br>".join(quality)}</td>', td(esc(rule))])
        attrs.append(f'data-law="{esc(key)}"')
    return rows, attrs


def laws_section(fits: Any, published: Mapping[str, Any]) -> str:
    parts = ['<h2 id="laws">Fitted laws</h2>']
    if fits.laws.laws:
        rows, attrs = fit_rows(fits, published)
        from lmscale.laws.identification import RULE

        parts.append(
            '<p class="note">Each law fitted to this study, with its 95% bootstrap interval in '
            "brackets where a bootstrap was run, beside the published values of the papers (constants "
            "in FLOPs are also shown in PF-days, 1 PF-day = 8.64e19 FLOPs). A law is shown with "
            f"intervals only when its runs identify it: {esc(RULE)}; the others say why and which "
            "runs would identify them.</p>"
        )
        parts.append('<div class="wide">' + table(["law", "this study (95% interval)", "published", "fit",
                                                    "points used"], rows, 'id="fits" class="fits"', attrs)
                     + "</div>")
    else:
        parts.append('<p id="fits-none">No law could be fitted from this study\'s runs.</p>')
    if fits.missing:
        parts.append('<h3 id="not-fitted">Laws not fitted</h3>')
        rows = [[td(f"<code>{esc(k)}</code>"), td(esc(why))] for k, why in fits.missing.items()]
        parts.append(table(["law", "why (the runs it would need)"], rows, 'id="missing-laws"'))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Held-out check, frontier exponents
# ---------------------------------------------------------------------------


def holdout_card(fits: Any) -> str:
    h = fits.holdout
    if h is None:
        why = esc(fits.missing.get("holdout", "it needs a fitted L(N) on at least 3 smaller models"))
        return f'<div class="card" id="holdout">Held-out check not run: {why}.</div>'
    rel = h.rel_error
    cls = "good" if abs(rel) <= 0.02 else "bad"
    ci = (f" (95% interval [{num(h.predicted_ci[0])}, {num(h.predicted_ci[1])}])"
          if getattr(h, "predicted_ci", None) else "")
    return (
        f'<div class="card" id="holdout"><strong>Held-out check.</strong> The largest model '
        f"(<code>{esc(h.run_id)}</code>, N = {num(h.N)}) has loss {num(h.loss)} nats/token; "
        f"{esc(h.law)} fitted on the other {h.n_fit} points predicts {num(h.predicted)}{ci}: "
        f'relative error <span class="{cls}">{rel * 100:+.2f}%</span>.</div>'
    )


def checks_section(fits: Any) -> str:
    """The consistency checks and the extrapolated crossing, one line each."""
    lines = fits.check_lines() if hasattr(fits, "check_lines") else []
    other = (getattr(fits, "checks", None) or {}).get("other_accounting")
    table_html = ""
    if other and other.get("values"):
        rows = [[td(f"<code>{esc(k)}</code>"), td(num(v["this"], 4), True), td(num(v["other"], 4), True),
                 td(f"{(v['other'] / v['this'] - 1) * 100:+.1f}%" if v["this"] else "&mdash;", True)]
                for k, v in other["values"].items()]
        table_html = ("<p class=\"note\">The compute laws and frontiers fitted with each count of "
                      "training FLOPs (the exponent; C = 6N ignores the attention and logits terms "
                      "that dominate small models).</p>"
                      + table(["law or frontier", f"with {esc(fits.flops)}", f"with {esc(other['flops'])}",
                               "difference"], rows, 'id="accounting-table"'))
    if not lines and not table_html:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<h3 id="checks">Checks and extrapolations</h3><ul id="checks-list">{items}</ul>{table_html}'



def exponents_section(fits: Any) -> str:
    rows = []
    for name, row in (getattr(fits, "exponents", None) or {}).items():
        ci = row.get("ci")
        if row.get("identified", True):
            a_text = num(row.get("a"), 3) + (f' <span class="ci">[{num(ci[0], 3)}, {num(ci[1], 3)}]</span>'
                                             if ci else "")
            if row.get("note"):
                a_text += f'<br><span class="note">{esc(row["note"])}</span>'
        else:
            a_text = f'<span class="bad">not identified</span><br><span class="note">{esc(row.get("why"))}</span>'
        rows.append([td(esc(name)), td(esc(row.get("compute", "C"))), td(a_text, True),
                     td(num(row.get("b"), 3) if row.get("identified", True) else "&mdash;", True),
                     td(num(row.get("published"), 3), True), td(esc(row.get("how", "")))])
    if not rows:
        return ""
    return ('<h3 id="exponents">Compute-optimal exponents, three ways</h3>'
            '<p class="note">N_opt &prop; C<sup>a</sup>, D_opt &prop; C<sup>b</sup> ([H] section 3).</p>'
            + table(["approach", "fitted in", "a", "b", "published a", "how"], rows, 'id="exponents-table"'))


# ---------------------------------------------------------------------------
# Figures, method, runs
# ---------------------------------------------------------------------------


def figures_section(outcomes: Sequence[Any], out_dir: Path, embed: bool) -> str:
    drawn = [o for o in outcomes if o.drawn]
    parts = ['<h2 id="figures">Figures</h2>']
    for o in drawn:
        spec = o.spec
        src = image_src(o.paths["png"], out_dir, embed)
        svg = o.paths["svg"].relative_to(out_dir).as_posix()
        parts.append(
            f'<figure id="{esc(spec.key)}"><h3>{esc(spec.title)} <span class="muted">({esc(spec.paper)})</span></h3>'
            f'<img src="{src}" alt="{esc(spec.title)}">'
            f'<figcaption>{esc(spec.caption)} <a href="{esc(svg)}">SVG</a></figcaption></figure>'
        )
    skipped = [o for o in outcomes if not o.drawn]
    if skipped:
        parts.append('<h3 id="figures-not-drawn">Figures not drawn</h3>')
        rows = []
        for o in skipped:
            why = "; ".join(o.missing) if o.missing else f"could not be drawn: {o.error}"
            rows.append([td(f"{esc(o.spec.title)}<br><span class=\"note\">{esc(o.spec.paper)}</span>"),
                         td(esc(why)), td(esc(o.spec.needs))])
        parts.append(table(["figure", "missing", "runs it needs"], rows, 'id="missing-figures"'))
    return "\n".join(parts)


def method_section(fits: Any, options: Mapping[str, Any]) -> str:
    items = [f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in fits.rules.items()]
    acc = [f"<li><strong>{esc(k)}</strong>: {esc(v)}</li>" for k, v in fits.accounting.items()]
    opts = [f"<li><strong>{esc(k)}</strong>: {esc(v)}</li>" for k, v in options.items()]
    return (
        '<h2 id="method">How the numbers were computed</h2>'
        "<h3>Which runs each law was fitted on</h3>"
        f"<ul>{''.join(items) or '<li>no law fitted</li>'}</ul>"
        "<h3>Accounting</h3>"
        f"<ul>{''.join(acc)}</ul>"
        "<h3>Fitting</h3>"
        f"<ul>{''.join(opts)}</ul>"
    )


def runs_section(runs: pd.DataFrame) -> str:
    if runs.empty:
        return '<h2 id="runs">Runs</h2><p>The store has no runs.</p>'
    cols = [(c, h) for c, h in RUN_COLUMNS if c in runs]
    text_cols = {"run_id", "group", "rule", "status", "architecture", "precision", "error"}
    rows = []
    for rec in runs.to_dict("records"):
        row = []
        for c, _ in cols:
            v = rec.get(c)
            if c == "source":  # where the run came from: trained here, or the tracker and run it was read from
                row.append(td(esc(Provenance.describe(rec, with_uri=False))))  # the URIs are listed above
            elif c in text_cols:
                missing = v is None or (isinstance(v, float) and math.isnan(v))
                text = "" if missing else esc(v)
                cell = f'<td class="status-{esc(v)}">{text}</td>' if c == "status" else td(text)
                row.append(cell)
            else:
                row.append(td(num(v), True))
        rows.append(row)
    counts = runs["status"].value_counts().to_dict() if "status" in runs else {}
    summary = ", ".join(f"{n} {esc(s)}" for s, n in counts.items())
    if "source" in runs:
        where = runs["source"].fillna("trained")
        if "source_uri" in runs:
            uri = runs["source_uri"].where(runs["source_uri"].notna(), "")
            where = where.where(uri == "", where + " " + uri.astype(str))
        summary += "; " + ", ".join(f"{n} {'trained by lmscale' if s == 'trained' else 'from ' + esc(s)}"
                                    for s, n in where.value_counts().items())
    runs_table = table([h for _, h in cols], rows, 'id="runs-table"')
    return (f'<h2 id="runs">Runs</h2><p class="note">{len(runs)} runs: {summary}.</p>'
            f'<div class="scroll">{runs_table}</div>')


def page(title: str, source: str, body: Sequence[str]) -> str:
    nav = ("<nav><ul><li><a href=\"#laws\">fitted laws</a></li><li><a href=\"#figures\">figures</a></li>"
           "<li><a href=\"#method\">method</a></li><li><a href=\"#runs\">runs</a></li></ul></nav>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"generator\" content=\"lmscale {esc(__version__)}\">"
        f"<title>{esc(title)}</title><style>{css()}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p class=\"muted\">results store <code>{esc(source)}</code>; "
        f"lmscale {esc(__version__)}; laws of Kaplan et al. 2020 [K] and Hoffmann et al. 2022 [H]</p>"
        f"{nav}</header><main>{''.join(body)}</main></body></html>\n"
    )
