"""`--ncnn-example` for a plain network (a classifier, an embedder): a C++ program that runs
the ncnn model on one image and prints each output the manifest lists.

The pixels are prepared exactly as the detector example prepares them (`example`: OpenCV's
bilinear resize, then ncnn's copy and `substract_mean_normalize` with the manifest's mean and
scale), so the program prints what ssdconv's ncnn runner computed. A vector output (a
classifier's scores, an embedding) prints its top-5 entries as `index value`, then every value
on one line; any other output prints its shape and its values.
"""

from __future__ import annotations

from .example import CMAKE_FILE, CMAKE_TEMPLATE, PIXEL_TYPES, _fill, cpp_float, cpp_string

TOP = 5

CPP_TEMPLATE = r"""// @PROGRAM@.cpp: run the ncnn model @PARAM@ / @BIN@ on one image.
// Written by ssdconv @VERSION@ (--ncnn-example) from @MANIFEST@; every constant below comes from
// that manifest.  Build with the CMakeLists.txt beside it, then, in this folder:
//
//   ./@PROGRAM@ IMAGE
//
// prints, for each output of the network, "output NAME C H W", then (for a vector: a
// classifier's scores or an embedding) its @TOP@ largest entries as "top INDEX VALUE", then
// "values" and every value.  The model files are read from the folder holding the program.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>

#include "cpu.h"
#include "net.h"

namespace model {
const char* const kParam = @PARAM_LITERAL@;
const char* const kBin = @BIN_LITERAL@;
const char* const kInputBlob = @INPUT_BLOB@;
const int kNumOutputs = @NUM_OUTPUTS@;
const char* const kOutputBlobs[kNumOutputs] = {@OUTPUT_BLOBS@};
const int kTop = @TOP@;
const int kWidth = @WIDTH@;
const int kHeight = @HEIGHT@;
// OpenCV reads BGR; the network takes @ORDER@ (ncnn converts while copying the pixels)
const int kPixelType = @PIXEL_TYPE@;
// network input = (pixel - mean) * scale, per channel in @ORDER@ order, pixels 0..255
const float kMean[3] = {@MEAN@};
const float kScale[3] = {@SCALE@};
}  // namespace model

static std::string beside_program(const std::string& argv0, const char* file)
{
    const size_t slash = argv0.find_last_of('/');
    return slash == std::string::npos ? std::string(file) : argv0.substr(0, slash + 1) + file;
}

int main(int argc, char** argv)
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

    ncnn::Net net;
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

    // the same pixels as ssdconv's runners: OpenCV's bilinear resize, then ncnn's copy
    cv::Mat resized;
    cv::resize(bgr, resized, cv::Size(model::kWidth, model::kHeight), 0, 0, cv::INTER_LINEAR);
    ncnn::Mat in = ncnn::Mat::from_pixels(resized.data, model::kPixelType, model::kWidth,
                                          model::kHeight);
    in.substract_mean_normalize(model::kMean, model::kScale);

    ncnn::Extractor ex = net.create_extractor();
    if (ex.input(model::kInputBlob, in) != 0)
    {
        fprintf(stderr, "%s: ncnn could not take the input\n", argv[0]);
        return 1;
    }
    for (int o = 0; o < model::kNumOutputs; o++)
    {
        ncnn::Mat out;
        if (ex.extract(model::kOutputBlobs[o], out) != 0)
        {
            fprintf(stderr, "%s: ncnn could not compute %s\n", argv[0], model::kOutputBlobs[o]);
            return 1;
        }
        std::vector<float> values;
        for (int q = 0; q < out.c; q++)
        {
            const float* p = out.channel(q);
            values.insert(values.end(), p, p + out.w * out.h * out.d);
        }
        printf("output %s %d %d %d\n", model::kOutputBlobs[o], out.c, out.h, out.w);
        if (out.w * out.h * out.d == 1 || (out.dims == 1 && out.w > 1))  // a vector
        {
            std::vector<int> order(values.size());
            std::iota(order.begin(), order.end(), 0);
            const int k = std::min<int>(model::kTop, static_cast<int>(values.size()));
            std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
                return values[a] > values[b] || (values[a] == values[b] && a < b);
            });
            for (int i = 0; i < k; i++)
                printf("top %d %.9g\n", order[i], values[order[i]]);
        }
        printf("values");
        for (const float v : values)
            printf(" %.9g", v);
        printf("\n");
    }
    return 0;
}
"""


def plain_example_files(manifest: dict, param: str, binfile: str, program: str,
                        manifest_file: str) -> dict[str, str]:
    """{file name: text} of the example for a plain network's manifest (its `outputs`)."""
    from ... import __version__

    _, _, height, width = manifest["input_shape"]
    order = manifest["channel_order"]
    outputs = [o["name"] for o in manifest["outputs"]]
    fields = {
        "PROGRAM": program, "PARAM": param, "BIN": binfile, "MANIFEST": manifest_file,
        "VERSION": __version__,
        "PARAM_LITERAL": cpp_string(param), "BIN_LITERAL": cpp_string(binfile),
        "INPUT_BLOB": cpp_string(manifest["blobs"]["input"]),
        "NUM_OUTPUTS": str(len(outputs)),
        "OUTPUT_BLOBS": ", ".join(cpp_string(manifest["blobs"][o]) for o in outputs),
        "TOP": str(TOP),
        "WIDTH": str(int(width)), "HEIGHT": str(int(height)),
        "ORDER": order, "PIXEL_TYPE": PIXEL_TYPES[order],
        "MEAN": ", ".join(cpp_float(v) for v in manifest["mean"]),
        "SCALE": ", ".join(cpp_float(v) for v in manifest["scale"]),
    }
    return {f"{program}.cpp": _fill(CPP_TEMPLATE, fields),
            CMAKE_FILE: _fill(CMAKE_TEMPLATE, fields)}
