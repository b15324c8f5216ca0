"""``lmscale sweep``: plan, run, inspect, export and import studies (thin over lmscale.sweeps/store)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmscale.cli._common import WHERE_HELP, add_parser, print_json

DESCRIPTION = """\
Run a study described by a TOML sweep file into one SQLite results store.

  lmscale sweep plan studies/smoke.toml             the runs, N, D, FLOPs, time estimate
  lmscale sweep run studies/smoke.toml --store smoke.sqlite
  lmscale sweep status --store smoke.sqlite         counts by status, and per run
  lmscale sweep export --store smoke.sqlite --out smoke-csv
  lmscale sweep import other-lab.csv --store smoke.sqlite --columns N=params,loss=val_loss

A re-run skips finished runs and resumes interrupted ones from their
checkpoints (<store>.runs/<run_id>/); a run that fails or diverges is
recorded as such and the sweep goes on.
"""

RUN_DESCRIPTION = """\
Train every run of the study that the store does not hold yet.

  lmscale sweep run studies/smoke.toml --store smoke.sqlite
  lmscale sweep run studies/smoke.toml --store smoke.sqlite --workers 1 --threads 2
  lmscale sweep run study.toml --store s.sqlite --executor ray --address auto --cpus-per-run 4

Local executor: K worker processes, each run with CPUs / K torch threads
(runs x threads = cores); the parent is the only writer of the store.
Ctrl-C or SIGTERM stops cleanly (runs checkpoint, and resume on the next
'sweep run'); even a SIGKILL loses nothing finished.
Ray executor: one Ray task per run (num_cpus = --cpus-per-run, num_gpus =
--gpus-per-run); data and <store>.runs must be on a filesystem every node sees.
One large run on several GPUs: train it alone with torchrun
(torchrun --nproc-per-node 8 -m lmscale train ...), see 'lmscale train --help'.
Exit status: 0 when every run ended, 1 if a run failed, 130 when interrupted.
"""


def register(sub: Any) -> None:
    parser = add_parser(sub, "sweep", help="plan and run studies into a results store", description=DESCRIPTION)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    cmds = parser.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND")

    p = add_parser(cmds, "plan", help="list the runs a sweep file expands to, with FLOPs and time",
                   description="Validate and expand a sweep file without training anything.\n\n"
                   "  lmscale sweep plan studies/smoke.toml\n"
                   "  lmscale sweep plan studies/smoke.toml --json --workers 2\n\n"
                   "Time estimate: (3 x forward FLOPs per token x D + evaluation FLOPs) / the FLOP\n"
                   "rate of a training step of the run's shape, batch and precision, timed here\n"
                   "(about 0.5 s per shape, cached per machine); with --no-measure, the matmul peak\n"
                   "measured here x an expected MFU (from finished runs in --store, else a default\n"
                   "for small models). Runs are placed onto the workers; runs that stop early make\n"
                   "the estimate an upper bound.")
    p.add_argument("file", help="the sweep file (TOML)")
    p.add_argument("--store", help="a store whose finished runs give the expected MFU and are marked done")
    p.add_argument("--workers", type=int, help="runs in parallel; None = as 'sweep run' would")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=None,
                   help="estimate with runs of one shape packed or not (default: as 'sweep run' would)")
    p.add_argument("--measure", action=argparse.BooleanOptionalAction, default=True,
                   help="time a training step of each distinct shape here (about 0.5 s each, cached per "
                        "machine) instead of assuming an MFU (default: on; --no-measure assumes one)")
    p.add_argument("--no-estimate", action="store_true", help="skip the time estimate (no torch import)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

    p = add_parser(cmds, "run", help="train the study's runs into a store", description=RUN_DESCRIPTION)
    p.add_argument("file", help="the sweep file (TOML)")
    p.add_argument("--store", required=True, help="the SQLite results file (created if missing)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="where runs execute")
    p.add_argument("--workers", type=int, help="local: runs in parallel; None = one per CPU (one per GPU on a GPU machine)")
    p.add_argument("--threads", type=int, help="local: torch threads per run; None = CPUs / workers")
    p.add_argument("--address", help="ray: cluster address (auto, ray://host:10001); None = start a local cluster")
    p.add_argument("--cpus-per-run", type=float, default=1, help="ray: num_cpus of each task (= its threads)")
    p.add_argument("--gpus-per-run", type=float, help="ray: num_gpus of each task; None = 1 if the runs ask for device = cuda")
    p.add_argument("--retry-failed", action="store_true", help="train runs recorded as failed again")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=None,
                   help="local: train runs of one shape together, one batched pass for all (default: on a "
                        "GPU and with 2+ threads per worker, where it pays)")
    p.add_argument("--quiet", action="store_true", help="no progress table")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=cmd_run)

    p = add_parser(cmds, "status", help="counts by status and the state of each run",
                   description="Show a store's runs.\n\n  lmscale sweep status --store smoke.sqlite\n"
                   "  lmscale sweep status --store smoke.sqlite --study studies/smoke.toml --json\n\n"
                   "With --study, runs of the study not in the store yet count as pending.")
    p.add_argument("--store", required=True, help="the SQLite results file")
    p.add_argument("--study", help="a sweep file: also count its runs not started yet")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_status)

    p = add_parser(cmds, "export", help="write the store's tables as CSV or Parquet",
                   description="Export every table (runs, final_points, curves, distribution losses,\n"
                   "per-position losses, noise scale) to files.\n\n"
                   "  lmscale sweep export --store smoke.sqlite --out smoke-tables --format parquet")
    p.add_argument("--store", required=True, help="the SQLite results file")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.set_defaults(func=cmd_export)

    p = add_parser(cmds, "import", help="add another lab's results (N, D or C, loss) to a store",
                   description="Import a CSV of N, D (or C: then D = C / 6N), loss, to fit it with lmscale.\n\n"
                   "  lmscale sweep import chinchilla.csv --store ext.sqlite \\\n"
                   "      --columns 'N=Model Size,C=Training FLOP,loss=loss' --group chinchilla\n\n"
                   "  # one setting of Porian et al.'s IsoFLOP points, for approaches 2 and 3 in the report\n"
                   "  lmscale sweep import porian2024_isoflop_points.csv --store rw.sqlite --rule isoflop \\\n"
                   "      --columns N=N,D=D_tokens,C=flops,loss=loss \\\n"
                   "      --where dataset=rw,hparams=tuned,warmup=short,decay=const,param_count=standard,loss_split=val\n\n"
                   "Columns named N, D, C, loss (any case) are found without --columns. A table whose runs\n"
                   "at one N and D differ in loss by a text column (a data set, a schedule) is refused with\n"
                   "the --where that picks one setting: the store keeps N, D and loss only. A table of\n"
                   "learning curves (a column naming runs, each at one N with D growing) is refused too:\n"
                   "--last-per COLUMN imports each run's last row; for the curves themselves, and runs in\n"
                   "MLflow, TensorBoard or W&B, see 'lmscale import --help'.\n\n"
                   "  # the OLMo ladder's 30 runs, from their learning curves\n"
                   "  lmscale sweep import olmo_ladder_learning_curves.csv --store olmo.sqlite \\\n"
                   "      --columns N=N_params,D=total_tokens,loss=c4_en_CE --last-per source_path")
    p.add_argument("csv", help="the CSV file, or an Excel sheet: FILE.xlsx or FILE.xlsx#SHEET")
    p.add_argument("--store", required=True, help="the SQLite results file (created if missing)")
    p.add_argument("--columns", help="FIELD=COLUMN pairs, comma separated (fields: N, D, C, loss); quote a "
                                     "name with a space or comma: N=\"Model Size\"")
    p.add_argument("--where", default=None, metavar="COL=VALUE,...", help=WHERE_HELP)
    p.add_argument("--last-per", default=None, metavar="COLUMN",
                   help="the table holds learning curves, one run per value of COLUMN: import each run's "
                        "last row (largest D); without it such a table is refused")
    p.add_argument("--group", help="group name of the imported runs; None = the CSV's file name")
    p.add_argument("--rule", default="plain", help="rule tag of the imported runs (e.g. converge, isoflop)")
    p.add_argument("--json", action="store_true", help="print the count as JSON")
    p.set_defaults(func=cmd_import)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _duration(seconds: float) -> str:
    """``1834 s``, with minutes, hours or days beside it where they read better."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds:.0f} s, {seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


