"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every file lmscale writes for a user (run records, fitted laws, reports,
tokenizers, manifests, exported tables, checkpoints, caches) goes through
:func:`atomic_path`, so a reader never sees half a file and a failure
leaves the previous version in place:

* the temporary file has a name of its own (process id and a random part),
  so two writers of one path never write into each other's file;
* it is created with the permissions of any new file (0666 less the
  umask), not the 0600 of ``tempfile.mkstemp``: a record written for a
  colleague can be read by them;
* on any error it is removed; a full disk raises
  :class:`~lmscale.errors.DiskFullError` and a path that cannot be written
  (a folder, a missing or read-only place) :class:`~lmscale.errors.LmscaleError`,
  each naming the path, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from lmscale.errors import DiskFullError, LmscaleError, is_disk_full


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full(path: Path, what: str) -> DiskFullError:
    return DiskFullError(f"{path}: no space left on the device writing {what} (the previous version is intact)")


def writable(path: str | Path, what: str = "it") -> Path:
    """``path`` as a file lmscale may write, checked before any work is done: not a folder, and its
    folder creatable. Raises :class:`~lmscale.errors.LmscaleError` saying which."""
    path = Path(path)
    if path.is_dir():
        raise LmscaleError(f"{path}: is a folder; give a file name to write {what} to")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LmscaleError(f"{path}: cannot write {what} there ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise LmscaleError(f"{path}: cannot write {what} there ({path.parent} is not a folder this user may write)")
    return path


def _cannot_write(path: Path, what: str, exc: OSError) -> LmscaleError:
    if path.is_dir():
        return LmscaleError(f"{path}: is a folder; give a file name to write {what} to")
    return LmscaleError(f"{path}: cannot write {what} ({exc.strerror or exc})")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False, what: str = "it") -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed over ``path`` when the block ends without error.

    ``durable``: fsync the file before the rename and the directory after it,
    so that after a crash ``path`` holds the old or the new content, never a
    truncated one. Parent directories are created. ``what`` names the content
    in the full-disk message.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
    except OSError as exc:
        if is_disk_full(exc):
            raise _disk_full(path, what) from None
        raise _cannot_write(path, what, exc) from None
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise _disk_full(path, what) from None
        if isinstance(exc, OSError):
            raise _cannot_write(path, what, exc) from None
        raise


def write_text_atomic(path: str | Path, text: str, *, durable: bool = False, what: str = "it") -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, durable=durable, what=what) as tmp:
        tmp.write_text(text, encoding="utf-8")
