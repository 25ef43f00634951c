"""User-given files are opened only when they are regular files.

A FIFO given as a CSV, an exclusion list or an image blocks the reading process forever; a device or a
socket is no better; a tar-extracted dump can contain any of them. regular_file() checks the type (after
symlinks, which each caller's own policy has already judged) before anything is opened, and
open_regular() opens without blocking and checks again on the open descriptor, so a FIFO swapped in
after the check cannot hang the open either. A missing path is left to the caller's own message.
disk_full() tells a write refused for want of space, however the library that wrote reports it.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pdd.core.errors import PddError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotRegularFile(PddError):
    """PATH is a folder, FIFO, socket or device where a regular file was asked for."""

    def __init__(self, path: str | Path, what: str, kind: str, hint: str | None = None):
        self.path, self.kind = Path(path), kind
        super().__init__(f"{path}: {what} is {kind}, not a regular file; {hint or 'pass a regular file'}")


def kind_of(mode: int) -> str | None:
    """What a non-regular st_mode is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular(path: str | Path) -> str | None:
    """What PATH is when it exists and is not a regular file (None if regular or missing)."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def regular_file(path: str | Path, what: str, hint: str | None = None) -> Path:
    """PATH, unless it exists and is not a regular file: then NotRegularFile naming PATH, WHAT, its kind
    and HINT (what to pass instead)."""
    kind = not_regular(path)
    if kind:
        raise NotRegularFile(path, what, kind, hint)
    return Path(path)


def open_regular(path: str | Path, what: str, mode: str = "rb", *, hint: str | None = None, **kwargs):
    """open(PATH, MODE, **KWARGS) for reading, refusing anything but a regular file (NotRegularFile);
    a missing file raises FileNotFoundError as open() does."""
    regular_file(path, what, hint)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = kind_of(os.fstat(fd).st_mode)
        if kind:
            raise NotRegularFile(path, what, kind, hint)
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, what: str, *, hint: str | None = None) -> bytes:
    """The bytes of PATH, refusing anything but a regular file (NotRegularFile)."""
    with open_regular(path, what, hint=hint) as fh:
        return fh.read()


FULL = (errno.ENOSPC, errno.EDQUOT)   # a full disk, or the user's quota


def disk_full(exc: BaseException) -> bool:
    """Whether EXC is a write refused for want of space: an OSError with ENOSPC or EDQUOT, or an error
    whose text carries the C library's message for them (Arrow's OSError leaves errno unset; DuckDB
    raises its own IOException)."""
    if isinstance(exc, OSError) and exc.errno in FULL:
        return True
    return isinstance(exc, Exception) and any(os.strerror(e) in str(exc) for e in FULL)