def cmd_plan(args: argparse.Namespace) -> int:
    from lmscale.sweeps import load_study
    from lmscale.sweeps.estimate import (
        STARTUP_S,
        Throughput,
        measured_peak,
        measured_step_rates,
        run_flops,
        run_precision,
        run_seconds,
        store_mfu,
        task_seconds,
        wall_seconds,
    )
    from lmscale.sweeps.local import gpu_count, plan_tasks
    from lmscale.sweeps.session import study_precision
    from lmscale.training.hardware import available_cpus

    study = load_study(args.file)
    done: dict[str, str] = {}
    store = None
    if args.store:
        from lmscale.store import Store

        store = Store(args.store, create=False)
        done = store.status_of()
    pending = [r for r in study.runs
               if done.get(r.run_id, "pending") not in ("finished", "early_stopped", "diverged", "failed")]
    gpus = gpu_count() if any(r.config.device != "cpu" for r in study.runs) else 0
    packs, workers, threads = plan_tasks(pending, available_cpus(), args.workers, None, gpus, args.pack)
    distributions = max(1, len(study.data.sources)) if study.data.path is None else len(
        study.data.open(args.file).distributions)
    tp = None
    from lmscale.extras import installed

    no_torch = not args.no_estimate and not installed("torch")
    if not args.no_estimate and study.runs and not no_torch:
        device = "cuda" if gpus else "cpu"
        auto, _ = study_precision(study, store, device, threads)
        tp = Throughput(peak_flops=measured_peak(threads, device), threads=threads, workers=workers,
                        distributions=distributions, precision=auto or "fp32")
        for precision in {"fp32"} | {run_precision(r, tp) for r in study.runs}:
            tp.peaks[precision] = measured_peak(threads, device, dtype=precision)
        measured = store_mfu(args.store)
        tp.mfu.update(measured)
        tp.mfu_source = {a: "store" if a in measured else "default" for a in tp.mfu}
        if args.measure:
            tp.step_rates = measured_step_rates(pending or study.runs, tp, device, progress=not args.json)
    rows = []
    for run in study.runs:
        m = run.config.model
        train_flops, eval_flops = run_flops(run, distributions)
        rows.append({
            "run_id": run.run_id, "group": run.group, "rule": run.rule, "architecture": m.architecture,
            "n_layer": m.n_layer, "d_model": m.d_model, "n_head": m.n_head, "d_ff": m.d_ff, "n_ctx": m.n_ctx,
            "N": run.N, "D": run.D, "C": run.C, "C_exact": train_flops, "C_eval": eval_flops,
            "batch_tokens": run.config.batch_tokens, "lr": run.config.lr, "seed": run.config.seed,
            "early_stopping": run.config.early_stopping, "axes": run.axes,
            "status": done.get(run.run_id, "pending"),
            "precision": run_precision(run, tp) if tp else run.config.precision,
            "pack": next((i for i, p in enumerate(packs) if run in p), None),
            "est_seconds": run_seconds(run, tp) if tp else None,
        })
    tasks = [task_seconds(p, tp) for p in packs] if tp else []
    total = {
        "runs": len(rows), "to_train": len(pending), "tasks": len(packs),
        "packed_runs": sum(len(p) for p in packs if len(p) > 1), "C": sum(r["C"] for r in rows),
        "C_exact": sum(r["C_exact"] for r in rows),
        "est_wall_seconds": wall_seconds(tasks, min(tp.workers, len(tasks)), STARTUP_S) if tp and tasks
        else (0.0 if tp else None),
        "duplicates": {k: v for k, v in study.duplicates.items()},
        # their budgets are ceilings: they end when the test loss stops improving
        "early_stopping_runs": sum(1 for r in rows if r["early_stopping"] and r["status"] == "pending"),
        "early_stopping_seconds": sum(r["est_seconds"] for r in rows if r["early_stopping"]
                                      and r["status"] == "pending") if tp else None,
    }
    if args.json:
        print_json({"study": study.name, "file": str(study.path), "data": study.data.canonical(),
                     "runs": rows, "total": total, "estimate": tp.method() if tp else None})
        return 0
    print(f"study {study.name!r} ({study.path}): {len(rows)} runs in {len(study.groups)} group(s), "
          f"data {study.data.canonical()}")
    head = f"{'run_id':<16} {'group':<12} {'rule':<9} {'arch':<11} {'L':>3} {'d':>5} {'N':>10} {'D':>10} " \
           f"{'C=6ND':>9} {'est s':>7}  status"
    print(head)
    for r in rows:
        est = f"{r['est_seconds']:.0f}" if r["est_seconds"] is not None else "-"
        print(f"{r['run_id']:<16} {r['group'][:12]:<12} {r['rule']:<9} {r['architecture']:<11} {r['n_layer']:>3} "
              f"{r['d_model']:>5} {r['N']:>10,} {_fmt(r['D']):>10} {_fmt(r['C']):>9} {est:>7}  {r['status']}")
    print(f"total C = 6ND: {_fmt(total['C'])} FLOPs; with attention/logits/embedding: {_fmt(total['C_exact'])}")
    if tp:
        print(f"estimated wall time for the {total['to_train']} run(s) to train: "
              f"{_duration(total['est_wall_seconds'])} ({total['tasks']} task(s); {total['packed_runs']} run(s) "
              f"packed with others of their shape; precision 'auto' = {tp.precision})")
        print(f"  ({tp.method()})")
        if gpus == 0 and any(r.config.device not in ("cpu", "auto") for r in pending):
            print("  the study's runs ask for a GPU and this machine has none: the estimate is this CPU's")
        if total["early_stopping_runs"]:
            print(f"  an upper bound: {total['early_stopping_runs']} of the runs may stop early, when their test loss "
                  f"stops improving ({total['early_stopping_seconds']:.0f} s of the runs' estimated "
                  "seconds, serial, are theirs at full budget): they can end far sooner (a data-limited run as "
                  "soon as it overfits)")
    if no_torch:
        print("no time estimate: it measures this machine with torch (pip install 'lmscale[train]')")
    if study.duplicates:
        print(f"{len(study.duplicates)} run(s) appear in several groups; each is trained once, "
              "tagged with its first group")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lmscale.extras import TRAIN_MODULES, require
    from lmscale.sweeps import run_sweep

    require(*TRAIN_MODULES, what="lmscale sweep run")

    result = run_sweep(args.file, args.store, executor=args.executor, workers=args.workers, threads=args.threads,
                       address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                       retry_failed=args.retry_failed, progress=not args.quiet, pack=args.pack)
    if args.json:
        print_json({"store": str(result.store), "counts": result.counts, "trained": result.trained,
                    "skipped": result.skipped, "interrupted": result.interrupted,
                    "precision": result.precision or None})
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
        print(f"{result.store}: {counts} (trained now: {len(result.trained)}, "
              f"already done: {len(result.skipped)})" + (" -- interrupted" if result.interrupted else ""))
        if result.precision:
            print(f"precision: {result.precision}")
    if result.interrupted:
        return 130
    return 1 if any(result.counts.get(s) for s in ("failed",)) and result.trained else 0


