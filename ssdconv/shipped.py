"""Where the files shipped inside the package are: the demo model and the sample images.

They live in `ssdconv/samples/` and are installed with the package (package data), so
`ssdconv demo` and `ssdconv eval` work from an installed wheel, from any folder. The repository
keeps one copy: its top-level `samples` is a symlink to this directory, so the README's
`samples/...` paths and the presets there keep working in a checkout. Paths are real files
(MXNet and OpenCV open them by name), found from this module's own location.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SCENES_DIR = SAMPLES_DIR / "scenes"
DEMO_DIR = SAMPLES_DIR / "demo"
DEMO_PREFIX = DEMO_DIR / "shapes_ssd"
DEMO_SYMBOL = DEMO_DIR / "shapes_ssd-symbol.json"
DEMO_PARAMS = DEMO_DIR / "shapes_ssd-0000.params"
# The demo YOLOv3 (train/train_yolo_demo.py), beside the SSD.
DEMO_YOLO_NAME = "shapes_yolo3"
DEMO_YOLO_PREFIX = DEMO_DIR / DEMO_YOLO_NAME
DEMO_YOLO_SYMBOL = DEMO_DIR / f"{DEMO_YOLO_NAME}-symbol.json"
DEMO_YOLO_PARAMS = DEMO_DIR / f"{DEMO_YOLO_NAME}-0000.params"


def photos() -> list[Path]:
    """The sample photographs (samples/*.jpg), sorted by name."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def demo_images() -> list[Path]:
    """What `ssdconv demo` checks on: the generated test scenes, then the photographs."""
    return sorted(SCENES_DIR.glob("*.png")) + photos()
