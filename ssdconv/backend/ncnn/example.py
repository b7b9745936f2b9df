"""`--ncnn-example`: a ready C++ program (NAME_example.cpp + CMakeLists.txt) for the ncnn model.

Every value the program needs (file and blob names, input size, channel order, mean, scale,
label offset, class names) is written into its source from the manifest, the one record of what
the model expects, so nobody copies preprocessing constants by hand.

Why the example resizes with OpenCV and then calls `ncnn::Mat::from_pixels` rather than
`from_pixels_resize`: ssdconv's runners (verify/images.py `load_rgb`) resize the BGR image with
cv2.resize INTER_LINEAR and ncnn's bilinear resize is not bit-identical to it (at 300x300,
0.04-0.5% of the sample images' resized values differ by 1; on ssd_300_mobilenet0.25_voc that
moved the top-5 scores by up to 7e-4 and boxes by up to 0.06 px, and reordered low-scoring
rows). The program links OpenCV anyway to read and draw images, so `cv::resize` +
`from_pixels` feeds ncnn exactly the pixels ssdconv verified (and the runner's lines come out
identical); the `from_pixels_resize` call is in the source as a comment for OpenCV-free ports.

ncnn runs in fp32 (fp16 packing/storage/arithmetic off), as the checked ncnn runner does; the
source says which three options to turn on for ncnn's faster defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ...errors import UserError

CMAKE_FILE = "CMakeLists.txt"
DRAW_MIN_SCORE = 0.5  # detections drawn into the output image; as verify's overlays
PIXEL_TYPES = {"BGR": "ncnn::Mat::PIXEL_BGR", "RGB": "ncnn::Mat::PIXEL_BGR2RGB"}  # from OpenCV BGR
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # a CMake target name, a plain file name

CPP_TEMPLATE = r"""// @PROGRAM@.cpp: run the ncnn model @PARAM@ / @BIN@ on one image.
// Written by ssdconv @VERSION@ (--ncnn-example) from @MANIFEST@; every constant below comes from
// that manifest.  Build with the CMakeLists.txt beside it, then, in this folder:
//
//   ./@PROGRAM@ IMAGE [OUTPUT_IMAGE]
//
// prints one line per detection, "class score x1 y1 x2 y2" with the box in pixels of IMAGE,
// and writes IMAGE's detections scoring at least @DRAW_MIN@ drawn into OUTPUT_IMAGE (default:
// IMAGE's name with _detections.png, in the current folder).  The model files are read from
// the folder holding the program.
#include <algorithm>
#include <cstdio>
#include <string>

#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>

#include "cpu.h"
#include "net.h"

namespace model {
const char* const kParam = @PARAM_LITERAL@;
const char* const kBin = @BIN_LITERAL@;
const char* const kInputBlob = @INPUT_BLOB@;
const char* const kOutputBlob = @OUTPUT_BLOB@;  // rows [label, score, x1, y1, x2, y2], 0..1
@INPUT_CONSTANTS@const int kLabelOffset = @LABEL_OFFSET@;  // label 0 is the background
const int kNumClasses = @NUM_CLASSES@;
const char* const kClasses[kNumClasses] = {
@CLASSES@
};
const float kDrawMinScore = @DRAW_MIN@f;
}  // namespace model

@BESIDE_PROGRAM@
static std::string default_output(const std::string& image)
{
    const size_t slash = image.find_last_of('/');
    std::string base = slash == std::string::npos ? image : image.substr(slash + 1);
    const size_t dot = base.find_last_of('.');
    if (dot != std::string::npos && dot > 0)
        base = base.substr(0, dot);
    return base + "_detections.png";
}

