"""Published scaling-law results as DataFrames, with provenance and integrity checks.

``load(NAME)`` (also ``lmscale.datasets.load``) returns a pandas DataFrame
with the normalised columns ``N``, ``D``, ``C``, ``loss`` (and ``U`` for
repeated data) where they apply, beside the original columns. Each dataset
records its source URL, the repository commit, the SHA-256 of the file,
its licence and its citation (``info(NAME)``).

Where the file is looked for, in order: the ``data_dir`` argument, the
``LMSCALE_DATA`` environment variable, and the download cache
(``$LMSCALE_CACHE/datasets``, default ``~/.cache/lmscale/datasets``). With
``download=True`` a missing file is fetched from its download URL into the
cache and kept only if its SHA-256 matches. Tables whose source states no
licence are read where they are, never copied into this repository.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.tables import read_csv

NO_LICENCE = "none stated"


@dataclass(frozen=True)
class Dataset:
    """One published table.

    Attributes:
        name: key of :func:`load`.
        file: file name in the data directory.
        description: what one row is.
        repository, commit, path: where the data lives upstream (owner/name,
            commit, path in that repository).
        source_url: page of the source at that commit.
        download_url: URL of a byte-identical copy, or ``None`` when the file
            was derived from the source (``derived`` says how).
        sha256: SHA-256 of the file.
        licence: ``MIT``, ``Apache-2.0`` or ``none stated``.
        citation: the paper to cite.
        rows: number of data rows.
        columns: normalised column -> original column.
        derived_columns: normalised column -> formula over normalised columns.
        derived: how the file was made from the source, when not a byte copy.
        notes: counting conventions and caveats.
    """

    name: str
    file: str
    description: str
    repository: str
    commit: str
    path: str
    source_url: str
    download_url: str | None
    sha256: str
    licence: str
    citation: str
    rows: int
    columns: dict[str, str] = field(default_factory=dict)
    derived_columns: dict[str, str] = field(default_factory=dict)
    derived: str = ""
    notes: str = ""

    @property
    def redistributable(self) -> bool:
        return self.licence != NO_LICENCE


_PORIAN = dict(
    repository="formll/resolving-scaling-law-discrepancies", commit="0dc60d91",
    path="data/summary_df*.pickle.xz",
    source_url="https://github.com/formll/resolving-scaling-law-discrepancies/tree/0dc60d91/data",
    download_url=None, licence="MIT",
    citation="Porian, Wortsman, Jitsev, Schmidt, Carmon 2024, Resolving Discrepancies in Compute-Optimal "
             "Scaling of Language Models, arXiv:2406.19146",
    derived="flattened to CSV from the repository's pandas pickles; the config columns (dataset, hparams, "
            "warmup, decay, param_count, loss_split) say which experiment a row belongs to",
)
_OLMO = dict(
    repository="allenai/OLMo", commit="9bc064c7", path="scripts/scaling/data/peteish-moreeval/*.csv",
    source_url="https://github.com/allenai/OLMo/tree/9bc064c7/scripts/scaling/data/peteish-moreeval",
    download_url=None, licence="Apache-2.0",
    citation="Bhagia et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders, "
             "arXiv:2412.04403 (OLMo model ladder, branch ladder-1xC)",
    derived="the per-run CSVs concatenated, with the file of each row in source_path",
    notes="190M to 3.2B parameters at 0.5x to 10x of 20 tokens/param; loss = c4_en_CE (C4 validation "
          "cross-entropy), 10 other validation losses kept; C = total_training_flops counts embedding and "
          "attention FLOPs",
)
_OLMO_COLUMNS = {"N": "N_params", "D": "total_tokens", "C": "total_training_flops", "loss": "c4_en_CE"}

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        name="epoch-chinchilla", file="epoch_chinchilla_svg_extracted_data.csv",
        description="[H] figure 4 points (N, C, loss) digitised from the paper's SVG by Besiroglu et al.",
        repository="epoch-research/analyzing-chinchilla", commit="92258837", path="data/svg_extracted_data.csv",
        source_url="https://github.com/epoch-research/analyzing-chinchilla/blob/92258837/data/svg_extracted_data.csv",
        download_url="https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/92258837/"
                     "data/svg_extracted_data.csv",
        sha256="193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30", licence=NO_LICENCE,
        citation="Besiroglu, Erdil, Barnett, You 2024, Chinchilla Scaling: A replication attempt, arXiv:2404.10102 "
                 "(data of Hoffmann et al. 2022, arXiv:2203.15556, figure 4)",
        rows=245, columns={"N": "Model Size", "C": "Training FLOP", "loss": "loss"},
        derived_columns={"D": "C / (6 N)"},
        notes="N counts all parameters (the [H] convention); Besiroglu et al. drop the 5 highest losses "
              "(240 left) before fitting; no licence stated: read in place, never copied",
    ),
    Dataset(
        name="porian2024-isoflop", file="porian2024_isoflop_points.csv",
        description="loss of each model at IsoFLOP budgets 1.25e16 * 2^k, per experimental setting",
        sha256="78fdb0968651c39e052bb3de639af6d035050ce854639dab49f87f7fc6b451f8", rows=1745,
        columns={"N": "N", "D": "D_tokens", "C": "flops", "loss": "loss"},
        notes="param_count: kaplan = non-embedding, standard = with output head, attention = attention FLOPs counted",
        **_PORIAN,
    ),
    Dataset(
        name="porian2024-optimal", file="porian2024_optimal_pairs.csv",
        description="per budget and setting: N*, D*, tokens per parameter, L*, with bootstrap standard deviations",
        sha256="37b4203a31346eb6d545e3852cec427bbc62d46671898334e246ec4a6c01cbac", rows=177,
        columns={"N": "n", "D": "t", "C": "flops", "loss": "loss"}, **_PORIAN,
    ),
    Dataset(
        name="porian2024-fits", file="porian2024_fit_results.csv",
        description="stored fits N* = n_coef C^n_exponent, D* = t_coef C^t_exponent, L* = E + A C^-alpha "
                    "per setting (the paper's tables use fit = weighted)",
        sha256="4a7e3e2e97f62949120a4e9178d46d6de742577cf717c2eec24a42cca939c011", rows=120, **_PORIAN,
    ),
    Dataset(
        name="olmo-ladder-curves", file="olmo_ladder_learning_curves.csv",
        description="OLMo ladder learning curves: tokens, FLOPs, learning rate and 11 validation losses per step",
        sha256="4ebbf54b30a4ff5a838fc8154c457e9894be1ec4f334a0cbaf7e16058dd1c35d", rows=3569,
        columns=_OLMO_COLUMNS, **_OLMO,
    ),
    Dataset(
        name="olmo-ladder-final", file="olmo_ladder_final_points.csv",
        description="the last row of each OLMo ladder run (30 runs)",
        sha256="3e77731d44b9ec307bd18c38b1e0e278e02540127afbc1c64c43b797270339d3", rows=30,
        columns=_OLMO_COLUMNS, **_OLMO,
    ),
    Dataset(
        name="muennighoff2023", file="muennighoff2023_datablations_runs.csv",
        description="data-constrained runs: N, tokens seen D, unique tokens U, validation loss",
        repository="huggingface/datablations", commit="13701315", path="utils/parametric_fit.ipynb",
        source_url="https://github.com/huggingface/datablations/blob/13701315/utils/parametric_fit.ipynb",
        download_url=None, sha256="36d58bbecf8ef55d8a6ab24c47ee56c3ba1df30b6ee31cf9bddb8a7c6bec8b27",
        licence="Apache-2.0",
        citation="Muennighoff et al. 2023, Scaling Data-Constrained Language Models, arXiv:2305.16264",
        rows=296, columns={"N": "N_params", "D": "D_tokens", "U": "U_unique_tokens", "loss": "val_loss"},
        derived_columns={"C": "6 N D"}, derived="the runs table printed by the notebook, as CSV",
        notes="includes heavily repeated data (loss up to 11)",
    ),
)}


def names() -> list[str]:
    return list(DATASETS)


def info(name: str) -> Dataset:
    """The provenance record of ``name``; the error lists the known ones."""
    if name not in DATASETS:
        raise LmscaleError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """Where downloads are kept: ``$LMSCALE_CACHE/datasets`` (default ``~/.cache/lmscale/datasets``)."""
    return Path(os.environ.get("LMSCALE_CACHE") or Path.home() / ".cache" / "lmscale") / "datasets"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched, in order: ``data_dir``, ``$LMSCALE_DATA``, the cache."""
    dirs = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("LMSCALE_DATA"):
        dirs.append(Path(os.environ["LMSCALE_DATA"]))
    dirs.append(cache_dir())
    return dirs


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: str | Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, keeping it only if its SHA-256 is ``sha256``.

    The bytes go to a temporary name beside ``dest`` and are renamed into
    place once verified; a mismatch removes them and raises.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:  # noqa: S310
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LmscaleError(f"download of {url} failed: {exc}") from None
    got = digest.hexdigest()
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise LmscaleError(f"download of {url} refused: SHA-256 {got} does not match the expected {sha256}")
    tmp.replace(dest)
    return dest


