"""``lmscale plan``: compute-optimal model size, data and cost from a law set."""

from __future__ import annotations

import argparse
import re
from typing import Any

from lmscale.cli._common import add_parser, print_json
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Decide before training: for a compute budget, a model size or a target
loss, what a law set says to train, and what it costs.

Give exactly one of --compute (FLOPs, or PF-days with --unit pf-day),
--params (non-embedding parameters N) or --loss (nats/token), and a law
set: a catalog name ('lmscale laws list') or a fit JSON file. The plan
gives N_opt, D_opt, tokens per parameter, the predicted loss, B_crit and
S_min where the set has them, the band of model sizes that cost at most
20% more compute, the overfitting check ([K] eq. 4.4 and delta_L), a
Transformer shape with [K]'s learning rate, and the wall time on a device
(peak FLOP/s x MFU). Every number says how it was computed ("method").

Several laws side by side (--law a,b,c) make the disagreement visible:
[K] (table 6: N ~ C^0.73) spends a budget on a much larger model trained
on fewer tokens than [H] (N ~ C^0.46-0.50).

For a [K] law set, C is C_min (the compute at a batch far below
critical, [K] eq. 5.5): the allocation is [K] table 6 and the loss is
L(C_min); training at B = B_crit costs about 2x C_min (C_train).

--contradiction finds where L(C_min) meets the loss the data growth
D_opt(C_min) allows, L(D) ([K] section 6.3): C*, N*, D*, L*.

Plans with error bars: with a fit saved with bootstrap draws ('lmscale fit
--bootstrap K --out fit.json') or a forecast ('lmscale fit --audit --out',
'lmscale predict --save'), the plan repeats the allocation for every draw
and gives 80% and 95% intervals of N_opt, D_opt and the loss (a forecast's
loss interval adds its extrapolation error calibrated on validation cuts),
and warns when the budget lies far beyond the fitted data. --intervals
makes them required (exit 2 for a fit without draws).

Examples:
  lmscale plan --compute 5.76e23 --law hoffmann2022
  lmscale plan --compute 1 --unit pf-day --law kaplan2020 --json
  lmscale plan --compute 1e22 --law kaplan2020,hoffmann2022,besiroglu2024
  lmscale plan --params 7e9 --law hoffmann2022 --device a100 --devices 64 --mfu 0.45
  lmscale plan --loss 2.0 --law besiroglu2024
  lmscale plan --compute 1e22 --law muennighoff2023 --unique-tokens 1e11
  lmscale plan --compute 1e20 --law my_fit.json --require bcrit
  lmscale plan --contradiction --law kaplan2020
  lmscale plan --compute 1e22 --law forecast.json --intervals
