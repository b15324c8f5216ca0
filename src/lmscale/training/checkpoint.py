"""Checkpoints that resume a run bit for bit.

Per run, in ``checkpoint_dir``:

- ``<run_id>-step<step>.safetensors``: tensors (``model.<name>`` weights,
  ``optim.<i>.<key>`` AdamW state, ``best.<name>`` best weights when early
  stopping, ``rng.<device>`` generator states as uint8), with the run id and
  step in its metadata;
- ``<run_id>.json``: the run state (step, EMAs, early-stopping state, curve
  so far, timers) naming its tensor file, or, once the run has ended, its
  final record.

Both are written to a temporary name and renamed; the JSON, written last,
is the commit point, so a crash at any moment leaves the previous
checkpoint intact. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lmscale.errors import LmscaleError
from lmscale.training.hardware import write_text_atomic

FORMAT = 1


def state_path(directory: str | Path, run_id: str) -> Path:
    return Path(directory) / f"{run_id}.json"


def save(directory: str | Path, run_id: str, step: int, tensors: dict[str, torch.Tensor],
         state: dict[str, Any]) -> Path:
    """Write the tensors, then the JSON state that points at them; drop older tensor files."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{run_id}-step{step:010d}.safetensors"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    os.close(fd)
    try:
        save_file(cpu, tmp, metadata={"run_id": run_id, "step": str(step), "format": str(FORMAT)})
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    payload = {"format": FORMAT, "run_id": run_id, "step": step, "tensors": name, **state}
    path = state_path(directory, run_id)
    write_text_atomic(path, json.dumps(payload))
    for old in directory.glob(f"{run_id}-step*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def save_final(directory: str | Path, run_id: str, record: dict[str, Any]) -> Path:
    """Mark the run as ended: the JSON holds its record; tensors are kept for inspection."""
    path = state_path(directory, run_id)
    payload: dict[str, Any] = {}
    if path.exists():
        try:
            payload = json.loads(path.read_text())
        except ValueError:
            payload = {}
    payload.update({"format": FORMAT, "run_id": run_id, "final_record": record})
    write_text_atomic(path, json.dumps(payload))
    return path


def load(directory: str | Path, run_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The saved state and tensors of ``run_id``, or ``None`` if there is no checkpoint."""
    from safetensors import safe_open

    path = state_path(directory, run_id)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise LmscaleError(f"{path}: not a readable lmscale checkpoint ({exc})") from None
    if state.get("run_id") != run_id or state.get("format") != FORMAT:
        raise LmscaleError(f"{path}: checkpoint of run {state.get('run_id')!r} "
                           f"(format {state.get('format')}), expected run {run_id!r}")
    if "tensors" not in state:
        return state, {}
    tensor_path = Path(directory) / state["tensors"]
    if not tensor_path.exists():
        raise LmscaleError(f"{path}: names {tensor_path.name}, which is missing")
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(tensor_path), framework="pt") as fh:
        meta = fh.metadata() or {}
        if meta.get("run_id") != run_id or int(meta.get("step", -1)) != state["step"]:
            raise LmscaleError(f"{tensor_path}: metadata {meta} does not match {path}")
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    return state, tensors


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
