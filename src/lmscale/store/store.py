"""One SQLite file per study: runs, learning curves and losses, read as DataFrames.

WAL journal, foreign keys on, every write one transaction: a process killed
at any moment leaves either the old or the new state of a run, never half
of it. A sweep's parent process is the only writer; readers may run
alongside it.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmscale import __version__
from lmscale.accounting import training_flops_per_token
from lmscale.errors import DiskFullError, LmscaleError, is_disk_full
from lmscale.models.spec import ModelSpec
from lmscale.store.provenance import Provenance
from lmscale.store.schema import DATA_IDENTITY_DDL, DDL, MIGRATIONS, RUN_COLUMNS, SCHEMA_VERSION
from lmscale.training.record import STATUSES, RunRecord

if TYPE_CHECKING:
    import pandas as pd

#: Statuses a run can have in the store: the trainer's, plus ``interrupted``
#: (a sweep stopped while it ran; its checkpoint lets it resume).
STORE_STATUSES = tuple(dict.fromkeys((*STATUSES, "interrupted")))

#: Statuses whose final loss is a result the fits may use.
RESULT_STATUSES = ("finished", "early_stopped")

#: Statuses a sweep never trains again.
DONE_STATUSES = ("finished", "early_stopped", "diverged", "failed")


def now_iso() -> str:
    """UTC time stamp used in the store."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _num(value: Any) -> Any:
    """Non-finite floats are stored as NULL (SQLite has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Store:
    """A study's results store.

    Args:
        path: the SQLite file.
        create: create the file if missing (otherwise a missing file is an
            :class:`LmscaleError`).
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise LmscaleError(f"{self.path}: no such store (run 'lmscale sweep run' first)")
        if self.path.exists() and self.path.is_dir():
            raise LmscaleError(f"{self.path}: is a directory, expected a store file (.sqlite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._check_or_create()
        except sqlite3.DatabaseError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"{self.path}: no space left on the device to open the store") from None
            raise LmscaleError(f"{self.path}: not a readable lmscale store ({exc})") from None

    # -- connection --------------------------------------------------------
    def _check_or_create(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "schema_info" not in tables:
            raise LmscaleError(f"{self.path}: an SQLite file but not an lmscale store (no schema_info table)")
        if "schema_info" in tables:
            row = self._db.execute("SELECT version, lmscale_version FROM schema_info").fetchone()
            if row is None:
                raise LmscaleError(f"{self.path}: store has an empty schema_info table")
            if row[0] > SCHEMA_VERSION:
                raise LmscaleError(
                    f"{self.path}: written by a newer lmscale ({row[1]}, store schema version {row[0]}); "
                    f"this lmscale {__version__} reads schema versions up to {SCHEMA_VERSION}: upgrade lmscale"
                )
            if row[0] < SCHEMA_VERSION:
                self._migrate(int(row[0]))
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if "schema_info" not in tables:
            with self.transaction() as db:
                for statement in DDL.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_info (version, lmscale_version, created_at) VALUES (?, ?, ?)",
                    (SCHEMA_VERSION, __version__, now_iso()),
                )

    def _migrate(self, version: int) -> None:
        """Bring a store of an older schema up to :data:`SCHEMA_VERSION`, in one transaction."""
        try:
            with self.transaction() as db:
                for v in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[v]:
                        db.execute(statement)
                db.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION,))
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc):
                raise
            # a read-only file of an older schema still reads; writes would fail anyway

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error).

        A full disk raises :class:`DiskFullError`: the transaction is rolled
        back and the store holds exactly what it held before.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"{self.path}: no space left on the device writing the store ({exc}); "
                                    "the write was rolled back, everything written before is intact") from None
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # -- the data the runs were trained on ---------------------------------
    def data_identity(self, data: str) -> dict[str, Any] | None:
        """What :meth:`record_data_identity` recorded for ``data`` (a run id's data name), or None."""
        try:
            row = self._db.execute(
                "SELECT tokenizer_hash, vocab_size, directory, recorded_at FROM data_identity WHERE data = ?",
                (data,)).fetchone()
        except sqlite3.OperationalError:  # a store written before the table existed
            return None
        return None if row is None else dict(zip(("tokenizer_hash", "vocab_size", "directory", "recorded_at"), row))

    def record_data_identity(self, data: str, tokenizer_hash: str, vocab_size: int, directory: str) -> None:
        """Remember the tokenizer of ``data`` the first time a sweep uses it (kept afterwards)."""
        with self.transaction() as db:
            db.execute(DATA_IDENTITY_DDL)
            db.execute("INSERT OR IGNORE INTO data_identity (data, tokenizer_hash, vocab_size, directory, "
                       "recorded_at) VALUES (?, ?, ?, ?, ?)", (data, tokenizer_hash, vocab_size, directory, now_iso()))

    # -- writes ------------------------------------------------------------
    def mark(
        self,
        run_id: str,
        status: str,
        *,
        spec: dict[str, Any] | None = None,
        study: str | None = None,
        group: str | None = None,
        rule: str | None = None,
        data_dir: str | None = None,
        error: str | None = None,
    ) -> None:
        """Set a run's status (creating its row from ``spec`` if new), keeping its results."""
        if status not in STORE_STATUSES:
            raise LmscaleError(f"status {status!r}: expected one of {', '.join(STORE_STATUSES)}")
        with self.transaction() as db:
            exists = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if exists:
                sets = "status = ?, error = ?" + (", started_at = ?" if status == "running" else "")
                args: list[Any] = [status, error] + ([now_iso()] if status == "running" else [])
                db.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*args, run_id))
                return
            if spec is None:
                raise LmscaleError(f"run {run_id} is not in {self.path} and no specification was given")
            row = _spec_columns(spec)
            row.update(study=study, grp=group, rule=rule, status=status, source="trained",
                       data_dir=data_dir, error=error,
                       started_at=now_iso() if status == "running" else None)
            _insert_run(db, run_id, row)

    def write_record(
        self,
        record: RunRecord | dict[str, Any],
        *,
        spec: dict[str, Any] | None = None,
        study: str | None = None,
        group: str | None = None,
        rule: str | None = None,
        data_dir: str | None = None,
        started_at: str | None = None,
        provenance: Provenance | None = None,
        budget_flops: float | None = None,
    ) -> None:
        """Insert or replace one run and everything it owns, in one transaction.

        ``spec`` is the canonical run specification stored as JSON (default:
        the record's config); tags left ``None`` keep the stored values.
        ``provenance`` says where a run not trained by lmscale came from;
        ``budget_flops`` is an imported run's total training compute C (when
        the source logged it; otherwise the store's C is 6 N D).
        """
        self.write_records([dict(record=record, spec=spec, study=study, group=group, rule=rule,
                                 data_dir=data_dir, started_at=started_at, provenance=provenance,
                                 budget_flops=budget_flops)])

    def write_records(self, entries: Sequence[dict[str, Any]]) -> int:
        """Insert or replace many runs in **one** transaction: all are written or none.

        Each entry holds the keyword arguments of :meth:`write_record`
        (``record`` required). Returns the number of runs written.
        """
        rows = []
        for entry in entries:
            unknown = set(entry) - _WRITE_KEYS
            if unknown:
                raise LmscaleError(f"write_records: unknown key(s) {', '.join(sorted(unknown))}")
            record = entry["record"]
            rec = record if isinstance(record, RunRecord) else RunRecord.from_dict(record)
            if rec.status not in STORE_STATUSES:
                raise LmscaleError(f"run {rec.run_id}: status {rec.status!r} is not one of "
                                   f"{', '.join(STORE_STATUSES)}")
            spec = entry.get("spec")
            row = _record_columns(rec, spec if spec is not None else rec.config)
            provenance = entry.get("provenance")
            if provenance is not None:
                row.update(provenance.columns())
            if entry.get("budget_flops") is not None:
                row["budget_flops"] = entry["budget_flops"]
            rows.append((rec, row, {k: entry.get(k) for k in _KEPT_TAGS}))
        with self.transaction() as db:
            for rec, row, given in rows:
                old = db.execute(
                    f"SELECT {', '.join(_KEPT_COLUMNS)} FROM runs WHERE run_id = ?", (rec.run_id,)
                ).fetchone()
                kept = dict(zip(_KEPT_TAGS, old or (None,) * len(_KEPT_TAGS)))
                row.update({_KEPT_TAGS[k]: given[k] if given[k] is not None else kept[k] for k in _KEPT_TAGS})
                db.execute("DELETE FROM runs WHERE run_id = ?", (rec.run_id,))
                _insert_run(db, rec.run_id, row)
                _insert_children(db, rec)
        return len(rows)

    def insert_rows(self, rows: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Insert or replace runs given as ``(run_id, columns)`` (no children), one transaction."""
        with self.transaction() as db:
            for run_id, row in rows:
                db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                _insert_run(db, run_id, row)
        return len(rows)

    def set_status_where(self, old: str, new: str) -> int:
        """Move every run with status ``old`` to ``new``; returns how many."""
        with self.transaction() as db:
            return db.execute("UPDATE runs SET status = ? WHERE status = ?", (new, old)).rowcount

    # -- reads -------------------------------------------------------------
    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        import pandas as pd  # lazily: the writers and the CLI's start-up do not need it

        return pd.read_sql_query(sql, self._db, params=list(params))

    def status_of(self) -> dict[str, str]:
        """``{run_id: status}`` for every run."""
        return dict(self._db.execute("SELECT run_id, status FROM runs").fetchall())

    def runs(self) -> pd.DataFrame:
        """Every run, one row each, with all stored columns (``grp`` read as ``group``)."""
        frame = self._frame("SELECT * FROM runs ORDER BY grp, non_embedding_params, run_id")
        return frame.rename(columns={"grp": "group"})

    def final_points(self, statuses: Sequence[str] = RESULT_STATUSES) -> pd.DataFrame:
        """One row per run with the columns the fits use.

        ``N`` non-embedding parameters by [K]'s formula (``N_exact``: counted
        on the model, ``N_embedding``: embeddings), ``D`` unique training
        tokens (``min(tokens, dataset_tokens)``), ``tokens`` trained,
        ``C = 6 N tokens`` ([K] 2.1), ``C_exact = 3 x forward FLOPs x tokens``,
        ``loss`` the final test loss on the training distribution (the best
        one for early-stopped runs).
        """
        marks = ",".join("?" * len(statuses))
        frame = self._frame(
            f"""SELECT run_id, grp AS "group", rule, status, source, architecture,
                non_embedding_params AS N, exact_non_embedding_params AS N_exact,
                embedding_params AS N_embedding,
                CASE WHEN dataset_tokens IS NOT NULL AND dataset_tokens < tokens
                     THEN dataset_tokens ELSE tokens END AS D,
                tokens, budget_flops, flops_per_token, train_flops_per_token,
                final_loss AS loss, best_test_loss, batch_tokens, lr, seed,
                n_layer, d_model, n_head, d_ff, n_ctx, n_vocab, steps, dataset_tokens,
                train_distribution, wall_time_s, tokens_per_second, mfu, precision, packed_with
            FROM runs WHERE status IN ({marks}) ORDER BY grp, N, D, run_id""",
            statuses,
        )
        per_token = frame["train_flops_per_token"].fillna(6.0 * frame["N"])
        frame.insert(frame.columns.get_loc("tokens") + 1, "C", per_token * frame["tokens"])
        imported_c = frame["budget_flops"].where(frame["source"] != "trained")
        frame["C"] = imported_c.fillna(frame["C"])
        frame.insert(frame.columns.get_loc("C") + 1, "C_exact", 3.0 * frame["flops_per_token"] * frame["tokens"])
        return frame.drop(columns=["budget_flops", "flops_per_token", "train_flops_per_token"])

    def curves(self) -> pd.DataFrame:
        """Learning curves, one row per point: ``N``, ``D`` (tokens so far),
        ``C`` (6 N D), ``C_exact``, ``loss`` (test loss on the training
        distribution), ``train_loss``, ``lr``, ``noise_scale``, tags."""
        return self._frame(
            """SELECT p.run_id, r.grp AS "group", r.rule, r.status, r.architecture,
                r.non_embedding_params AS N, r.batch_tokens, p.idx, p.step,
                p.tokens AS D, p.flops AS C, p.flops_exact AS C_exact,
                l.loss AS loss, p.train_loss, p.lr, p.noise_scale, p.wall_time_s
            FROM curve_points p JOIN runs r ON r.run_id = p.run_id
            LEFT JOIN curve_losses l ON l.run_id = p.run_id AND l.idx = p.idx
                AND l.distribution = r.train_distribution
            ORDER BY r.grp, r.non_embedding_params, p.run_id, p.idx"""
        )

    def distribution_losses(self) -> pd.DataFrame:
        """Test loss per distribution at every curve point (long format:
        ``run_id, idx, D, C, distribution, loss, train_distribution``)."""
        return self._frame(
            """SELECT l.run_id, r.grp AS "group", r.rule, r.architecture,
                r.non_embedding_params AS N, l.idx, p.step, p.tokens AS D, p.flops AS C,
                l.distribution, l.loss, r.train_distribution,
                l.distribution = r.train_distribution AS is_train_distribution
            FROM curve_losses l JOIN curve_points p ON p.run_id = l.run_id AND p.idx = l.idx
            JOIN runs r ON r.run_id = l.run_id
            ORDER BY r.grp, r.non_embedding_params, l.run_id, l.idx, l.distribution"""
        )

    def final_distribution_losses(self) -> pd.DataFrame:
        """Final test loss per distribution (one row per run and distribution)."""
        return self._frame(
            """SELECT f.run_id, r.grp AS "group", r.rule, r.status, r.architecture,
                r.non_embedding_params AS N, r.tokens AS D, f.distribution, f.loss,
                r.train_distribution
            FROM final_losses f JOIN runs r ON r.run_id = f.run_id
            ORDER BY r.grp, r.non_embedding_params, f.run_id, f.distribution"""
        )

    def per_position(self) -> pd.DataFrame:
        """Final test loss at each context position t = 1..n_ctx ([K] figure 20)."""
        return self._frame(
            """SELECT q.run_id, r.grp AS "group", r.rule, r.architecture,
                r.non_embedding_params AS N, r.tokens AS D, q.position, q.loss, q.se, q.se_shape
            FROM position_losses q JOIN runs r ON r.run_id = q.run_id
            ORDER BY r.grp, r.non_embedding_params, q.run_id, q.position"""
        )

    def noise_scale(self) -> pd.DataFrame:
        """Gradient noise scale B_simple at each curve point ([K] 5.1), with
        the two EMA squared gradient norms it came from."""
        return self._frame(
            """SELECT p.run_id, r.grp AS "group", r.architecture, r.non_embedding_params AS N,
                r.batch_tokens, p.idx, p.step, p.tokens AS D, p.flops AS C, p.train_loss,
                l.loss, p.noise_scale, p.grad_sq_small, p.grad_sq_big, p.noise_scale_se, p.noise_steps
            FROM curve_points p JOIN runs r ON r.run_id = p.run_id
            LEFT JOIN curve_losses l ON l.run_id = p.run_id AND l.idx = p.idx
                AND l.distribution = r.train_distribution
            WHERE p.noise_scale IS NOT NULL
            ORDER BY r.grp, r.non_embedding_params, p.run_id, p.idx"""
        )

    def precisions(self, run_ids: Sequence[str]) -> dict[str, str]:
        """``{run_id: precision}`` of those of ``run_ids`` the store holds with a recorded precision."""
        out: dict[str, str] = {}
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._db.execute(
                f"SELECT run_id, precision FROM runs WHERE precision IS NOT NULL AND precision != '' "
                f"AND run_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            out.update(dict(rows))
        return out

    def spec(self, run_id: str) -> dict[str, Any]:
        """The stored specification of one run."""
        row = self._db.execute("SELECT spec_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise LmscaleError(f"{self.path}: no run {run_id}")
        return json.loads(row[0])


# -- row builders ---------------------------------------------------------
#: Tags a re-written run keeps from its stored row when not given: keyword -> column.
_KEPT_TAGS = {"study": "study", "group": "grp", "rule": "rule", "data_dir": "data_dir", "started_at": "started_at"}
_KEPT_COLUMNS = tuple(_KEPT_TAGS.values())
_WRITE_KEYS = {"record", "spec", "provenance", "budget_flops", *_KEPT_TAGS}


def _insert_run(db: sqlite3.Connection, run_id: str, row: dict[str, Any]) -> None:
    unknown = set(row) - set(RUN_COLUMNS)
    if unknown:
        raise LmscaleError(f"unknown run columns: {', '.join(sorted(unknown))}")
    cols = [c for c in RUN_COLUMNS if c in row]
    db.execute(
        f"INSERT INTO runs (run_id, {', '.join(cols)}) VALUES (?{', ?' * len(cols)})",
        (run_id, *(_num(row[c]) for c in cols)),
    )


def _spec_columns(spec: dict[str, Any]) -> dict[str, Any]:
    """Columns known from a run's specification alone (``TrainConfig.to_dict()``)."""
    model = spec.get("model") or {}
    return {
        "spec_json": json.dumps(spec, sort_keys=True),
        "architecture": model.get("architecture"),
        "n_layer": model.get("n_layer"),
        "d_model": model.get("d_model"),
        "n_head": model.get("n_head"),
        "d_ff": model.get("d_ff"),
        "n_ctx": model.get("n_ctx"),
        "n_vocab": model.get("n_vocab"),
        "batch_tokens": spec.get("batch_tokens"),
        "lr": spec.get("lr"),
        "seed": spec.get("seed"),
        "budget_tokens": spec.get("tokens"),
        "budget_steps": spec.get("steps"),
        "budget_flops": spec.get("flops"),
        "dataset_tokens": spec.get("dataset_tokens"),
        "early_stopping": spec.get("early_stopping"),
    }