def cmd_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmscale.store import Store
    from lmscale.sweeps.session import StoreLock

    store = Store(args.store, create=False)
    runs = store.runs()
    stale = not StoreLock.held(Path(args.store))
    rows = []
    for r in runs.astype(object).where(runs.notna(), None).to_dict("records"):
        status = r["status"]
        if status == "running" and stale:
            status = "interrupted"  # no sweep holds the store: the process that ran it is gone
        rows.append({"run_id": r["run_id"], "group": r["group"], "rule": r["rule"], "status": status,
                     "architecture": r["architecture"], "N": r["non_embedding_params"], "tokens": r["tokens"],
                     "loss": r["final_loss"], "wall_time_s": r["wall_time_s"], "source": r["source"],
                     "error": (r["error"] or "").splitlines()[0] if r["error"] else None})
    if args.study:
        from lmscale.sweeps import load_study

        known = set(runs["run_id"])
        for run in load_study(args.study).runs:
            if run.run_id not in known:
                rows.append({"run_id": run.run_id, "group": run.group, "rule": run.rule, "status": "pending",
                             "architecture": run.config.model.architecture, "N": run.N, "tokens": None,
                             "loss": None, "wall_time_s": None, "source": "trained", "error": None})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if args.json:
        print_json({"store": args.store, "counts": counts, "runs": rows})
        return 0
    print(f"{args.store}: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"))
    for r in rows:
        loss = f"{r['loss']:.4f}" if r["loss"] is not None and r["loss"] == r["loss"] else "-"
        n = f"{int(r['N']):,}" if r["N"] is not None and r["N"] == r["N"] else "-"
        print(f"{r['run_id']:<16} {str(r['group'])[:14]:<14} {str(r['rule']):<9} {r['status']:<13} "
              f"{str(r['architecture'] or '-'):<11} N={n:>11} loss {loss}" + (f"  {r['error']}" if r["error"] else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lmscale.store import export

    paths = export(args.store, args.out, args.format)
    if args.json:
        print_json([str(p) for p in paths])
    else:
        for path in paths:
            print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from lmscale.store import import_csv, parse_columns
    from lmscale.tables import parse_where

    n = import_csv(args.store, args.csv, parse_columns(args.columns), group=args.group, rule=args.rule,
                   where=parse_where(args.where), last_per=args.last_per)
    if args.json:
        print_json({"store": args.store, "imported": n})
    else:
        print(f"{args.store}: imported {n} rows from {args.csv}", file=sys.stdout)
    return 0