def locate(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The first copy of the dataset's file in :func:`search_dirs`, or ``None``."""
    ds = info(name)
    for folder in search_dirs(data_dir):
        path = folder / ds.file
        if path.is_file():
            return path
    return None


def load(name: str, data_dir: str | Path | None = None, download: bool = False, verify: bool = True) -> pd.DataFrame:
    """The dataset as a DataFrame: normalised columns first, then the original ones.

    Args:
        name: one of :func:`names`.
        data_dir: a folder to look in before ``$LMSCALE_DATA`` and the cache.
        download: fetch a missing file from its download URL (verified).
        verify: check the file's SHA-256 against the recorded one.
    """
    ds = info(name)
    path = locate(name, data_dir)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs(data_dir))
        if not download:
            hint = "load(..., download=True) to fetch it" if ds.download_url else "no byte-identical copy is online"
            raise LmscaleError(f"dataset {name}: {ds.file} not found in {where}; set LMSCALE_DATA to a folder "
                               f"holding it ({hint})")
        if ds.download_url is None:
            raise LmscaleError(f"dataset {name}: no download URL ({ds.derived} from {ds.source_url}); "
                               f"set LMSCALE_DATA to a folder holding {ds.file}")
        path = fetch(ds.download_url, cache_dir() / ds.file, ds.sha256)
    elif verify:
        got = sha256_of(path)
        if got != ds.sha256:
            raise LmscaleError(f"dataset {name}: {path} has SHA-256 {got}, expected {ds.sha256} "
                               "(a different file; pass verify=False to load it anyway)")
    try:
        raw = read_csv(path)
    except LmscaleError as exc:
        raise LmscaleError(f"dataset {name}: {exc}") from None
    return _normalise(ds, raw, path)


