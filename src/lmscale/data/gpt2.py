"""GPT-2's BPE (50,257 ids) from encoding files already on this machine.

Nothing is downloaded unless asked (``allow_download=True``, CLI
``--allow-download``, which lets tiktoken fetch and cache the files).
Places looked in, in order:

1. ``$LMSCALE_GPT2_DIR``: a folder with ``encoder.json`` + ``vocab.bpe``
   (OpenAI's files), ``vocab.json`` + ``merges.txt`` (Hugging Face's), or
   ``r50k_base.tiktoken`` / ``gpt2.tiktoken`` (tiktoken's);
2. tiktoken's cache (``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or
   ``<tmp>/data-gym-cache``), where files are named by the SHA-1 of their URL;
3. the Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``), models ``gpt2`` and ``openai-community/gpt2``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path

from lmscale.data.tokenizer import EOT_TEXT, GPT2_PATTERN, BPETokenizer, unicode_to_bytes
from lmscale.errors import LmscaleError

VOCAB_SIZE = 50257
EOT_ID = 50256
URLS = {
    "r50k_base.tiktoken": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}


def read_tiktoken_file(path: Path) -> dict[bytes, int]:
    """Ranks from a ``.tiktoken`` file (lines ``base64-token rank``)."""
    ranks = {}
    for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise LmscaleError(f"{path}, line {lineno}: expected 'base64-token rank'") from None
    return ranks


def read_encoder_json(path: Path) -> dict[bytes, int]:
    """Ranks (= ids) from GPT-2's ``encoder.json`` / HF's ``vocab.json``, special tokens left out."""
    try:
        encoder = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        raise LmscaleError(f"{path}: not valid JSON ({exc})") from None
    return {unicode_to_bytes(tok): int(i) for tok, i in encoder.items() if tok != EOT_TEXT}


def _cache_dirs() -> list[Path]:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return [Path(os.environ["TIKTOKEN_CACHE_DIR"])]
    if os.environ.get("DATA_GYM_CACHE_DIR"):
        return [Path(os.environ["DATA_GYM_CACHE_DIR"])]
    return [Path(tempfile.gettempdir()) / "data-gym-cache"]


def _hub_dirs() -> list[Path]:
    if os.environ.get("HF_HUB_CACHE"):
        hub = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        hub = Path(os.environ["HF_HOME"]) / "hub"
    else:
        hub = Path.home() / ".cache" / "huggingface" / "hub"
    return [hub / "models--gpt2", hub / "models--openai-community--gpt2"]


def _from_folder(folder: Path) -> dict[bytes, int] | None:
    for name in ("r50k_base.tiktoken", "gpt2.tiktoken"):
        if (folder / name).is_file():
            return read_tiktoken_file(folder / name)
    for name in ("encoder.json", "vocab.json"):
        if (folder / name).is_file():
            return read_encoder_json(folder / name)
    return None


def find_gpt2_ranks() -> tuple[dict[bytes, int] | None, list[str]]:
    """GPT-2's ranks if found locally, and the list of places looked in."""
    looked: list[str] = []
    if os.environ.get("LMSCALE_GPT2_DIR"):
        folder = Path(os.environ["LMSCALE_GPT2_DIR"])
        looked.append(f"$LMSCALE_GPT2_DIR={folder}")
        if (ranks := _from_folder(folder)) is not None:
            return ranks, looked
    else:
        looked.append("$LMSCALE_GPT2_DIR (not set)")
    for cache in _cache_dirs():
        looked.append(f"tiktoken cache {cache}")
        for name in ("r50k_base.tiktoken", "encoder.json"):
            path = cache / hashlib.sha1(URLS[name].encode()).hexdigest()
            if path.is_file():
                reader = read_tiktoken_file if name.endswith(".tiktoken") else read_encoder_json
                return reader(path), looked
    for model in _hub_dirs():
        looked.append(f"Hugging Face cache {model}")
        for snapshot in sorted((model / "snapshots").glob("*")):
            if (ranks := _from_folder(snapshot)) is not None:
                return ranks, looked
    return None, looked


def gpt2_from_ranks(ranks: dict[bytes, int], where: str) -> BPETokenizer:
    """The GPT-2 tokenizer from its 50,256 ranks (id 50256 is ``<|endoftext|>``)."""
    tokens: list[bytes | None] = [None] * VOCAB_SIZE
    for token, rank in ranks.items():
        if not 0 <= rank < EOT_ID or tokens[rank] is not None:
            raise LmscaleError(f"{where}: not GPT-2's encoding (rank {rank})")
        tokens[rank] = token
    if len(ranks) != EOT_ID:
        raise LmscaleError(f"{where}: {len(ranks)} tokens, GPT-2 has {EOT_ID} plus <|endoftext|>")
    return BPETokenizer("gpt2", tokens, EOT_ID, GPT2_PATTERN)


def load_gpt2(allow_download: bool = False) -> BPETokenizer:
    """GPT-2's tokenizer from local files; LmscaleError naming the places looked in if absent."""
    ranks, looked = find_gpt2_ranks()
    if ranks is None and allow_download:
        from tiktoken.load import load_tiktoken_bpe

        try:
            ranks = load_tiktoken_bpe(URLS["r50k_base.tiktoken"])
        except Exception as exc:  # network errors come in many types
            raise LmscaleError(f"downloading GPT-2's encoding failed: {exc}") from None
    if ranks is None:
        raise LmscaleError(
            "GPT-2 encoding files not found; looked in: " + "; ".join(looked)
            + ". Put encoder.json + vocab.bpe (or r50k_base.tiktoken) in a folder and set "
            "LMSCALE_GPT2_DIR, or allow a download (--allow-download)")
    return gpt2_from_ranks(ranks, "GPT-2 encoding")
