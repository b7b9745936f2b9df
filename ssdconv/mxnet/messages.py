"""MXNet's error text as one short line a user can read, and its log kept off the terminal.

MXNet errors carry a C++ traceback, timestamps, source paths and sometimes hundreds of lines of
candidate arguments; a UserError must be one line, so every place that turns an MXNet exception
into a UserError goes through `one_line`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_NOISE = ("Traceback", "File ", "[bt]", "Stack trace", "At Line", "At  Line")
_WHERE = re.compile(r"\[\d\d:\d\d:\d\d\] [^ ]+:\d+: ")  # "[09:24:50] ../src/x.cc:958: "


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first meaningful line of `exc`, without MXNet's location prefixes, at most `limit`
    characters."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
    text = useful[0] if useful else type(exc).__name__
    text = _WHERE.sub("", text.removeprefix("MXNetError: "))
    text = " ".join(text.split()).rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """MXNet's C++ log lines (written to the process's stderr, file descriptor 2) during the
    block, collected into the yielded list instead of printed: loading an old symbol logs its
    upgrade, which a conversion reports in the manifest's notes, not on the terminal."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines += [_WHERE.sub("", ln).strip() for ln in text.splitlines() if ln.strip()]