int main(int argc, char** argv)
{
    if (argc < 2 || argc > 3)
    {
        fprintf(stderr, "usage: %s IMAGE [OUTPUT_IMAGE]\n", argv[0]);
        return 2;
    }
    const std::string image_path = argv[1];
    cv::Mat bgr = cv::imread(image_path, cv::IMREAD_COLOR);
    if (bgr.empty())
    {
        fprintf(stderr, "%s: cannot read image %s\n", argv[0], image_path.c_str());
        return 1;
    }

@LOAD_AND_PREPARE@

    ncnn::Extractor ex = net.create_extractor();
    ncnn::Mat out;
    if (ex.input(model::kInputBlob, in) != 0 || ex.extract(model::kOutputBlob, out) != 0)
    {
        fprintf(stderr, "%s: ncnn could not run the model\n", argv[0]);
        return 1;
    }

    static const cv::Scalar palette[] = {  // BGR
        cv::Scalar(75, 25, 230), cv::Scalar(75, 180, 60), cv::Scalar(200, 130, 0),
        cv::Scalar(48, 130, 245), cv::Scalar(180, 30, 145), cv::Scalar(240, 240, 70),
        cv::Scalar(230, 50, 240), cv::Scalar(60, 245, 210), cv::Scalar(190, 190, 250),
        cv::Scalar(128, 128, 0)};
    for (int i = 0; i < out.h; i++)  // no detection: an empty Mat, out.h == 0
    {
        const float* row = out.row(i);
        const int id = static_cast<int>(row[0]) - model::kLabelOffset;
        const std::string name = id >= 0 && id < model::kNumClasses
                                     ? std::string(model::kClasses[id])
                                     : "label" + std::to_string(static_cast<int>(row[0]));
        const float score = row[1];
        const float x1 = row[2] * bgr.cols, y1 = row[3] * bgr.rows;
        const float x2 = row[4] * bgr.cols, y2 = row[5] * bgr.rows;
        printf("%s %.6f %.3f %.3f %.3f %.3f\n", name.c_str(), score, x1, y1, x2, y2);
        if (score < model::kDrawMinScore)
            continue;
        const cv::Scalar colour = palette[(id < 0 ? 0 : id) % 10];
        cv::rectangle(bgr, cv::Point(cvRound(x1), cvRound(y1)), cv::Point(cvRound(x2), cvRound(y2)),
                      colour, 2);
        char text[256];
        snprintf(text, sizeof(text), "%s %.2f", name.c_str(), score);
        int baseline = 0;
        const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, 0.4, 1, &baseline);
        const int y = std::max(size.height + 2, cvRound(y1));
        cv::rectangle(bgr, cv::Point(cvRound(x1), y - size.height - 3),
                      cv::Point(cvRound(x1) + size.width + 2, y), colour, -1);
        cv::putText(bgr, text, cv::Point(cvRound(x1) + 1, y - 2), cv::FONT_HERSHEY_SIMPLEX, 0.4,
                    cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
    }
    const std::string output = argc > 2 ? std::string(argv[2]) : default_output(image_path);
    if (!cv::imwrite(output, bgr))
    {
        fprintf(stderr, "%s: cannot write %s\n", argv[0], output.c_str());
        return 1;
    }
    return 0;
}
"""

# Pieces every example's source shares (a detector's and a plain network's, `example_plain`):
# the model's input constants, the helper finding the files beside the program, and loading
# the net and preparing the input exactly as ssdconv's runners do.
CPP_INPUT_CONSTANTS = """\
const int kWidth = @WIDTH@;
const int kHeight = @HEIGHT@;
// OpenCV reads BGR; the network takes @ORDER@ (ncnn converts while copying the pixels)
const int kPixelType = @PIXEL_TYPE@;
// network input = (pixel - mean) * scale, per channel in @ORDER@ order, pixels 0..255
const float kMean[3] = {@MEAN@};
const float kScale[3] = {@SCALE@};
"""
CPP_BESIDE_PROGRAM = """\
static std::string beside_program(const std::string& argv0, const char* file)
{
    const size_t slash = argv0.find_last_of('/');
    return slash == std::string::npos ? std::string(file) : argv0.substr(0, slash + 1) + file;
}
"""
CPP_LOAD_AND_PREPARE = r"""    ncnn::Net net;
    // fp32, as ssdconv's check ran it; set these true for ncnn's faster fp16 defaults
    net.opt.use_fp16_packed = false;
    net.opt.use_fp16_storage = false;
    net.opt.use_fp16_arithmetic = false;
    net.opt.num_threads = ncnn::get_big_cpu_count();
    const std::string param = beside_program(argv[0], model::kParam);
    const std::string bin = beside_program(argv[0], model::kBin);
    if (net.load_param(param.c_str()) != 0 || net.load_model(bin.c_str()) != 0)
    {
        fprintf(stderr, "%s: cannot load %s / %s\n", argv[0], param.c_str(), bin.c_str());
        return 1;
    }

    // the same pixels as ssdconv's runners: OpenCV's bilinear resize, then ncnn's copy.
    // Without OpenCV: ncnn::Mat::from_pixels_resize(bgr.data, model::kPixelType, bgr.cols,
    // bgr.rows, model::kWidth, model::kHeight) (ncnn's bilinear; a few values differ by 1).
    cv::Mat resized;
    cv::resize(bgr, resized, cv::Size(model::kWidth, model::kHeight), 0, 0, cv::INTER_LINEAR);
    ncnn::Mat in = ncnn::Mat::from_pixels(resized.data, model::kPixelType, model::kWidth,
                                          model::kHeight);
    in.substract_mean_normalize(model::kMean, model::kScale);
