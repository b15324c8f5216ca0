"""Decoder for Unix ``compress`` (LZW) data, and the KJV text file that uses it.

The Debian package bible-kjv-text ships the King James Bible as
``/usr/lib/bible.data``: a header, a table of offsets, and the text cut into
fixed-size windows, each compressed on its own with ``compress``'s LZW
(code width growing from 9 bits up to the stream's maximum, block mode).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from lmscale.errors import LmscaleError

_CLEAR = 256  # block-mode code that resets the dictionary


def unlzw(body: bytes, max_bits: int = 16) -> bytes:
    """Decompress the code stream of a ``compress`` file (the bytes after its 3-byte header).

    Codes are read least-significant bit first, in groups of eight of the
    same width; when the width grows or the dictionary is cleared the rest of
    the current group is padding and is skipped, exactly as ``compress`` does.
    """
    if not 10 <= max_bits <= 16:  # compress -b9 streams switch to 10-bit codes: not supported
        raise ValueError(f"max_bits must be in 10..16, got {max_bits}")
    out = bytearray()
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b""]
    n_bits, limit, max_entries = 9, 1 << 9, 1 << max_bits
    bitpos, group_start, end = 0, 0, len(body) * 8
    padded = body + b"\0\0\0"
    prev: bytes | None = None
    while bitpos + n_bits <= end:
        i = bitpos >> 3
        code = (int.from_bytes(padded[i:i + 3], "little") >> (bitpos & 7)) & (limit - 1)
        bitpos += n_bits
        grow = False
        if prev is None:
            if code == _CLEAR:
                continue
            if code > 255:
                raise ValueError(f"corrupt LZW data: first code {code}")
            prev = table[code]
            out += prev
            continue
        if code == _CLEAR:
            del table[257:]
            prev = None
            grow = True
        else:
            if code < len(table):
                entry = table[code]
            elif code == len(table):
                entry = prev + prev[:1]
            else:
                raise ValueError(f"corrupt LZW data: code {code} with {len(table)} entries")
            out += entry
            if len(table) < max_entries:
                table.append(prev + entry[:1])
                grow = len(table) >= limit and n_bits < max_bits
            prev = entry
        if grow:  # skip to the end of the current group of eight codes
            group = n_bits * 8
            bitpos = group_start + -(-(bitpos - group_start) // group) * group
            group_start = bitpos
            n_bits = 9 if code == _CLEAR else n_bits + 1
            limit = 1 << n_bits
    return bytes(out)


def bible_data_windows(path: Path) -> Iterator[bytes]:
    """The decompressed windows of a bible-kjv ``bible.data`` file, in order.

    Layout (big-endian 32-bit integers): an 80-byte text header starting
    ``EC02``, a reserved word, the window size, the number of windows n, then
    n + 1 file offsets; window k is the LZW code stream between offsets k and
    k + 1 (the ``compress`` header, once, sits just before the first).
    """
    where = f"{path}"
    with open(path, "rb") as f:
        head = f.read(92)
        if len(head) < 92 or not head.startswith(b"EC02"):
            raise LmscaleError(f"{where}: not a bible-kjv data file (no 'EC02' header)")
        _, window, count = struct.unpack(">III", head[80:92])
        if not (0 < count < 1_000_000 and window > 0):
            raise LmscaleError(f"{where}: bad header (window {window}, count {count})")
        offsets = struct.unpack(f">{count + 1}I", f.read(4 * (count + 1)))
        size = path.stat().st_size
        magic = f.read(3)
        if magic[:2] != b"\x1f\x9d" or offsets[-1] != size or list(offsets) != sorted(offsets):
            raise LmscaleError(f"{where}: bad offset table or compress header")
        max_bits = magic[2] & 0x1F
        for k in range(count):
            f.seek(offsets[k])
            body = f.read(offsets[k + 1] - offsets[k])
            try:
                yield unlzw(body, max_bits)
            except ValueError as exc:
                raise LmscaleError(f"{where}: window {k}: {exc}") from None
