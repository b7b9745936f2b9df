"""`--ncnn-example`: the C++ program and CMakeLists.txt written beside the ncnn model.

The fast tests read the generated source back and check that it carries the manifest's values
(file and blob names, input size, pixel type, mean, scale, label offset, class names) for a BGR
and an RGB model, and that the files go through the conversion's staging (listed, published
together, refused as a whole). When a C++ compiler, CMake and an ncnn install
($SSDCONV_NCNN_DIR, e.g. bench/build_ncnn_lib.sh's prefix) are there, the program is also
built and its detections compared with the Python ncnn runner's (bench/cpp_example.py's
comparison); otherwise that test is skipped, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ssdconv import shipped
from ssdconv.backend.ncnn.example import cpp_float, cpp_string
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.errors import UserError
from ssdconv.models import load_model

ROOT = Path(__file__).resolve().parent.parent
RGB = {"skip_passes": ("fold_input_scale",)}  # keeps the RGB order and the 1/std scale
ODD_CLASSES = ['a "quoted" circle', "back\\slash square", "über-dreieck", "star??!"]


def demo(classes=None):
    return load_model(str(shipped.DEMO_SYMBOL), classes=list(classes or CLASSES))


def convert_demo(out, classes=None, **options):
    opts = Options(targets=("ncnn",), ncnn_example=True, **options)
    return convert(demo(classes), out, opts)


def c_literal(text: str) -> str:
    """The string a C++ literal's body denotes (the escapes cpp_string writes)."""
    raw = bytearray()
    for esc, octal, plain in re.findall(r'\\([\\"?])|\\([0-7]{3})|(.)', text, re.S):
        raw += esc.encode() if esc else bytes([int(octal, 8)]) if octal else plain.encode()
    return raw.decode("utf-8")


def constant(source: str, name: str) -> str:
    match = re.search(rf"\b{name}\b[^=]*= (.*?);(?: *//[^\n]*)?\n", source, re.S)
    assert match, f"{name} not in the source"
    return match.group(1)


def floats(body: str) -> list[np.float32]:
    return [np.float32(float(v.strip().removesuffix("f"))) for v in body.strip("{}").split(",")]


@pytest.mark.parametrize("order,options", [("BGR", {}), ("RGB", RGB)])
def test_source_carries_the_manifest(tmp_path, order, options):
    conv = convert_demo(tmp_path, **options)
    m = conv.manifest
    assert m["channel_order"] == order
    src = (tmp_path / "shapes_ssd_example.cpp").read_text()
    _, _, h, w = m["input_shape"]
    assert int(constant(src, "kWidth")) == w and int(constant(src, "kHeight")) == h
    assert constant(src, "kPixelType") == {"BGR": "ncnn::Mat::PIXEL_BGR",
                                           "RGB": "ncnn::Mat::PIXEL_BGR2RGB"}[order]
    # the same float32 values the Python runner computes with (network_input)
    assert floats(constant(src, "kMean")) == list(np.asarray(m["mean"], np.float32))
    assert floats(constant(src, "kScale")) == list(np.asarray(m["scale"], np.float32))
    if order == "RGB":
        assert floats(constant(src, "kScale"))[0] == np.float32(1 / 58.395)
    assert c_literal(constant(src, "kInputBlob").strip('"')) == m["blobs"]["input"]
    assert c_literal(constant(src, "kOutputBlob").strip('"')) == m["blobs"]["detections"]
    assert constant(src, "kParam") == '"shapes_ssd.param"'
    assert constant(src, "kBin") == '"shapes_ssd.bin"'
    assert int(constant(src, "kLabelOffset")) == m["label_offset"]
    assert int(constant(src, "kNumClasses")) == len(m["classes"])
    names = re.findall(r'^    "(.*)",$', constant(src, "kClasses"), re.M)
    assert [c_literal(n) for n in names] == m["classes"] == list(CLASSES)
    assert "substract_mean_normalize(model::kMean, model::kScale)" in src
    assert "cv::INTER_LINEAR" in src  # the runners' resize (verify/images.py load_rgb)
    cmake = (tmp_path / "CMakeLists.txt").read_text()
    assert "add_executable(shapes_ssd_example shapes_ssd_example.cpp)" in cmake
    assert "find_package(ncnn REQUIRED)" in cmake
    assert m["ncnn"]["example"] == "shapes_ssd_example"


def test_class_names_survive_as_cpp_literals(tmp_path):
    convert_demo(tmp_path, classes=ODD_CLASSES)
    src = (tmp_path / "shapes_ssd_example.cpp").read_text()
    body = constant(src, "kClasses")
    literals = re.findall(r'^    "(.*)",$', body, re.M)
    assert [c_literal(n) for n in literals] == ODD_CLASSES
    assert all(ch.isascii() for ch in body) and "??!" not in body  # no trigraph, plain ASCII
    assert cpp_string("a\nb") == '"a\\012b"'


def test_cpp_float_is_the_float32_value():
    for v in (1 / 58.395, 103.53, 1.0, 1e-5, 123.675):
        text = cpp_float(v)
        assert text.endswith("f") and np.float32(float(text[:-1])) == np.float32(v)


