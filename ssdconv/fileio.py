"""Atomic file output: write to a temporary name beside the target, rename when complete.

A conversion that fails half-way must leave no partial model behind, so every writer goes through
`atomic_write` (one file) or `AtomicOutputs` (a set of files that appear together or not at all).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's 0600 is for secrets)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same directory, then rename."""
    path = Path(path)
    mode = "w" if isinstance(data, str) else "wb"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicOutputs:
    """Collect several files in memory-light temporary names; publish all at `commit()`.

    Used as a context manager: leaving the block without `commit()` (an error) removes every
    temporary file, so no partial output remains.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._pending: list[tuple[str, Path]] = []

    def write(self, name: str, data: bytes | str) -> Path:
        mode = "w" if isinstance(data, str) else "wb"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.chmod(tmp, _umask_mode())
        self._pending.append((tmp, self.directory / name))
        return self.directory / name

    def commit(self) -> list[Path]:
        done = []
        for tmp, final in self._pending:
            os.replace(tmp, final)
            done.append(final)
        self._pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self._pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._pending = []

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()