def _record_columns(rec: RunRecord, spec: dict[str, Any]) -> dict[str, Any]:
    row = _spec_columns(spec)
    if row["lr"] is None:  # [K] eq. D.1 default: the record's config says what was used
        row["lr"] = rec.config.get("lr")
    final = rec.final_test_loss.get(rec.train_distribution) if rec.train_distribution else None
    if final is None and rec.final_test_loss:
        final = next(iter(rec.final_test_loss.values()))
    versions = rec.versions or {}
    row.update(
        status=rec.status,
        source="trained",
        non_embedding_params=rec.non_embedding_params,
        exact_non_embedding_params=rec.exact_non_embedding_params,
        embedding_params=rec.embedding_params,
        flops_per_token=rec.flops_per_token,
        train_flops_per_token=_train_flops_per_token(spec),
        steps=rec.steps,
        tokens=rec.tokens,
        batch_tokens=rec.batch_tokens or row["batch_tokens"],
        train_distribution=rec.train_distribution,
        final_loss=final,
        best_test_loss=rec.best_test_loss,
        wall_time_s=rec.wall_time_s,
        tokens_per_second=rec.tokens_per_second,
        mfu=rec.mfu,
        peak_flops=rec.peak_flops,
        device=rec.device,
        machine=f"{platform.node()} ({platform.machine()}, {platform.system()})",
        lmscale_version=versions.get("lmscale", __version__),
        torch_version=versions.get("torch"),
        python_version=versions.get("python", platform.python_version()),
        finished_at=now_iso(),
        error=rec.error,
        precision=rec.precision or None,
        packed_with=rec.packed_with,
    )
    return row


