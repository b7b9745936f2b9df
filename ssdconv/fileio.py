"""Output that is whole or absent: temporary names beside the target, renamed when complete.

A conversion that fails or is interrupted half-way must leave no partial model behind and must
leave an earlier result in the same folder untouched. Every writer goes through `atomic_write`
(one file), `AtomicOutputs` (files that appear together inside one directory) or
`StagedDirectory` (a hidden directory in the output folder where a set of files is prepared and
then published at once). Publishing holds SIGINT/SIGTERM back (signals.held) so it is never cut
between two renames, and holds an flock on the output directory itself (no lock file) so two
processes publishing into one folder take turns: the folder always holds one whole set.

Every temporary path is registered while it exists; `remove_temporaries()` (also run at exit)
removes whatever an interruption left, e.g. when a second Ctrl-C cut a cleanup short.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError
from .signals import held

STAGING_PREFIX = ".ssdconv-"
_temporaries: set[str] = set()


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's 0600 is for secrets)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            pass
    _temporaries.discard(path)


def remove_temporaries() -> None:
    """Remove every temporary file and staging directory this process still has."""
    with held():
        for path in sorted(_temporaries, reverse=True):
            _remove(path)


atexit.register(remove_temporaries)


def _mkstemp(directory: Path, name: str) -> str:
    with held():
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise UserError(f"cannot write in {directory} ({exc.strerror})") from None
        os.close(fd)
        _temporaries.add(tmp)
    return tmp


def _fill(tmp: str, data: bytes | str) -> None:
    mode = "w" if isinstance(data, str) else "wb"
    with open(tmp, mode) as f:
        f.write(data)
    os.chmod(tmp, _umask_mode())


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same directory, then rename."""
    path = Path(path)
    tmp = _mkstemp(path.parent, path.name)
    try:
        _fill(tmp, data)
        with held():
            os.replace(tmp, path)
            _temporaries.discard(tmp)
    except BaseException:
        with held():
            _remove(tmp)
        raise


class AtomicOutputs:
    """Collect several files under temporary names; publish all at `commit()`.

    Used as a context manager: leaving the block without `commit()` (an error) removes every
    temporary file, so no partial output remains.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._pending: list[tuple[str, Path]] = []

    def write(self, name: str, data: bytes | str) -> Path:
        tmp = _mkstemp(self.directory, name)
        self._pending.append((tmp, self.directory / name))
        _fill(tmp, data)
        return self.directory / name

    def commit(self) -> list[Path]:
        with held():
            done = []
            for tmp, final in self._pending:
                os.replace(tmp, final)
                _temporaries.discard(tmp)
                done.append(final)
            self._pending = []
        return done

    def discard(self) -> None:
        with held():
            for tmp, _ in self._pending:
                _remove(tmp)
            self._pending = []

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; returns the ones created, deepest last."""
    missing = []
    probe = directory.absolute()
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise UserError(f"output directory {directory} cannot be created: {d} is a "
                                "file") from None
            continue
        except OSError as exc:
            raise UserError(f"output directory {directory} cannot be created ({exc.strerror}: "
                            f"{d})") from None
        created.append(d)
    if not directory.is_dir():
        raise UserError(f"output path {directory} is a file, not a directory; pass -o DIR")
    return created


class StagedDirectory:
    """A hidden staging directory inside `directory`; `publish(names)` moves the named files
    out of it into `directory` together, and leaving the block removes it whatever happened.

    When the block fails, directories that entering it created are removed again if they are
    still empty, so a failed run leaves the file system as it was.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path: Path | None = None
        self._created: list[Path] = []

    def __enter__(self) -> StagedDirectory:
        try:
            with held():
                for _ in range(3):  # a concurrent failing run may remove an empty parent
                    self._created += _make_dirs(self.directory)
                    try:
                        self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX,
                                                          dir=self.directory))
                        break
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise UserError(f"cannot write in {self.directory} "
                                        f"({exc.strerror})") from None
                else:
                    raise UserError(f"output directory {self.directory} keeps disappearing")
                _temporaries.add(str(self.path))
        except BaseException:
            self._cleanup(failed=True)
            raise
        return self

    def publish(self, names: list[str]) -> list[Path]:
        """Move `names` from the staging directory into `directory`, all of them or none.

        Waits for any other process publishing into the same directory (flock), then renames
        with SIGINT/SIGTERM held back; the last name is renamed last (put the manifest there).
        """
        assert self.path is not None, "publish() outside the with block"
        for name in names:
            target = self.directory / name
            if target.is_dir() and not target.is_symlink():
                raise UserError(f"{target} is a directory; remove it or choose another --name")
        for name in names:  # durable before visible: a crash never publishes an empty file
            fd = os.open(self.path / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        lock = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with held():
                for name in names:
                    os.replace(self.path / name, self.directory / name)
                os.fsync(lock)
        finally:
            os.close(lock)  # releases the flock
        return [self.directory / name for name in names]

    def _cleanup(self, failed: bool) -> None:
        with held():
            if self.path is not None:
                _remove(str(self.path))
            if failed:
                for d in reversed(self._created):
                    try:
                        d.rmdir()  # only if still empty: another run may be using it
                    except OSError:
                        break

    def __exit__(self, exc_type, exc, tb) -> None:
        self._cleanup(failed=exc_type is not None)
        if isinstance(exc, OSError):  # a full disk or an I/O error while writing: no bug
            hint = "; free some space or choose another -o" if exc.errno == errno.ENOSPC else ""
            raise UserError(f"writing into {self.directory} failed ({exc.strerror or exc})"
                            f"{hint}") from None