def _normalise(ds: Dataset, raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [orig for orig in ds.columns.values() if orig not in raw.columns]
    if missing:
        raise LmscaleError(f"dataset {ds.name}: {path} lacks column(s) {', '.join(missing)}")
    norm = pd.DataFrame({new: pd.to_numeric(raw[orig], errors="coerce") for new, orig in ds.columns.items()})
    if ds.derived_columns.get("D") == "C / (6 N)":
        norm["D"] = norm["C"] / (6.0 * norm["N"])
    if ds.derived_columns.get("C") == "6 N D":
        norm["C"] = 6.0 * norm["N"] * norm["D"]
    order = [c for c in ("N", "D", "U", "C", "loss") if c in norm]
    out = pd.concat([norm[order], raw.drop(columns=[c for c in order if c in raw.columns])], axis=1)
    out.attrs["dataset"] = asdict(ds)
    out.attrs["path"] = str(path)
    return out


def describe(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per dataset: provenance and where (if anywhere) its file was found."""
    rows = []
    for name, ds in DATASETS.items():
        found = locate(name, data_dir)
        rows.append({**asdict(ds), "redistributable": ds.redistributable,
                     "found": str(found) if found else None})
    return rows


__all__ = [
    "DATASETS", "Dataset", "cache_dir", "describe", "fetch", "info", "load", "locate", "names",
    "search_dirs", "sha256_of",
]
