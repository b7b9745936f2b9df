"""bench/'s scripts as modules for tests: they import each other by bare name (`from common
import ...`, bench/ being their sys.path[0] when run), so each is loaded with bench/ on the path."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def bench_module(name: str) -> ModuleType:
    """bench/NAME.py as a module (and the bench modules it imports, by their bare names)."""
    sys.path.insert(0, BENCH)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCH)
