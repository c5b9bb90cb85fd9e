"""The one atomic file write: readers see the old file or the new one, never half of one.

It lives in ``spaces``, the package every other one may import (results, evaluators and search
all write files), and it refuses what a careful user would not want replaced: a target that is
not a regular file (a device, a FIFO, a socket, a directory) ends in one line; a symbolic link
is written through, atomically at the file it points to, and stays a link.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from spaces._checks import GhostNASError

__all__ = ["check_writable_target", "write_atomic", "write_atomic_path"]

# mkstemp makes 0600 files; give a new file the mode a plain open() would (read once, here,
# because reading the umask means setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)

_KINDS = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a FIFO",
          stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a directory"}  # fmt: skip


def check_writable_target(path: str | Path, *, error: type[Exception] = GhostNASError) -> Path:
    """The regular file ``path`` names (through symbolic links), which may not exist yet.

    Raises ``error`` (one line) if it exists and is anything else, or if a link loops.
    """
    path = Path(path)
    try:
        target = Path(os.path.realpath(path, strict=False))
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        if path.is_symlink() and not target.parent.is_dir():  # never make folders where a dangling link points
            raise error(f"cannot write {path}: it is a link to {target}, whose folder does not exist") from None
        return target
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    for test, kind in _KINDS.items():
        if test(mode):
            raise error(f"cannot write {path}: it is {kind}, not a regular file; give a file path")
    return target


def write_atomic(path: str | Path, data: str | bytes | Callable[[BinaryIO], object], *, error: type[Exception] = GhostNASError) -> Path:
    """Write ``data`` (text, bytes, or a function writing to a binary stream) to ``path``.

    The data go to a temporary file beside the target, which is then renamed over it: one
    file system, so ``os.replace`` is atomic. A failure (disk full, Ctrl-C) leaves the old file
    and no temporary one. An existing file keeps its mode. Returns ``path``.
    """

    def fill(handle: int, temp: Path) -> None:
        with os.fdopen(handle, "wb") as stream:
            if callable(data):
                data(stream)
            else:
                stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())

    return _replace(path, fill, error=error)


def write_atomic_path(path: str | Path, write: Callable[[Path], object], *, error: type[Exception] = GhostNASError) -> Path:
    """:func:`write_atomic` for writers that want a file name (``safetensors.save_file``,
    ``torch.onnx.export``): ``write(temp)`` makes the temporary file beside the target, and may
    read it back to check it; if it raises, the target is left as it was. Returns ``path``.
    """

    def fill(handle: int, temp: Path) -> None:
        os.close(handle)
        write(temp)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())

    return _replace(path, fill, error=error)


def _replace(path: str | Path, fill: Callable[[int, Path], None], *, error: type[Exception]) -> Path:
    """Make a temporary file beside ``path``'s target, ``fill(handle, temp)`` it, rename it over."""
    path = Path(path)
    target = check_writable_target(path, error=error)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    temp = Path(name)
    try:
        fill(handle, temp)
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise error(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path
