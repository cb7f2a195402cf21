"""Atomic file I/O: readers never see a half-written file, a failed write leaves nothing.

Used for `.nvc`/`.nvinit` files (:mod:`neuralvol.volume`, :mod:`neuralvol.meta`) and for the
arrays :mod:`neuralvol.volume_io` writes. Every failure is a one-line :class:`InputError`.
"""
from __future__ import annotations

import os
import tempfile
from builtins import open as builtins_open
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it vanishes.

    Readers never see a half-written file, and a failed write leaves nothing behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        # mkstemp makes the file 0600; the result should have the permissions any new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        with builtins_open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(f"no such file: {str(path)!r}") from None
    except IsADirectoryError:
        raise InputError(f"{str(path)!r} is a folder, not an .nvc file") from None
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
