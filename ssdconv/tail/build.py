"""Compile a generated CPU tail with the system C compiler and run it from Python (ctypes).

This is how the tail is proved against MXNet (tests/test_c_tail.py) and how a user can try it
on the converted model's raw outputs before moving the C to the device. It reads what it needs
(entry point, input groups and sizes, rows) from the generated header's defines, so one
function serves the SSD and the YOLOv3 tail. The compiler flags are the ones the tail is
written for: C99, -O2, no FMA contraction, every warning on (the generated code has none).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: flags the generated C must compile with, warning-free
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-ffp-contract=off"]


def _defines(header: str, name: str) -> dict[str, str]:
    return dict(re.findall(rf"^#define {name}_(\w+) (.+)$", header, re.MULTILINE))


def _int_list(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"-?\d+", text)]


@dataclass
class CompiledTail:
    """A compiled tail: `run` feeds it float32 arrays and returns its rows [P, 6]. The
    workspace is a numpy array kept here (the C allocates nothing); after a run it holds the
    C's intermediate arrays (`box_nms_c.workspace_layout`), which the tests read."""

    name: str
    library: Path
    post_nms: int
    input_sizes: list[list[int]]  # per input group (SSD: loc, conf; YOLO: pred), per level
    warnings: str  # what the compiler said (empty: none)
    workspace_size: int = field(init=False)  # NAME_workspace_size()
    last_count: int = field(init=False, default=-1)  # the last run's return value
    _lib: ctypes.CDLL = field(init=False, repr=False)
    _workspace: np.ndarray = field(init=False, repr=False)  # numpy-owned, reused by every run

    def __post_init__(self) -> None:
        self._lib = ctypes.CDLL(str(self.library))
        entry = getattr(self._lib, f"{self.name}_postprocess")
        entry.restype = ctypes.c_int
        entry.argtypes = [ctypes.c_void_p] * (len(self.input_sizes) + 2)
        size = getattr(self._lib, f"{self.name}_workspace_size")
        size.restype = ctypes.c_size_t
        self.workspace_size = int(size())
        self._workspace = np.zeros(-(-self.workspace_size // 8), np.float64)  # 8-aligned

    def run(self, inputs) -> np.ndarray:
        """The tail's rows [P, 6] float32 for one image. inputs: one list of arrays per input
        group (SSD: [loc arrays, conf arrays]; YOLO: [pred arrays]), or, for a one-group tail,
        the arrays themselves; each array float32 in the tail's layout (any shape with the
        level's element count). `last_count` is then the C's return value."""
        groups = list(inputs)
        if len(self.input_sizes) == 1 and groups and isinstance(groups[0], np.ndarray):
            groups = [groups]
        if len(groups) != len(self.input_sizes):
            raise ValueError(f"{self.name}: {len(groups)} input groups, the tail takes "
                             f"{len(self.input_sizes)}")
        keep, args = [], []
        for g, (arrays, sizes) in enumerate(zip(groups, self.input_sizes)):
            if len(arrays) != len(sizes):
                raise ValueError(f"{self.name}: input group {g} has {len(arrays)} arrays for "
                                 f"{len(sizes)} levels")
            ptrs = (ctypes.c_void_p * len(sizes))()
            for i, (arr, n) in enumerate(zip(arrays, sizes)):
                a = np.ascontiguousarray(arr, dtype=np.float32)
                if a.size != n:
                    raise ValueError(f"{self.name}: input group {g} level {i} has {a.size} "
                                     f"values, the tail reads {n}")
                keep.append(a)
                ptrs[i] = a.ctypes.data
            keep.append(ptrs)
            args.append(ctypes.cast(ptrs, ctypes.c_void_p))
        rows = np.empty((self.post_nms, 6), np.float32)
        self.last_count = getattr(self._lib, f"{self.name}_postprocess")(
            *args, rows.ctypes.data, self._workspace.ctypes.data)
        return rows


class NoCompiler(RuntimeError):
    """There is no C compiler to build the tail with (the caller says what that means)."""


def compile_tail(sources: dict[str, str], workdir,
                 extra_flags: Sequence[str] = ()) -> CompiledTail:
    """Write `sources` ({file name: text}, as `ssd_tail_source` / `yolo_tail_source` return
    them) into `workdir` and compile them with `cc` ($CC) into a shared library (CFLAGS,
    -shared -fPIC, -lm; `extra_flags` after CFLAGS, e.g. to try other flags). Raises
    RuntimeError when there is no C compiler or it fails."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise NoCompiler("no C compiler: the CPU tail needs `cc` (or $CC) on PATH, e.g. "
                           "apt-get install gcc")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    c_files = [n for n in sources if n.endswith("_postprocess.c")]
    if len(c_files) != 1:
        raise ValueError(f"sources hold {len(c_files)} NAME_postprocess.c files, want one")
    name = c_files[0][: -len("_postprocess.c")]
    header = sources.get(f"{name}_postprocess.h")
    if header is None:
        raise ValueError(f"sources lack {name}_postprocess.h")
    for fname, text in sources.items():
        (work / fname).write_text(text)
    # named by its sources' hash: the dynamic loader keeps a loaded path's first library, so a
    # second compile of changed sources into the same file would run the old code
    digest = hashlib.sha1("".join([*(sources[k] for k in sorted(sources)), *extra_flags])
                          .encode()).hexdigest()
    lib = work / f"lib{name}_postprocess-{digest[:12]}.so"
    cmd = [cc, *CFLAGS, *extra_flags, "-shared", "-fPIC", "-o", str(lib), str(work / c_files[0]),
           "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    d = _defines(header, name)
    groups = int(d["INPUT_GROUPS"])
    sizes = [_int_list(d[f"INPUT{g}_SIZES"]) for g in range(groups)]
    return CompiledTail(name=name, library=lib, post_nms=int(d["POST_NMS"]), input_sizes=sizes,
                        warnings=done.stderr.strip())
