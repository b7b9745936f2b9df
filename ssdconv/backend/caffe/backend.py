"""The caffe-ssd target behind the backend seam: NAME.prototxt + NAME.caffemodel, run by
OpenCV DNN's Caffe importer (`runner.OpenCVRunner`)."""

from __future__ import annotations

from pathlib import Path

from ... import values
from ...option import Option
from ..interface import Backend, Runner, RunSettings, Written
from .lower import RELU6_MODES


def relu6_mode(value) -> str:
    return values.choice(value, RELU6_MODES)


class CaffeBackend(Backend):
    name = "caffe"
    runtimes = ("opencv",)
    extensions = ("prototxt", "caffemodel")
    options = (
        Option("relu6", "compose", relu6_mode,
               "ReLU6 in caffe: compose, the exact stock-layer composition (default), or "
               "relu6_layer, a ReLU6 layer (OpenCV/caffe2ncnn only)", flag="--relu6",
               commands=("convert",), needs="chooses how the caffe model writes ReLU6"),
    )


    def write(self, graph, staging: Path, name: str, options, prepared) -> Written:
        from .emit import write_caffe

        info = write_caffe(graph, staging, name, relu6=options.relu6)
        return Written(files={"prototxt": str(info["prototxt"]),
                              "caffemodel": str(info["caffemodel"])},
                       choices=list(info["choices"]))

    def npu_lint(self, files: dict[str, str], input_shape: list[int]) -> list[str] | None:
        from .npu_lint import lint

        return lint(files["prototxt"], files["caffemodel"], input_shape)

    def runners(self, files: dict[str, str], manifest: dict, settings: RunSettings,
                runtimes: tuple[str, ...] | None = None) -> list[Runner]:
        from .runner import OpenCVRunner

        return [OpenCVRunner(files["prototxt"], files["caffemodel"], manifest,
                             settings.winograd)]


BACKEND = CaffeBackend()
