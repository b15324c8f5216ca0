"""The results store: one SQLite file per study, read as pandas DataFrames.

>>> from lmscale.store import Store
>>> points = Store("study.sqlite").final_points()   # N, D, C, loss, group, rule, ...
"""

from __future__ import annotations

from lmscale.store.io import EXPORT_TABLES, export, import_csv, parse_columns
from lmscale.store.provenance import SOURCES, Provenance
from lmscale.store.schema import SCHEMA_VERSION
from lmscale.store.store import DONE_STATUSES, RESULT_STATUSES, STORE_STATUSES, Store

__all__ = [
    "DONE_STATUSES", "EXPORT_TABLES", "RESULT_STATUSES", "SCHEMA_VERSION", "SOURCES", "STORE_STATUSES",
    "Provenance", "Store", "export", "import_csv", "parse_columns",
]
