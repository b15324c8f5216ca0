"""Runs from MLflow: a tracking URI (``sqlite:///mlflow.db``, an ``mlruns`` folder, a server).

Read with the real client (``pip install 'lmscale[mlflow]'``): the runs of
every experiment (or the MAP's ``experiments``), their parameters, and the
full history of each metric the MAP names (``get_metric_history``: every
logged step, not the latest value alone).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.extras import require
from lmscale.importers.mapping import ImportMap
from lmscale.importers.source import SourceRun

#: MLflow run status -> lmscale status.
STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "interrupted", "RUNNING": "running",
          "SCHEDULED": "running"}

#: Retries against an unreachable server (MLflow's default waits minutes); the user's setting wins.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def tracking_uri(source: str | Path) -> str:
    """A URI for the client; a local store that does not exist is an error (never created)."""
    text = str(source)
    if text.startswith(("http://", "https://", "databricks")):
        return text
    if text.startswith("sqlite:///"):
        path = Path(text[len("sqlite:///"):])
        if not path.is_file():
            raise LmscaleError(f"{text}: no such MLflow database ({path} does not exist)")
        return text
    if "://" in text and not text.startswith("file://"):
        raise LmscaleError(f"{text}: unsupported MLflow tracking URI (expected sqlite:///FILE, an mlruns "
                           "folder, file:///FOLDER or http(s)://SERVER)")
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise LmscaleError(f"{path}: neither an MLflow SQLite database nor an mlruns folder")
        return f"sqlite:///{path.resolve()}"
    if not path.is_dir():
        raise LmscaleError(f"{text}: no such MLflow tracking store (expected an mlruns folder or a database)")
    return path.resolve().as_uri()


def read(source: str | Path, m: ImportMap) -> tuple[str, str, list[SourceRun]]:
    """``(uri, default group, runs)`` of an MLflow tracking store."""
    require("mlflow", "sqlalchemy", what="lmscale import mlflow")
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(source)
    try:
        client = MlflowClient(tracking_uri=uri)
        experiments = client.search_experiments()  # active ones: deleted experiments are not imported
    except (MlflowException, OSError, ConnectionError) as exc:
        raise LmscaleError(f"{uri}: MLflow tracking store unreachable ({_first_line(exc)})") from None
    except Exception as exc:  # the client's HTTP layer raises its own types for a refused connection
        raise LmscaleError(f"{uri}: MLflow tracking store unreachable ({type(exc).__name__}: "
                           f"{_first_line(exc)})") from None
    by_name = {e.name: e for e in experiments}
    if m.experiments:
        missing = [e for e in m.experiments if e not in by_name]
        if missing:
            raise LmscaleError(f"{m.where}: experiments: {', '.join(map(repr, missing))} not in {uri}; it has "
                               f"{', '.join(map(repr, sorted(by_name))) or 'none'}")
        experiments = [by_name[e] for e in m.experiments]
    wanted = m.metrics()
    runs = []
    for exp in experiments:
        for run in _all_runs(client, exp.experiment_id):
            info, data = run.info, run.data
            series = {}
            for key in sorted(wanted & set(data.metrics)):
                history = client.get_metric_history(info.run_id, key)
                series[key] = [(h.step, h.value) for h in sorted(history, key=lambda h: (h.step, h.timestamp))]
            params: dict[str, Any] = dict(data.params)
            runs.append(SourceRun(
                run_id=info.run_id, name=info.run_name or info.run_id, params=params, series=series,
                status=STATUS.get(str(info.status), "running"), key=info.run_id,
                metric_names=set(data.metrics),
            ))
    names = [e.name for e in experiments]
    return uri, names[0] if len(names) == 1 else "mlflow", runs


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token, order_by=["start_time ASC"])
        out.extend(page)
        token = page.token
        if not token:
            return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
