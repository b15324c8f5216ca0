"""``lmscale laws``: the catalog of published laws and the public result datasets."""

from __future__ import annotations

import argparse
from typing import Any

from lmscale.cli._common import HelpFormatter, add_parser, print_json

LAWS_DESCRIPTION = """\
Published scaling laws and public results, ready to plan with or fit against.

  lmscale laws list        the published law sets (lmscale plan --law NAME)
  lmscale laws show NAME   every law of a set: parameters, intervals, where printed
  lmscale laws datasets    public result tables (lmscale.datasets.load(NAME))

Each law set is the same object a fit produces (same JSON), so
'lmscale laws show kaplan2020 --json > k.json' gives a file that
'lmscale plan --law k.json' accepts. Constants printed per PF-day by [K]
are stored in FLOPs (1 PF-day = 8.64e19 FLOPs).

Examples:
  lmscale laws list
  lmscale laws show hoffmann2022
  lmscale laws show besiroglu2024 --json
  LMSCALE_DATA=../shared/data lmscale laws datasets
"""


def register(sub: Any) -> None:
    parser = add_parser(sub, "laws", "published laws and public result datasets", LAWS_DESCRIPTION)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    actions = parser.add_subparsers(dest="laws_command", metavar="ACTION")

    p = actions.add_parser("list", help="the published law sets", formatter_class=HelpFormatter,
                           description="List the published law sets of the catalog.\n\n"
                                       "Example:\n  lmscale laws list --json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_list)

    s = actions.add_parser("show", help="one law set in full", formatter_class=HelpFormatter,
                           description="Print a law set: each law's form, equation, parameters (with "
                                       "standard errors and intervals where published) and the "
                                       "extras such as [K] table 6's allocation.\n\n"
                                       "Examples:\n  lmscale laws show kaplan2020\n"
                                       "  lmscale laws show my_fit.json --json")
    s.add_argument("name", help="catalog name (see 'lmscale laws list') or a fit JSON file")
    s.add_argument("--json", action="store_true", help="print the LawSet JSON")
    s.set_defaults(func=_show)

    d = actions.add_parser("datasets", help="public result tables", formatter_class=HelpFormatter,
                           description="List the public result datasets with their source, commit, "
                                       "SHA-256, licence and whether the file was found (in "
                                       "$LMSCALE_DATA or the download cache).\n\n"
                                       "Example:\n  LMSCALE_DATA=../shared/data lmscale laws datasets --json")
    d.add_argument("--data-dir", help="a folder to look in before $LMSCALE_DATA")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_datasets)


def _list(args: argparse.Namespace) -> int:
    from lmscale.laws import catalog

    rows = catalog.describe()
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['source']}")
        print(f"{'':<{width}}  laws: {', '.join(r['laws'])}"
              + (f"; extras: {', '.join(r['extras'])}" if r["extras"] else ""))
    return 0


def _show(args: argparse.Namespace) -> int:
    from lmscale.laws import catalog

    laws = catalog.resolve(args.name)
    if args.json:
        print_json(laws.to_dict())
        return 0
    print(f"{laws.name}  ({laws.source})")
    if laws.notes.get("title"):
        print(f"{laws.notes['title']}  {laws.notes.get('url', '')}".rstrip())
    for fit in laws.laws.values():
        print()
        print(fit.summary())
        for key in ("where", "published_in_pf_days", "ci_method"):
            if fit.notes.get(key):
                value = fit.notes[key]
                text = ", ".join(f"{k} = {v}" for k, v in value.items()) if isinstance(value, dict) else value
                print(f"  {key.replace('_', ' ')}: {text}")
    alloc = laws.extras.get("allocation")
    if isinstance(alloc, dict) and alloc.get("relations"):
        print(f"\nallocation ({alloc.get('where', 'extras')}):")
        for key, rel in alloc["relations"].items():
            units = f"  [{rel['units']}]" if rel.get("units") else ""
            print(f"  {key} = {rel['coef']:g} (C / {alloc.get('C_unit', 'FLOP')})^{rel['exponent']:g}{units}")
        if alloc.get("D_convention"):
            print(f"  D convention: {alloc['D_convention']}")
    for key, value in (laws.extras.get("published") or {}).items():
        where = f"  ({value['where']})" if isinstance(value, dict) and "where" in value else ""
        shown = {k: v for k, v in value.items() if k != "where"} if isinstance(value, dict) else value
        text = str(shown)
        print(f"\npublished {key}{where}:\n  {text if len(text) < 300 else text[:297] + '...'}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from lmscale.laws import datasets

    rows = datasets.describe(args.data_dir)
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']}  ({r['rows']} rows, licence: {r['licence']})")
        print(f"  {r['description']}")
        print(f"  source: {r['source_url']}")
        print(f"  sha256: {r['sha256']}")
        print(f"  cite:   {r['citation']}")
        print(f"  file:   {r['found'] or r['file'] + ' (not found; set LMSCALE_DATA)'}")
    return 0