"""

UNITS = {"flop": 1.0, "pf-day": 8.64e19}


def register(sub: Any) -> None:
    from lmscale.laws.plan_options import DEVICES, REQUIRABLE, PlanOptions

    defaults = PlanOptions()
    p = add_parser(sub, "plan", "compute-optimal N, D, batch and cost for a budget", DESCRIPTION)
    # let "--compute -5e20" reach the validation (a clear message) instead of reading as a flag
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$", re.IGNORECASE)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--compute", type=float, metavar="C", help="compute budget (FLOPs, see --unit)")
    what.add_argument("--params", type=float, metavar="N", help="model size: non-embedding parameters")
    what.add_argument("--loss", type=float, metavar="L", help="target loss in nats/token")
    what.add_argument("--contradiction", action="store_true",
                      help="the L(C_min) / L(D(C_min)) crossing of [K] 6.3 instead of a plan")
    p.add_argument("--unit", choices=sorted(UNITS), default="flop", help="unit of --compute")
    p.add_argument("--law", default="hoffmann2022",
                   help="catalog name(s) or fit JSON file(s), comma-separated for a comparison")
    p.add_argument("--unique-tokens", type=float, metavar="U",
                   help="unique tokens available: plan with the data-constrained law (muennighoff2023)")
    p.add_argument("--device", choices=list(DEVICES), default=defaults.device,
                   help="accelerator preset (dense bf16/fp16 peak) for the wall time")
    p.add_argument("--peak-flops", type=float, help="peak FLOP/s of one device (overrides the preset)")
    p.add_argument("--mfu", type=float, default=defaults.mfu, help="model FLOPs utilisation, in (0, 1]")
    p.add_argument("--devices", type=int, default=defaults.n_devices, help="devices in parallel")
    p.add_argument("--overhead", type=float, default=defaults.overhead,
                   help="extra compute allowed for the band of model sizes")
    p.add_argument("--n-ctx", type=int, default=defaults.n_ctx, help="context length of the shape")
    p.add_argument("--n-vocab", type=int, default=defaults.n_vocab, help="vocabulary of the shape")
    p.add_argument("--require", default="", metavar="ITEMS",
                   help=f"comma-separated items that must be computed, else exit 2: {', '.join(REQUIRABLE)}")
    p.add_argument("--intervals", action="store_true",
                   help="require 80%%/95%% intervals from the fit's bootstrap draws (exit 2 without draws)")
    p.add_argument("--json", action="store_true", help="print JSON (a list for several laws)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmscale.laws.contradiction import crossing
    from lmscale.laws.planner import PlanOptions, plan

    laws = [name.strip() for name in args.law.split(",") if name.strip()]
    if not laws:
        raise LmscaleError("--law: give a catalog name or a fit JSON file")
    if args.contradiction:
        results = [crossing(law).to_dict() for law in laws]
        if args.json:
            print_json(results[0] if len(results) == 1 else results)
        else:
            print("\n\n".join(_crossing_text(r) for r in results))
        return 0
    if args.compute is None and args.params is None and args.loss is None:
        raise LmscaleError("give one of --compute, --params or --loss (or --contradiction)")
    options = PlanOptions(
        device=args.device, peak_flops=args.peak_flops, mfu=args.mfu, n_devices=args.devices,
        overhead=args.overhead, unique_tokens=args.unique_tokens, n_ctx=args.n_ctx, n_vocab=args.n_vocab,
        require=tuple(r.strip().lower() for r in args.require.split(",") if r.strip()),
        intervals=True if args.intervals else None,
    )
    compute = None
    if args.compute is not None:
        if not args.compute > 0:
            raise LmscaleError(f"--compute = {args.compute:g}: expected a positive budget")
        compute = args.compute * UNITS[args.unit]
    plans = [plan(law, compute=compute, params=args.params, loss=args.loss, options=options).to_dict()
             for law in laws]
    for p in plans:
        p["inputs"]["unit"] = args.unit
        p["inputs"]["compute_given"] = args.compute
    if args.json:
        print_json(plans[0] if len(plans) == 1 else plans)
    else:
        print(_table(plans))
    return 0


def _g(x: Any, fmt: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return format(x, fmt) if isinstance(x, int | float) else str(x)


_ROWS = (
    ("C (FLOPs)", lambda p: _g(p["C"])),
    ("C (PF-days)", lambda p: _g(p["C_pf_days"])),
    ("N_opt (params)", lambda p: _g(p["N_opt"])),
    ("  80% / 95%", lambda p: _interval(p, "N_opt", ".3g")),
    ("  budget minima (95%)", lambda p: "-" if not p.get("budget_minima") else
        f"{p['budget_minima']['N_opt']:.3g}" + ("" if not p["budget_minima"]["N_opt_95"] else
                                                " [{:.3g}, {:.3g}]".format(*p["budget_minima"]["N_opt_95"]))),
    ("D_opt (tokens)", lambda p: _g(p["D_opt"])),
    ("  80% / 95% ", lambda p: _interval(p, "D_opt", ".3g")),
    ("tokens / param", lambda p: _g(p["tokens_per_param"], ".1f")),
    ("loss (nats/token)", lambda p: _g(p["loss"], ".4f")),
    ("  80% / 95%  ", lambda p: _interval(p, "loss", ".4f")),
    ("C_train = 6 N D", lambda p: _g(p["C_train"])),
    ("epochs of unique data", lambda p: _g(p["epochs"])),
    ("batch (tokens)", lambda p: _g(p["batch"])),
    ("B_crit (tokens)", lambda p: _g(p["B_crit"])),
    ("S_min (steps)", lambda p: _g(p["S_min"])),
    ("20% size band", lambda p: "-" if not p["size_band"] else
        f"{p['size_band']['ratio_low']:.2f}x-{p['size_band']['ratio_high']:.2f}x ({p['size_band']['law']})"),
    ("D >= 5e3 N^0.74", lambda p: f"{_g(p['overfitting']['rule_ok'])} (needs {_g(p['overfitting']['D_min_rule'])})"),
    ("delta_L (overfitting)", lambda p: _g(p["overfitting"].get("delta_L"), ".4f")),
    ("shape n_layer/d_model/n_head", lambda p: p["shape"].get("error", "")[:40] if "error" in p["shape"] else
        f"{p['shape']['n_layer']}/{p['shape']['d_model']}/{p['shape']['n_head']}"),
    ("learning rate [K] D.1", lambda p: _g(p["shape"].get("learning_rate"))
        + (" (floor: D.1 <= 0 past N ~ 1.2e10)" if p["shape"].get("learning_rate_clamped") else "")),
    ("wall time (days)", lambda p: _g(p["wall_time"]["days"])),
    ("device", lambda p: f"{p['wall_time']['n_devices']}x {p['wall_time']['device']}, MFU {p['wall_time']['mfu']:g}"),
)


#: Rows shown only where some plan has the key: what few law sets give.
_ONLY_WHERE_GIVEN = {"  budget minima (95%)": "budget_minima"}


def _interval(p: dict[str, Any], key: str, fmt: str) -> str:
    levels = (p.get("intervals") or {}).get("levels") or {}
    return " / ".join(f"[{format(v[key][0], fmt)}, {format(v[key][1], fmt)}]" for v in levels.values()
                      if key in v) or "-"


def _table(plans: list[dict[str, Any]]) -> str:
    header = ["", *(p["law"] for p in plans)]
    rows = [header] + [[label, *(get(p) for p in plans)] for label, get in _ROWS
                       if label not in _ONLY_WHERE_GIVEN or any(p.get(_ONLY_WHERE_GIVEN[label]) for p in plans)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for p in plans:
        lines += [f"warning ({p['law']}): {w}" for w in p.get("warnings", [])]
    for p in plans:
        lines.append(f"how ({p['law']}):")
        lines += [f"  {k}: {v}" for k, v in p["method"].items()]
        if p["loss_alternatives"]:
            lines += [f"  also: {k} = {v:.4f}" for k, v in p["loss_alternatives"].items()]
        if p["size_band"]:
            lines.append(f"  size band: {p['size_band']['method']}; {p['size_band']['reference']}")
    return "\n".join(lines)


def _crossing_text(r: dict[str, Any]) -> str:
    lines = [f"{r['law']}: where L(C_min) meets L(D_opt(C_min)) ([K] section 6.3)",
             f"  C* = {r['C_star']:.3g} FLOPs = {r['C_star_pf_days']:.3g} PF-days",
             f"  N* = {_g(r['N_star'])} parameters",
             f"  D* = {r['D_star']:.3g} tokens",
             f"  L* = {r['L_star']:.4f} nats/token"]
    lines += [f"  {k}: {v}" for k, v in r["formula"].items()]
    if r.get("published"):
        lines.append(f"  published: {r['published']}")
    return "\n".join(lines)
