"""Runs from Weights & Biases: offline run folders, exported history files, or a project online.

``SOURCE`` is one of:

- an offline run folder (``wandb/offline-run-...``), a folder holding many
  (``wandb/``, or the folder above it), or one ``run-<id>.wandb`` file: the
  run's transaction log, read here without syncing. It is W&B's record log
  (32 KiB blocks of CRC-checked chunks) of ``wandb_internal_pb2.Record``
  messages, parsed with the protobuf classes the ``wandb`` package ships;
- an exported history file (``.jsonl``: one logged row per line, with
  ``_step``), its config from a ``config.yaml`` beside it if there is one;
- ``ENTITY/PROJECT``: the project through W&B's public API (online, with
  the user's API key).

``pip install 'lmscale[wandb]'`` brings the client.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.extras import require
from lmscale.importers.mapping import ImportMap
from lmscale.importers.source import SourceRun

BLOCK = 32768
HEADER = 7  # crc32 (4 bytes), length (2), chunk type (1); the file starts with ":W&B", 0xBEE1, version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: W&B run state (public API) -> lmscale status.
STATE = {"finished": "finished", "failed": "failed", "crashed": "failed", "killed": "interrupted",
         "running": "running"}


def read(source: str | Path, m: ImportMap) -> tuple[str, str, list[SourceRun]]:
    """``(uri, default group, runs)`` of W&B runs."""
    path = Path(source)
    if path.is_file() and path.suffix == ".jsonl":
        run = _read_history_file(path)
        return str(path.resolve()), path.parent.name or "wandb", [run]
    if path.exists():
        require("wandb", what="lmscale import wandb")
        files = [path] if path.is_file() else sorted({p.resolve() for p in path.rglob("*.wandb")})
        if not files:
            raise LmscaleError(f"{path}: no W&B run files (run-<id>.wandb) in it or below it")
        merged: dict[str, SourceRun] = {}
        projects = set()
        for f in files:
            run, project = _read_log(f)
            projects.add(project)
            if run.run_id in merged:  # a resumed run: its logs add up
                for key, pts in run.series.items():
                    merged[run.run_id].series.setdefault(key, []).extend(pts)
                merged[run.run_id].params.update(run.params)
                merged[run.run_id].status = run.status
            else:
                merged[run.run_id] = run
        group = next(iter(projects)) if len(projects) == 1 and None not in projects else "wandb"
        return str(path.resolve()), group or "wandb", list(merged.values())
    if "/" in str(source) and not str(source).startswith((".", "/")):
        return _read_online(str(source), m)
    raise LmscaleError(f"{source}: no such W&B run folder or file (or give ENTITY/PROJECT to read one online)")


# -- offline run logs --------------------------------------------------------
def _chunks(data: bytes, path: Path) -> list[bytes]:
    """The records of a W&B log: chunks of 32 KiB blocks joined, each CRC-checked."""
    if len(data) < HEADER or data[:4] != b":W&B":
        raise LmscaleError(f"{path}: not a W&B run file (no ':W&B' header)")
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block (or of a file being written)
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        if len(chunk) < length:
            break  # the last record of a run still being written
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise LmscaleError(f"{path}: corrupt record at byte {pos} (checksum mismatch)")
        pos += HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
            pending = b""
        else:
            raise LmscaleError(f"{path}: unknown chunk type {kind} at byte {pos}")
    return records


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _read_log(path: Path) -> tuple[SourceRun, str | None]:
    from wandb.proto import wandb_internal_pb2 as pb

    records = _chunks(path.read_bytes(), path)
    run_id = name = project = None
    params: dict[str, Any] = {}
    series: dict[str, list[tuple[float, float]]] = {}
    status = "running"  # no exit record: the run crashed or is still running
    for raw in records:
        rec = pb.Record()
        try:
            rec.ParseFromString(raw)
        except Exception as exc:  # protobuf's DecodeError
            raise LmscaleError(f"{path}: undecodable record ({exc})") from None
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_id = rec.run.run_id or run_id
            name = rec.run.display_name or name
            project = rec.run.project or project
            params.update({_key(i): _config_value(_json(i.value_json)) for i in rec.run.config.update})
        elif kind == "config":
            params.update({_key(i): _config_value(_json(i.value_json)) for i in rec.config.update})
            for i in rec.config.remove:
                params.pop(_key(i), None)
        elif kind == "history":
            row = {_key(i): _json(i.value_json) for i in rec.history.item}
            step = row.get("_step", rec.history.step.num)
            for key, value in row.items():
                if not key.startswith("_") and isinstance(value, int | float) and not isinstance(value, bool):
                    series.setdefault(key, []).append((step, float(value)))
        elif kind == "exit":
            status = "finished" if rec.exit.exit_code == 0 else "failed"
    params.pop("_wandb", None)
    if run_id is None:
        run_id = path.stem.removeprefix("run-")
    run = SourceRun(run_id=run_id, name=name or run_id, params=params, series=series, status=status, key=run_id)
    return run, project


def _config_value(value: Any) -> Any:
    """W&B keeps config entries as ``{"value": x, "desc": ...}`` in some files."""
    if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value:
        return value["value"]
    return value


# -- exported history --------------------------------------------------------
def _read_history_file(path: Path) -> SourceRun:
    series: dict[str, list[tuple[float, float]]] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise LmscaleError(f"{path}: line {i + 1}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise LmscaleError(f"{path}: line {i + 1}: expected a JSON object of logged values")
        step = row.get("_step", i)
        for key, value in row.items():
            if not key.startswith("_") and isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, []).append((step, float(value)))
    params: dict[str, Any] = {}
    config = path.with_name("config.yaml")
    if config.is_file():
        import yaml  # PyYAML comes with wandb

        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        params = {k: _config_value(v) for k, v in loaded.items() if not str(k).startswith("_")}
    name = path.stem
    return SourceRun(run_id=name, name=name, params=params, series=series, status="finished",
                     key=f"{path.resolve()}")


# -- online ------------------------------------------------------------------
def _read_online(project: str, m: ImportMap) -> tuple[str, str, list[SourceRun]]:
    require("wandb", what="lmscale import wandb")
    import wandb

    wanted = m.metrics()
    out = []
    try:
        for run in wandb.Api(timeout=30).runs(project):
            series: dict[str, list[tuple[float, float]]] = {}
            for row in run.scan_history():
                step = row.get("_step")
                for key in wanted:
                    value = row.get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        series.setdefault(key, []).append((step, float(value)))
            params = {k: v for k, v in dict(run.config).items() if not str(k).startswith("_")}
            out.append(SourceRun(run_id=run.id, name=run.name or run.id, params=params, series=series,
                                 status=STATE.get(run.state, "running"), key=run.id,
                                 metric_names=set(run.summary.keys())))
    except LmscaleError:
        raise
    except Exception as exc:  # no network, no API key, no such project: the client's own errors
        raise LmscaleError(f"{project}: W&B project unreachable ({type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''})") from None
    return f"wandb:{project}", project.split("/")[-1], out
