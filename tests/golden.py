"""The golden-hash guard: every zoo detector and both demos convert to recorded bytes.

One copy of the command behind tests/data/golden_hashes.json, used by the test that checks it
(`test_models.py::test_output_bytes_are_golden`) and by the command that records it anew after a
deliberate output change (`python tests/golden.py`, then commit the JSON on its own).

Why this guard holds on any machine: seeded weights are a function of the seed alone
(`ssdconv.mxnet.seeded`: float64 calibration snapped to a coarse grid), the converter derives
its weights in numpy float64 elementwise, and the writers are deterministic. The manifest is
excluded: it records measured figures (a YOLOv3's decode proof) that are float32 runtime results.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN_PATH = REPO / "tests" / "data" / "golden_hashes.json"
OUTPUT_FILES = ("prototxt", "caffemodel", "param", "bin")
CUSTOM_CLASSES = ["person", "dog", "cat", "car"]
DEMOS = {  # key -> the arguments that convert a shipped demo with its own trained weights
    "shapes_ssd": ["samples/demo/shapes_ssd-symbol.json",
                   "--classes", "circle,square,triangle,star"],
    "shapes_yolo3": ["--config", "samples/demo/shapes_yolo3.yaml"],
}


def golden() -> dict:
    return json.loads(GOLDEN_PATH.read_text())["models"]


def convert_args(key: str) -> list[str]:
    """The `ssdconv convert` arguments (output folder aside) that make `key`'s files."""
    if key in DEMOS:
        return [a if not a.startswith("samples/") else str(REPO / a) for a in DEMOS[key]]
    args = [key, "--seed", "0"]
    if key.endswith("_custom"):
        args += ["--classes", ",".join(CUSTOM_CLASSES)]
    return args


def converted_hashes(key: str, out: Path, env: dict[str, str] | None = None,
                     prefix: list[str] | None = None) -> dict[str, str]:
    """sha256 of the model files one `ssdconv convert KEY --target all` process writes into
    `out` (run with `env` added, under `prefix`, an emulator say). One process per model, as
    the command runs: Gluon numbers the layer names of every net a process builds, and those
    names are in the files."""
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "ssdconv", "convert",
                           *convert_args(key),
                           "--target", "all", "-o", str(out)],
                          cwd=out, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"convert {key} failed:\n{proc.stderr[-2000:]}")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.iterdir()) if p.suffix[1:] in OUTPUT_FILES}


def zoo_keys() -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "ssdconv", "list"], capture_output=True,
                          text=True, check=True)
    return proc.stdout.split()


def record(work: Path) -> None:
    """Convert every zoo detector and both demos and write the JSON anew."""
    models = {}
    for key in [*DEMOS, *zoo_keys()]:
        out = work / key
        out.mkdir(parents=True)
        models[key] = converted_hashes(key, out)
        print(key, flush=True)
    GOLDEN_PATH.write_text(json.dumps({
        "command": "python tests/golden.py (tests/golden.py: convert_args, converted_hashes)",
        "note": "sha256 of the model files each conversion writes, manifest (.json) excluded; a "
                "deliberate output change updates this file in its own commit",
        "models": models}, indent=1) + "\n")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
