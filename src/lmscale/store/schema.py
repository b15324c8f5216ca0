"""The SQLite schema of a study's results store (one file per study).

Tables:

- ``schema_info``: one row, the schema version that wrote the file.
- ``runs``: one row per run: its specification (canonical ``TrainConfig``
  JSON), sweep tags (group, rule), status, sizes (N by [K]'s formula and the
  exact count, embedding parameters), budget and totals, final losses,
  speed, precision (``fp32`` or ``bf16``), the size of the pack it trained
  in (1: alone), machine and versions.
- ``curve_points``: the learning curve of each run (step, tokens, FLOPs, lr,
  train loss, gradient-noise-scale estimate with its standard error and
  window of steps, [K] section 5.1).
- ``curve_losses``: test loss per distribution at each curve point.
- ``final_losses``: test loss per distribution at the end of each run.
- ``position_losses``: the final per-context-position test loss and its
  standard errors (of the loss, and of its difference from the mean over
  positions).
- ``data_identity``: the tokenizer hash of each data set (by the name run
  ids give it) when a sweep first used it: a data directory changed under
  a study is refused. Created on first use (older stores lack it).

Where each run came from: ``runs.source`` (``trained`` by lmscale, or the
tracker or trainer it was read from: ``mlflow``, ``tensorboard``, ``wandb``,
``csv``, ``transformers``, ``lightning``), ``source_uri`` and
``source_run_id`` (its location and id there), and ``provenance_json``
(how each of N, tokens, FLOPs and loss was obtained, and which were derived).

Children reference ``runs`` with ``ON DELETE CASCADE``, so deleting a run
deletes all it owns; re-writing a run is delete + insert in one transaction.
"""

from __future__ import annotations

#: Version of the schema below; a store with a larger one is refused, a smaller one migrated.
SCHEMA_VERSION = 4

#: Provenance columns of ``runs``, added by schema version 2.
PROVENANCE_COLUMNS = ("source_uri", "source_run_id", "source_run_name", "provenance_json", "imported_at")

#: How a run trained, added by schema version 3: precision and pack size.
TRAINING_COLUMNS = {"precision": "TEXT", "packed_with": "INTEGER"}
#: Columns added by schema version 4: (table, column, type): the noise scale's standard
#: error and window, the per-position standard errors.
ADDED_COLUMNS = (
    ("curve_points", "noise_scale_se", "REAL"),
    ("curve_points", "noise_steps", "INTEGER"),
    ("position_losses", "se", "REAL"),
    ("position_losses", "se_shape", "REAL"),
)

#: Statements that take a store from version k to k + 1, run in one transaction.
MIGRATIONS = {
    1: tuple(f"ALTER TABLE runs ADD COLUMN {c} TEXT" for c in PROVENANCE_COLUMNS),
    2: tuple(f"ALTER TABLE runs ADD COLUMN {c} {t}" for c, t in TRAINING_COLUMNS.items()),
    3: tuple(f"ALTER TABLE {t} ADD COLUMN {c} {k}" for t, c, k in ADDED_COLUMNS),
}

#: Columns of ``runs`` besides the key, in insertion order.
RUN_COLUMNS = (
    "study", "grp", "rule", "status", "source", "spec_json", "data_dir",
    "architecture", "n_layer", "d_model", "n_head", "d_ff", "n_ctx", "n_vocab",
    "non_embedding_params", "exact_non_embedding_params", "embedding_params",
    "flops_per_token", "train_flops_per_token", "batch_tokens", "lr", "seed",
    "budget_tokens", "budget_steps", "budget_flops", "dataset_tokens", "early_stopping",
    "steps", "tokens", "train_distribution", "final_loss", "best_test_loss",
    "wall_time_s", "tokens_per_second", "mfu", "peak_flops",
    "device", "machine", "lmscale_version", "torch_version", "python_version",
    "started_at", "finished_at", "error", *PROVENANCE_COLUMNS, *TRAINING_COLUMNS,
)

DDL = """
CREATE TABLE IF NOT EXISTS schema_info (
    version INTEGER NOT NULL,
    lmscale_version TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT,
    grp TEXT,
    rule TEXT,
    status TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'trained',
    spec_json TEXT NOT NULL,
    data_dir TEXT,
    architecture TEXT,
    n_layer INTEGER, d_model INTEGER, n_head INTEGER, d_ff INTEGER,
    n_ctx INTEGER, n_vocab INTEGER,
    non_embedding_params INTEGER,
    exact_non_embedding_params INTEGER,
    embedding_params INTEGER,
    flops_per_token REAL,
    train_flops_per_token REAL,
    batch_tokens INTEGER, lr REAL, seed INTEGER,
    budget_tokens INTEGER, budget_steps INTEGER, budget_flops REAL,
    dataset_tokens INTEGER, early_stopping INTEGER,
    steps INTEGER, tokens INTEGER,
    train_distribution TEXT,
    final_loss REAL,
    best_test_loss REAL,
    wall_time_s REAL, tokens_per_second REAL, mfu REAL, peak_flops REAL,
    device TEXT, machine TEXT,
    lmscale_version TEXT, torch_version TEXT, python_version TEXT,
    started_at TEXT, finished_at TEXT,
    error TEXT,
    source_uri TEXT, source_run_id TEXT, source_run_name TEXT,
    provenance_json TEXT, imported_at TEXT,
    precision TEXT, packed_with INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_group ON runs (grp, rule);
CREATE TABLE IF NOT EXISTS curve_points (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    step INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    flops REAL, flops_exact REAL, lr REAL,
    train_loss REAL,
    noise_scale REAL, grad_sq_small REAL, grad_sq_big REAL,
    wall_time_s REAL,
    noise_scale_se REAL, noise_steps INTEGER,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS curve_losses (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    distribution TEXT NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, idx, distribution),
    FOREIGN KEY (run_id, idx) REFERENCES curve_points (run_id, idx) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS final_losses (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    distribution TEXT NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, distribution)
);
CREATE TABLE IF NOT EXISTS position_losses (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    loss REAL,
    se REAL,
    se_shape REAL,
    PRIMARY KEY (run_id, position)
);
"""

#: The ``data_identity`` table (created by the first sweep that records its data).
DATA_IDENTITY_DDL = """CREATE TABLE IF NOT EXISTS data_identity (
    data TEXT PRIMARY KEY,
    tokenizer_hash TEXT NOT NULL,
    vocab_size INTEGER,
    directory TEXT,
    recorded_at TEXT
)"""
