"""Runs from a TensorBoard log folder: every folder holding event files is one run.

Read with TensorBoard's own event-file loader (``pip install
'lmscale[tensorboard]'``), every event (no reservoir sampling): scalars as
metrics, and the hparams plugin's hyper-parameters as params. The folder
that ``SummaryWriter.add_hparams`` writes under a run (a time-stamped
sub-folder) is merged into that run. TensorBoard stores scalars as 32-bit
floats, so values keep about 7 significant digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.extras import require
from lmscale.importers.mapping import ImportMap
from lmscale.importers.source import SourceRun

EVENTS = "events.out.tfevents.*"


def read(source: str | Path, m: ImportMap) -> tuple[str, str, list[SourceRun]]:
    """``(uri, default group, runs)`` of a TensorBoard log folder."""
    require("tensorboard", what="lmscale import tensorboard")
    root = Path(source)
    if not root.is_dir():
        raise LmscaleError(f"{root}: no such TensorBoard log folder")
    files = sorted(root.rglob(EVENTS))
    if not files:
        raise LmscaleError(f"{root}: no TensorBoard event files ({EVENTS}) in it or below it")
    folders: dict[Path, list[Path]] = {}
    for f in files:
        folders.setdefault(f.parent, []).append(f)
    read_folders = {folder: _read_folder(paths) for folder, paths in folders.items()}
    runs: dict[Path, dict[str, Any]] = {}
    for folder in sorted(read_folders, key=lambda p: len(p.parts)):
        content = read_folders[folder]
        owner = next((p for p in folder.parents if p in runs), None)
        if content["hparams_only"] and owner is not None:  # SummaryWriter.add_hparams' sub-folder
            runs[owner]["params"].update(content["params"])
            for tag, pts in content["series"].items():
                runs[owner]["series"].setdefault(tag, []).extend(pts)
        else:
            runs[folder] = content
    uri = str(root.resolve())
    out = []
    for folder, content in runs.items():
        name = folder.relative_to(root).as_posix() if folder != root else root.name
        out.append(SourceRun(run_id=name, name=name, params=content["params"], series=content["series"],
                             status="finished", key=f"{uri}\0{name}"))
    return uri, root.resolve().name, out


def _read_folder(paths: list[Path]) -> dict[str, Any]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    series: dict[str, list[tuple[float, float]]] = {}
    params: dict[str, Any] = {}
    hparams_tags = False
    for path in paths:
        try:
            events = list(EventFileLoader(str(path)).Load())
        except Exception as exc:  # a truncated or foreign file: say which
            raise LmscaleError(f"{path}: not a readable TensorBoard event file ({exc})") from None
        for event in events:
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "hparams":
                    hparams_tags = True
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        for key, v in data.session_start_info.hparams.items():
                            kind = v.WhichOneof("kind")
                            if kind is not None:
                                params[key] = getattr(v, kind)
                    continue
                if value.WhichOneof("value") == "simple_value":
                    number = float(value.simple_value)
                elif value.HasField("tensor") and plugin in ("scalars", ""):
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue
                    number = float(array.reshape(()))
                else:
                    continue
                series.setdefault(value.tag, []).append((event.step, number))
    # add_hparams' own folder: the hyper-parameters and each of its metrics logged once
    hparams_only = hparams_tags and all(len(points) <= 1 for points in series.values())
    return {"series": series, "params": params, "hparams_only": hparams_only}