"""


# A one-image program's start (the plain network's and a family's own): the usage, the image,
# the net loaded and the input given to an extractor `ex`.
CPP_MAIN_START = r"""int main(int argc, char** argv)
{
    if (argc != 2)
    {
        fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
        return 2;
    }
    cv::Mat bgr = cv::imread(argv[1], cv::IMREAD_COLOR);
    if (bgr.empty())
    {
        fprintf(stderr, "%s: cannot read image %s\n", argv[0], argv[1]);
        return 1;
    }

@LOAD_AND_PREPARE@

    ncnn::Extractor ex = net.create_extractor();
    if (ex.input(model::kInputBlob, in) != 0)
    {
        fprintf(stderr, "%s: ncnn could not take the input\n", argv[0]);
        return 1;
    }"""


def input_fields(manifest: dict) -> dict[str, str]:
    """The fields of the shared pieces, from the manifest (filled before the rest)."""
    _, _, height, width = manifest["input_shape"]
    order = manifest["channel_order"]
    pieces = {"MAIN_START": CPP_MAIN_START, "INPUT_CONSTANTS": CPP_INPUT_CONSTANTS,
              "BESIDE_PROGRAM": CPP_BESIDE_PROGRAM,
              "LOAD_AND_PREPARE": CPP_LOAD_AND_PREPARE.rstrip("\n")}
    return {**pieces, "WIDTH": str(int(width)), "HEIGHT": str(int(height)), "ORDER": order,
            "PIXEL_TYPE": PIXEL_TYPES[order],
            "MEAN": ", ".join(cpp_float(v) for v in manifest["mean"]),
            "SCALE": ", ".join(cpp_float(v) for v in manifest["scale"])}


CMAKE_TEMPLATE = r"""# Builds @PROGRAM@, the C++ example ssdconv @VERSION@ wrote for @PARAM@ / @BIN@
# (--ncnn-example).  Needs ncnn's C++ library (its install prefix holds lib/cmake/ncnn; ssdconv's
# bench/build_ncnn_lib.sh builds one) and OpenCV (core, imgproc, imgcodecs).  In this folder:
#
#   cmake -S . -B build -Dncnn_DIR=NCNN_PREFIX/lib/cmake/ncnn
#   cmake --build build
#   ./@PROGRAM@ IMAGE
#
# The program is written into this folder, beside the model files it reads.
cmake_minimum_required(VERSION 3.10)
project(@PROGRAM@ CXX)

set(CMAKE_CXX_STANDARD 11)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
    set(CMAKE_BUILD_TYPE Release)
endif()

find_package(ncnn REQUIRED)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)

