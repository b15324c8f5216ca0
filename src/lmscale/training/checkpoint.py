"""Checkpoints that resume a run bit for bit, and survive damage on disk.

Per run, in ``checkpoint_dir``:

- ``<run_id>-step<step>.safetensors``: tensors (``model.<name>`` weights,
  ``optim.<i>.<key>`` AdamW state, ``best.<name>`` best weights when early
  stopping, ``rng.<device>`` generator states as uint8), with the run id and
  step in its metadata; the last :data:`KEEP` of them are kept;
- ``<run_id>.json``: for each kept tensor file, newest first, its SHA-256 and
  size (recorded at save time) and the run state at that step (EMAs,
  early-stopping state, curve so far, timers); once the run has ended, its
  final record.

Every file is written to a temporary name, fsynced and renamed (then the
directory is fsynced); the JSON, written last, is the commit point, so a
crash or a full disk at any moment leaves the previous checkpoint intact (a
full disk raises :class:`~lmscale.errors.DiskFullError`). On resume the
newest tensor file whose checksum matches is used: a truncated or corrupted
file is skipped with a :class:`CheckpointWarning` and the previous one is
tried, and with none intact (or an unreadable JSON) the run restarts from
scratch. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from lmscale.errors import DiskFullError, LmscaleError, is_disk_full
from lmscale.files import atomic_path, write_text_atomic

#: Format of the JSON: 2 records checksums and several checkpoints (1 is read too).
FORMAT = 2

#: Tensor files kept per run (the newest first): one damaged file falls back to the one before.
KEEP = 2


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped (the run resumes from an older one, or from scratch)."""


def state_path(directory: str | Path, run_id: str) -> Path:
    return Path(directory) / f"{run_id}.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    """The checkpoint JSON, or ``None`` (with a warning) when it is damaged."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path}: damaged checkpoint state ({exc}); the run starts again from scratch",
                      CheckpointWarning, stacklevel=3)
        return None


def _entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoints a JSON lists, newest first (format 1: one, without a checksum)."""
    if state.get("format") == 1:
        if "tensors" not in state:
            return []
        inner = {k: v for k, v in state.items() if k not in ("format", "run_id", "tensors", "final_record")}
        return [{"step": state["step"], "tensors": state["tensors"], "state": inner}]
    entries = state.get("checkpoints")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _write_tensors(directory: Path, name: str, tensors: dict[str, torch.Tensor],
                   metadata: dict[str, str]) -> tuple[str, int]:
    """Write a safetensors file durably under ``name``; returns its SHA-256 and size."""
    from safetensors.torch import save_file

    try:
        with atomic_path(directory / name, durable=True) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            sha, size = file_sha256(tmp), os.path.getsize(tmp)
    except DiskFullError:
        raise DiskFullError(f"{directory / name}: no space left on the device for the checkpoint; "
                            "the previous checkpoint is intact (free space and run again to resume)") from None
    return sha, size


def save(directory: str | Path, run_id: str, step: int, tensors: dict[str, torch.Tensor],
         state: dict[str, Any]) -> Path:
    """Write the tensors, then the JSON that lists them with their checksums; keep the last KEEP."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"{directory}: no space left on the device for checkpoints") from None
        raise
    name = f"{run_id}-step{step:010d}.safetensors"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    sha, size = _write_tensors(directory, name, cpu,
                               {"run_id": run_id, "step": str(step), "format": str(FORMAT)})
    path = state_path(directory, run_id)
    old = _read_json(path) if path.exists() else None
    # older checkpoints still on disk; any at or after this step were left by a resume from an
    # earlier one (the newer file was damaged) and are dropped
    older = [e for e in _entries(old or {}) if e.get("tensors") != name
             and isinstance(e.get("step"), int) and e["step"] < step
             and (directory / str(e.get("tensors"))).is_file()]
    kept = [{"step": step, "tensors": name, "sha256": sha, "bytes": size, "state": state}, *older][:KEEP]
    payload = {"format": FORMAT, "run_id": run_id, "step": step, "checkpoints": kept}
    write_text_atomic(path, json.dumps(payload), durable=True)
    names = {e["tensors"] for e in kept}
    for stale in directory.glob(f"{run_id}-step*.safetensors"):
        if stale.name not in names:
            stale.unlink(missing_ok=True)
    return path


