"""MXNet's error text as one short line a user can read.

MXNet errors carry a C++ traceback, timestamps, source paths and sometimes hundreds of lines of
candidate arguments; a UserError must be one line, so every place that turns an MXNet exception
into a UserError goes through `one_line`.
"""

from __future__ import annotations

import re

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
