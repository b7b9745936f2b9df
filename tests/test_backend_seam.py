"""The backend seam: targets come from the registration (`ssdconv.backend.registered`), their
options from the one option table (`ssdconv.options`), and a new target is a module of its own
plus a registration: tests/toy_backend.py converts a model through `convert` without touching a
shared file."""

from __future__ import annotations

import json

import pytest

from ssdconv import options as option_table
from ssdconv.backend import backends, registered
from ssdconv.config import load_config
from ssdconv.convert import Options, convert
from ssdconv.errors import UnsupportedError, UserError
from ssdconv.models import load_model


@pytest.fixture
def with_toy(monkeypatch):
    """tests/toy_backend.py registered after caffe and ncnn, the way a real backend registers."""
    monkeypatch.setattr(registered, "BACKEND_MODULES",
                        (*registered.BACKEND_MODULES, "toy_backend"))


def test_targets_come_from_the_registration(with_toy):
    assert [b.name for b in backends()] == ["caffe", "ncnn", "onnx", "toy"]
    assert option_table.target("all") == ("caffe", "ncnn", "onnx", "toy")
    assert option_table.target("toy") == ("toy",)
    assert "toy_upper" in {o.key for o in option_table.table()}


def test_every_option_has_one_entry_with_its_owner():
    table = option_table.table()
    owners = {o.key: o.owner for o in table}
    assert owners["relu6"] == "target caffe" and owners["ncnn_int8"] == "target ncnn"
    assert owners["yolo_head"] == "family yolov3" and owners["source_mean"] == "core"
    fields = set(option_table.options_class().__dataclass_fields__)
    assert fields == {"targets"} | {o.key for o in table if o.api}
    assert Options().yolo_head == "exact" and Options().targets == ("caffe",)


def test_a_new_target_converts_through_the_seam(with_toy, tmp_path):
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    toy_options = option_table.options_class()
    conversion = convert(model, tmp_path, toy_options(targets=("caffe", "toy"), toy_upper=True))
    assert {"prototxt", "caffemodel", "layers", "json"} == set(conversion.files)
    manifest = json.loads(open(conversion.files["json"]).read())
    layers = open(conversion.files["layers"]).read().splitlines()
    assert manifest["toy"] == {"layers": len(layers)} and "CONV" in layers[1]
    assert "toy: one line per layer" in manifest["choices"]
    assert manifest["files"] == sorted(manifest["files"][:-1]) + [f"{model.name}.json"]


def test_what_a_new_target_cannot_write_is_refused_before_a_byte(with_toy, tmp_path,
                                                                  monkeypatch):
    import toy_backend

    monkeypatch.setattr(toy_backend.ToyBackend, "refuses", ("PriorBox", "DetectionOutput"))
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    toy_options = option_table.options_class()
    with pytest.raises(UnsupportedError) as err:
        convert(model, tmp_path / "refused", toy_options(targets=("caffe", "toy")))
    assert "the toy target writes no PriorBox" in str(err.value)
    assert "the toy target writes no DetectionOutput" in str(err.value)
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())


def test_an_option_of_a_target_not_written_is_refused(with_toy, tmp_path):
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    toy_options = option_table.options_class()
    with pytest.raises(UserError) as err:
        convert(model, tmp_path / "out", toy_options(targets=("caffe",), toy_upper=True))
    assert str(err.value) == ("--toy-upper spells the toy model's ops upper-case: add --target "
                              "toy (or all)")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="--relu6 chooses how the caffe model writes ReLU6: add "
                                        "--target caffe"):
        convert(model, tmp_path / "out", Options(targets=("ncnn",), relu6="relu6_layer"))


def test_presets_take_the_table_keys(with_toy, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("target: toy\ntoy_upper: true\nyolo_head: native\n")
    assert load_config(str(preset)) == {"target": ("toy",), "toy_upper": True,
                                        "yolo_head": "native"}
    preset.write_text("toy_upper: maybe\n")
    with pytest.raises(UserError, match="toy_upper: must be true or false"):
        load_config(str(preset))
