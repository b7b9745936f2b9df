"""The built wheel is a working install: it holds the package, its .proto, the demo model and the
sample images (and nothing of the repository around it), and its `ssdconv` command runs the demo
and the evaluation from an unrelated folder with nothing but the installed files.

The wheel is built offline from a copy of the sources (pyproject.toml, README.md, ssdconv/), so a
stale build/ folder in the checkout cannot leak old files into it, and installed with
`pip install --target` into a temporary folder that PYTHONPATH puts ahead of the venv's own
(editable) ssdconv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ssdconv
from ssdconv import shipped

PACKAGE = Path(ssdconv.__file__).resolve().parent
REPO = PACKAGE.parent


def _pip(*args: str, cwd: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` (bytecode caches aside) with its size and mtime."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "ssdconv",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src))
    wheels = list(dist.glob("ssdconv-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return target


def test_wheel_holds_the_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set(), "modules missing from the wheel"
    data = [shipped.DEMO_SYMBOL, shipped.DEMO_PARAMS, shipped.DEMO_YOLO_SYMBOL,
            shipped.DEMO_YOLO_PARAMS, shipped.DEMO_DIR / f"{shipped.DEMO_YOLO_NAME}.yaml",
            shipped.SAMPLES_DIR / "README.md",
            *shipped.demo_images()]
    wanted = {p.relative_to(REPO).as_posix() for p in data}
    wanted.add("ssdconv/backend/caffe/caffe_ssd.proto")
    assert wanted - names == set(), "package data missing from the wheel"
    assert any(n.startswith("ssdconv/samples/scenes/") for n in names)
    stray = sorted(n for n in names if not n.startswith(("ssdconv/", "ssdconv-")))
    assert stray == [], "files outside the package in the wheel"
    assert not any(n.startswith(("tests/", "bench/", "train/", "configs/")) for n in names)
    dist_info = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    entry = zipfile.ZipFile(wheel).read(dist_info[0]).decode()
    assert "ssdconv = ssdconv.cli:main" in entry


def _run_installed(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(installed), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([str(installed / "bin" / "ssdconv"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_installed_command_runs_from_another_folder(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(installed), PYTHONNOUSERSITE="1")
    where = subprocess.run(
        [sys.executable, "-c", "import ssdconv, ssdconv.shipped as s; "
         "print(ssdconv.__file__); print(s.DEMO_SYMBOL)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]).resolve() == (installed / "ssdconv" / "__init__.py").resolve()
    assert Path(where[1]).resolve().is_relative_to(installed.resolve())

    before = _tree(installed)
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = _run_installed(installed, work, "demo", "-o", "OUT")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "verdict: PASS" in res.stdout
    assert sorted(os.listdir(work)) == ["OUT"], "the demo wrote outside -o"
    assert (work / "OUT" / "overlays").is_dir()
    assert _tree(installed) == before, "the demo wrote into the installed package"

    res = _run_installed(installed, work, "eval", "-n", "3")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "VOC07 mAP@0.5 on 3 held-out" in res.stdout, res.stdout
    rows = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert {"gluon", "opencv", "ncnn", "ncnn-fp16"} <= rows, res.stdout
    assert sorted(os.listdir(work)) == ["OUT"], "eval wrote into the working folder"