add_executable(@PROGRAM@ @PROGRAM@.cpp)
target_include_directories(@PROGRAM@ PRIVATE ${OpenCV_INCLUDE_DIRS})
target_link_libraries(@PROGRAM@ PRIVATE ncnn ${OpenCV_LIBS})
# $<1:...> keeps multi-config generators from adding a Debug/Release subfolder
set_target_properties(@PROGRAM@ PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY "$<1:${CMAKE_CURRENT_SOURCE_DIR}>")
"""


# A family whose model needs its own program (a decode outside the graph: RetinaFace) registers
# its writer here, by the manifest's `family`, when its module loads; every other model gets the
# detector's program (a `detections` blob) or the plain network's (`example_plain`).
EXAMPLE_WRITERS: dict[str, Callable[..., dict[str, str]]] = {}


def register_example(family: str, writer: Callable[..., dict[str, str]]) -> None:
    """`writer(manifest, param, bin, program, manifest_file) -> {file name: text}` writes the
    example of family `family`'s models."""
    EXAMPLE_WRITERS[family] = writer


def program_name(stem: str) -> str:
    """The example's program (and CMake target) name for output stem `stem`; a UserError when
    the stem holds characters a CMake target name cannot (they allow A-Z a-z 0-9 _ . + -)."""
    name = f"{stem}_example"
    if not _PROGRAM_NAME.fullmatch(name):
        raise UserError(f"--ncnn-example: the output name {stem!r} also names the C++ program "
                        "and its CMake target, which allow only letters, digits and _ . + -; "
                        "pass --name with such a name")
    return name


def cpp_string(text: str) -> str:
    """A C++ string literal holding `text` (UTF-8): quotes, backslashes, '?' (trigraphs) and
    every byte outside printable ASCII escaped in octal, which never runs into the next char."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def cpp_float(value: float) -> str:
    """`value` as the float32 the Python runner uses (np.float32), in the shortest decimal that
    parses back to exactly that float."""
    return str(np.float32(value)) + "f"


def _fill(template: str, fields: dict[str, str]) -> str:
    for key, value in fields.items():
        template = template.replace(f"@{key}@", value)
    left = re.search(r"@[A-Z_]+@", template)
    assert left is None, f"unfilled field {left.group(0)}"
    return template


def example_files(manifest: dict, param: str, binfile: str, program: str,
                  manifest_file: str) -> dict[str, str]:
    """{file name: text} of the example for the model the manifest describes.

    `param`/`binfile` are the model's file names beside it, `program` the checked
    `program_name`, `manifest_file` the manifest's file name (quoted in the source's header)."""
    from ... import __version__

    classes = manifest["classes"]
    fields = {
        **input_fields(manifest),
        "PROGRAM": program, "PARAM": param, "BIN": binfile, "MANIFEST": manifest_file,
        "VERSION": __version__,
        "PARAM_LITERAL": cpp_string(param), "BIN_LITERAL": cpp_string(binfile),
        "INPUT_BLOB": cpp_string(manifest["blobs"]["input"]),
        "OUTPUT_BLOB": cpp_string(manifest["blobs"]["detections"]),
        "LABEL_OFFSET": str(int(manifest["label_offset"])),
        "NUM_CLASSES": str(len(classes)),
        "CLASSES": "\n".join(f"    {cpp_string(c)}," for c in classes),
        "DRAW_MIN": f"{DRAW_MIN_SCORE:g}",
    }
    return {f"{program}.cpp": _fill(CPP_TEMPLATE, fields),
            CMAKE_FILE: _fill(CMAKE_TEMPLATE, fields)}
