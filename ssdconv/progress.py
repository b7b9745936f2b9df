"""How far a long step has come, on stderr, only when stderr is a terminal.

Someone watching `ssdconv verify` over many images or `ssdconv eval` sees a counter; in a pipe,
a log file or captured output nothing is written, so what is kept holds only the results. This is
the one place that rule lives; the steps themselves take a plain `progress(done, total)` callback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Progress = Callable[[int, int], None]


@contextmanager
def terminal_progress(unit: str, stream: TextIO | None = None) -> Iterator[Progress]:
    """Yield a `progress(done, total)` callback that rewrites one line `  done/total unit` when
    `stream` (default: stderr) is a terminal and does nothing otherwise. The line is erased on
    exit, so the results that follow start on a clean line."""
    out = stream if stream is not None else sys.stderr
    shown = out.isatty()
    width = 0

    def progress(done: int, total: int) -> None:
        nonlocal width
        if shown:
            text = f"  {done}/{total} {unit}"
            out.write("\r" + text.ljust(width))
            out.flush()
            width = max(width, len(text))

    try:
        yield progress
    finally:
        if width:
            out.write("\r" + " " * width + "\r")
            out.flush()
