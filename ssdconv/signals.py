"""Ctrl-C and SIGTERM as exceptions, and the short sections that must not be cut in two.

The command line turns SIGTERM into `Terminated`, which unwinds like KeyboardInterrupt, so every
`finally` and context manager removes its temporary files whichever way the user stops a run.
A few steps must never stop half-way (publishing a conversion's files, creating and removing a
staging directory); `held()` defers both signals until the step is done, then delivers them.

Deferral works on Python's handlers, not on the process signal mask: MXNet, OpenMP and ncnn run
threads of their own, and a signal the main thread blocks is simply delivered to one of them,
while Python handlers always run in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report


class Terminated(BaseException):
    """SIGTERM arrived; a BaseException so `except Exception` blocks do not swallow it."""


_depth = 0
_pending: list[int] = []


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


def _handler(signum: int, frame) -> None:
    if _depth:
        _pending.append(signum)
        return
    _raise(signum)


def install() -> dict[int, object]:
    """Make SIGINT raise KeyboardInterrupt and SIGTERM raise Terminated (the command line);
    returns the handlers there were, for `restore`."""
    return {signum: signal.signal(signum, _handler) for signum in SIGNALS}


def restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def ignore() -> None:
    """Ignore both signals from now on: the run's outcome is decided and only exiting is left
    (MXNet's teardown takes a moment; a signal then must not turn a success into a kill)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def held() -> Iterator[None]:
    """Defer SIGINT and SIGTERM while the block runs; deliver the first one after it.

    Off the main thread signals cannot interrupt the block anyway, so nothing is changed."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    others: dict[int, object] = {}
    try:
        for signum in SIGNALS:  # an API caller's own handlers come back afterwards
            if signal.getsignal(signum) is not _handler:
                others[signum] = signal.signal(signum, _handler)
        if not _depth:
            _pending.clear()
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
    finally:
        for signum in reversed(SIGNALS):
            if signum in others:
                signal.signal(signum, others[signum])
        if not _depth and _pending:
            _deliver(_pending.pop(0), others)


def _deliver(signum: int, others: dict[int, object]) -> None:
    """Act on a deferred signal as its handler outside the block would have."""
    _pending.clear()
    original = others.get(signum, _handler)
    if original is _handler or original is signal.default_int_handler:
        _raise(signum)
    elif original == signal.SIG_DFL:
        signal.raise_signal(signum)
    elif callable(original):
        original(signum, None)