def save_final(directory: str | Path, run_id: str, record: dict[str, Any]) -> Path:
    """Mark the run as ended: the JSON holds its record; tensors are kept for inspection."""
    path = state_path(directory, run_id)
    payload: dict[str, Any] = (_read_json(path) or {}) if path.exists() else {}
    payload.update({"format": FORMAT, "run_id": run_id, "final_record": record})
    write_text_atomic(path, json.dumps(payload), durable=True)
    return path


def load(directory: str | Path, run_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The state and tensors of ``run_id``'s newest intact checkpoint, or ``None`` (start afresh).

    A final record comes back as ``({"final_record": ...}, {})``. A damaged
    JSON or tensor file is skipped with a :class:`CheckpointWarning`; a
    checkpoint of another run or format is an :class:`LmscaleError`.
    """
    directory = Path(directory)
    path = state_path(directory, run_id)
    if not path.exists():
        return None
    state = _read_json(path)
    if state is None:
        return None
    if state.get("run_id") != run_id or state.get("format") not in (1, FORMAT):
        raise LmscaleError(f"{path}: checkpoint of run {state.get('run_id')!r} "
                           f"(format {state.get('format')}), expected run {run_id!r}")
    if "final_record" in state:
        return state, {}
    entries = _entries(state)
    for i, entry in enumerate(entries):
        problem, tensors = _load_tensors(directory, run_id, entry)
        if problem is None:
            return {**entry["state"], "step": int(entry["step"])}, tensors
        then = (f"resuming from the previous one (step {entries[i + 1].get('step')})"
                if i + 1 < len(entries) else "no older checkpoint: the run starts again from scratch")
        warnings.warn(f"{directory / str(entry.get('tensors'))}: damaged checkpoint of run {run_id} at step "
                      f"{entry.get('step')} ({problem}); {then}", CheckpointWarning, stacklevel=2)
    return None


def _load_tensors(directory: Path, run_id: str, entry: dict[str, Any]
                  ) -> tuple[str | None, dict[str, torch.Tensor]]:
    """``(None, tensors)`` for an intact checkpoint, else ``(what is wrong, {})``."""
    from safetensors import safe_open

    if not isinstance(entry.get("state"), dict) or not isinstance(entry.get("step"), int):
        return "its entry in the JSON is incomplete", {}
    tensor_path = directory / str(entry.get("tensors"))
    if not tensor_path.is_file():
        return "the file is missing", {}
    if "sha256" in entry:
        size = tensor_path.stat().st_size
        if size != entry.get("bytes"):
            return f"{size} bytes, {entry.get('bytes')} were written", {}
        if file_sha256(tensor_path) != entry["sha256"]:
            return "its SHA-256 differs from the one recorded at save time", {}
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(tensor_path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("run_id") != run_id or int(meta.get("step", -1)) != entry["step"]:
                return f"its metadata {meta} names another run or step", {}
            for key in fh.keys():
                tensors[key] = fh.get_tensor(key)
    except Exception as exc:  # safetensors' own error type for an unreadable file
        return f"unreadable ({exc})", {}
    return None, tensors


# -- packing model / optimizer / RNG state ---------------------------------


def pack(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         best: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Flat name -> tensor dict of everything a resumed run needs."""
    out = {f"model.{k}": v for k, v in model.named_parameters()}
    out.update({f"buffer.{k}": v for k, v in model.named_buffers()})
    index = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    for p, st in optimizer.state.items():
        for key, value in st.items():
            if torch.is_tensor(value):
                out[f"optim.{index[id(p)]}.{key}"] = value
            else:
                out[f"optim.{index[id(p)]}.{key}"] = torch.tensor(float(value), dtype=torch.float64)
    if best:
        out.update({f"best.{k}": v for k, v in best.items()})
    out["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def unpack(tensors: dict[str, torch.Tensor], model: torch.nn.Module,
           optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
    """Restore weights, optimizer state and RNG states; returns the best weights if saved."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"model.{name}"])
        for name, b in buffers.items():
            if f"buffer.{name}" in tensors:
                b.copy_(tensors[f"buffer.{name}"])
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, field = key.split(".", 2)
            per_param.setdefault(int(i), {})[field] = value
    sd = optimizer.state_dict()
    sd["state"] = per_param
    optimizer.load_state_dict(sd)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
    return best or None
