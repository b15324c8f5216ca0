"""Public result datasets: provenance, normalised columns, SHA-256 checks, no unlicensed copies."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lmscale as ls
from lmscale.errors import LmscaleError
from lmscale.laws import datasets

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")


@pytest.fixture
def shared_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LMSCALE_DATA", str(SHARED))
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path / "cache"))


def test_every_dataset_has_provenance():
    assert datasets.names() == ["epoch-chinchilla", "porian2024-isoflop", "porian2024-optimal",
                                "porian2024-fits", "olmo-ladder-curves", "olmo-ladder-final", "muennighoff2023"]
    for name in datasets.names():
        ds = datasets.info(name)
        assert ds.source_url.startswith("https://github.com/") and ds.commit in ds.source_url
        assert len(ds.sha256) == 64 and ds.licence in ("MIT", "Apache-2.0", "none stated")
        assert "arXiv:" in ds.citation and ds.rows > 0
        assert ds.download_url is not None or ds.derived
    assert not datasets.info("epoch-chinchilla").redistributable
    with pytest.raises(LmscaleError, match="known: epoch-chinchilla"):
        datasets.info("chinchilla")


@needs_shared
def test_recorded_hashes_match_the_files():
    for name in datasets.names():
        ds = datasets.info(name)
        assert hashlib.sha256((SHARED / ds.file).read_bytes()).hexdigest() == ds.sha256


@needs_shared
@pytest.mark.usefixtures("shared_env")
def test_load_gives_normalised_columns():
    for name in datasets.names():
        df = ls.datasets.load(name)
        ds = datasets.info(name)
        assert len(df) == ds.rows and df.attrs["dataset"]["sha256"] == ds.sha256
        for new, orig in ds.columns.items():
            if new != orig:
                assert np.allclose(df[new], df[orig], equal_nan=True)
    epoch = datasets.load("epoch-chinchilla")
    assert list(epoch.columns[:4]) == ["N", "D", "C", "loss"]
    assert np.allclose(epoch["D"], epoch["Training FLOP"] / (6 * epoch["Model Size"]))
    runs = datasets.load("muennighoff2023")
    assert np.allclose(runs["C"], 6.0 * runs["N_params"].astype(float) * runs["D_tokens"])
    assert (runs["U"] <= runs["D"]).all()
    assert "source_file" in datasets.load("porian2024-fits").columns


@needs_shared
def test_a_changed_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("LMSCALE_DATA", raising=False)
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "data"
    local.mkdir()
    text = (SHARED / "olmo_ladder_final_points.csv").read_text()
    (local / "olmo_ladder_final_points.csv").write_text(text.replace("3.74747896194458", "3.7"))
    with pytest.raises(LmscaleError, match="SHA-256 .* expected 3e77731d"):
        datasets.load("olmo-ladder-final", data_dir=local)
    assert len(datasets.load("olmo-ladder-final", data_dir=local, verify=False)) == 30


def test_missing_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCALE_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LmscaleError, match="not found in .*empty.*set LMSCALE_DATA"):
        datasets.load("porian2024-optimal")
    with pytest.raises(LmscaleError, match="no download URL"):
        datasets.load("porian2024-optimal", download=True)


def test_fetch_verifies_the_sha256(tmp_path):
    src = tmp_path / "table.csv"
    src.write_text("N,loss\n1e6,4.2\n")
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "table.csv"
    with pytest.raises(LmscaleError, match="refused: SHA-256"):
        datasets.fetch(src.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists() and not list(dest.parent.iterdir())  # nothing half-written is left
    assert datasets.fetch(src.as_uri(), dest, sha256=good) == dest
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(LmscaleError, match="download of .* failed"):
        datasets.fetch((tmp_path / "absent.csv").as_uri(), dest, sha256=good)


@needs_shared
def test_download_path_fills_the_cache(tmp_path, monkeypatch):
    """The download branch of load(), with a file:// URL standing in for the source."""
    monkeypatch.setenv("LMSCALE_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LMSCALE_CACHE", str(tmp_path / "cache"))
    ds = datasets.info("muennighoff2023")
    mirror = tmp_path / "mirror.csv"
    shutil.copy(SHARED / ds.file, mirror)
    monkeypatch.setitem(datasets.DATASETS, ds.name, datasets.Dataset(
        **{**ds.__dict__, "download_url": mirror.as_uri()}))
    df = datasets.load("muennighoff2023", download=True)
    assert len(df) == 296 and (tmp_path / "cache" / "datasets" / ds.file).is_file()


def test_no_unlicensed_table_is_in_the_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for ds in datasets.DATASETS.values():
        if not ds.redistributable:
            assert not any(Path(f).name in (ds.file, Path(ds.path).name) for f in tracked)