def _train_flops_per_token(spec: dict[str, Any]) -> float | None:
    """6 N per token ([K] 2.1) from the spec's model, by :mod:`lmscale.accounting`."""
    try:
        return float(training_flops_per_token(ModelSpec.from_dict(dict(spec["model"]))))
    except (KeyError, TypeError, ValueError):
        return None


def _insert_children(db: sqlite3.Connection, rec: RunRecord) -> None:
    db.executemany(
        """INSERT INTO curve_points (run_id, idx, step, tokens, flops, flops_exact, lr, train_loss,
            noise_scale, grad_sq_small, grad_sq_big, wall_time_s, noise_scale_se, noise_steps)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            (rec.run_id, i, p.step, p.tokens, _num(p.flops), _num(p.flops_exact), _num(p.lr),
             _num(p.train_loss), _num(p.noise_scale), _num(p.grad_sq_small), _num(p.grad_sq_big),
             _num(p.wall_time_s), _num(p.noise_scale_se), p.noise_steps)
            for i, p in enumerate(rec.curve)
        ],
    )
    db.executemany(
        "INSERT INTO curve_losses (run_id, idx, distribution, loss) VALUES (?, ?, ?, ?)",
        [(rec.run_id, i, name, _num(loss)) for i, p in enumerate(rec.curve) for name, loss in p.test_loss.items()],
    )
    db.executemany(
        "INSERT INTO final_losses (run_id, distribution, loss) VALUES (?, ?, ?)",
        [(rec.run_id, name, _num(loss)) for name, loss in rec.final_test_loss.items()],
    )
    db.executemany(
        "INSERT INTO position_losses (run_id, position, loss, se, se_shape) VALUES (?, ?, ?, ?, ?)",
        [(rec.run_id, t + 1, _num(loss), _num(se), _num(shape)) for t, (loss, se, shape) in enumerate(
            itertools.zip_longest(rec.per_position_loss, rec.per_position_se[:len(rec.per_position_loss)],
                                  rec.per_position_se_shape[:len(rec.per_position_loss)]))],
    )