def test_files_are_listed_and_published_with_the_model(tmp_path):
    conv = convert_demo(tmp_path)
    m = json.loads((tmp_path / "shapes_ssd.json").read_text())
    assert m["files"] == ["CMakeLists.txt", "shapes_ssd.bin", "shapes_ssd.param",
                          "shapes_ssd_example.cpp", "shapes_ssd.json"]
    assert sorted(os.listdir(tmp_path)) == sorted(m["files"])  # no staging or temporary left
    assert conv.files["cpp"] == str(tmp_path / "shapes_ssd_example.cpp")
    assert conv.files["txt"] == str(tmp_path / "CMakeLists.txt")
    again = convert(demo(), tmp_path, Options(targets=("ncnn",)))  # without: not listed
    assert "CMakeLists.txt" not in again.manifest["files"]
    assert "example" not in again.manifest["ncnn"]


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(directory.iterdir())}


def test_a_refused_publish_keeps_the_earlier_conversion(tmp_path):
    """Staged with the model, published with it: when the example's file cannot be published
    (a directory holds its name), the earlier .param/.bin/.json stay byte-identical."""
    convert(demo(), tmp_path, Options(targets=("ncnn",)))
    (tmp_path / "shapes_ssd_example.cpp").mkdir()
    before = _hashes(tmp_path)
    with pytest.raises(UserError, match="shapes_ssd_example.cpp is a directory"):
        convert_demo(tmp_path, skip_passes=("fold_input_scale",))  # other bytes
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize("options,name,needle", [
    ({"targets": ("caffe",)}, None, "add --target ncnn"),
    ({"targets": ("ncnn",)}, "my ssd", "letters, digits and _ . + -"),
])
def test_refused_before_anything_is_written(tmp_path, options, name, needle):
    out = tmp_path / "out"
    with pytest.raises(UserError, match=re.escape(needle)):
        convert(demo(), out, Options(ncnn_example=True, **options), name=name)
    assert not out.exists()


def test_cli_flag_and_config_key(tmp_path, capfd):
    from ssdconv.cli import main

    capfd.readouterr()
    assert main(["convert", str(shipped.DEMO_SYMBOL), "--ncnn-example", "-o",
                 str(tmp_path / "c")]) == 2  # the default target is caffe
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ssdconv")]
    assert err == ["ssdconv: error: --ncnn-example writes a C++ program for the ncnn model: "
                   "add --target ncnn (or all)"]
    assert not (tmp_path / "c").exists()

    assert main(["convert", str(shipped.DEMO_SYMBOL), "--classes", ",".join(CLASSES),
                 "--target", "ncnn", "--ncnn-example", "-o", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "shapes_ssd_example.cpp").is_file()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {shipped.DEMO_SYMBOL}\nclasses: [{', '.join(CLASSES)}]\n"
                   "target: ncnn\nncnn_example: true\n")
    assert main(["convert", "--config", str(cfg), "-o", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "CMakeLists.txt").is_file()
    cfg.write_text("ncnn_example: maybe\n")
    with pytest.raises(UserError, match="ncnn_example: must be true or false"):
        from ssdconv.config import load_config

        load_config(str(cfg))


def _build_tools_missing() -> str | None:
    prefix = os.environ.get("SSDCONV_NCNN_DIR")
    if not prefix:
        return "SSDCONV_NCNN_DIR is not set (an ncnn install prefix: bench/build_ncnn_lib.sh)"
    if not (Path(prefix) / "lib" / "cmake" / "ncnn" / "ncnnConfig.cmake").is_file():
        return f"SSDCONV_NCNN_DIR={prefix} holds no lib/cmake/ncnn/ncnnConfig.cmake"
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    return None


def build_example(folder: Path) -> None:
    """cmake-configure and build the example written in `folder` against $SSDCONV_NCNN_DIR."""
    import subprocess

    prefix = os.environ["SSDCONV_NCNN_DIR"]
    for cmd in (["cmake", "-S", ".", "-B", "build", f"-Dncnn_DIR={prefix}/lib/cmake/ncnn"],
                ["cmake", "--build", "build"]):
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.skipif(_build_tools_missing() is not None, reason=str(_build_tools_missing()))
@pytest.mark.parametrize("label,classes,options", [
    ("BGR", None, {}), ("RGB, odd class names", ODD_CLASSES, RGB)])
def test_built_example_equals_the_python_runner(tmp_path, label, classes, options):
    sys.path.insert(0, str(ROOT))
    from bench.cpp_example import ModelCase, check_case, sample_images

    case = ModelCase(label, str(shipped.DEMO_SYMBOL), {"classes": list(classes or CLASSES)},
                     options)
    images = sample_images()
    program, results, _ = check_case(case, tmp_path, Path(os.environ["SSDCONV_NCNN_DIR"]),
                                     images)
    assert program == tmp_path / "shapes_ssd_example"
    assert len(results) == len(images)
    for r in results:
        assert r.detections > 0 and r.ok, r
