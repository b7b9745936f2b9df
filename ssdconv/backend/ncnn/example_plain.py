"""`--ncnn-example` for a plain network (a classifier, an embedder): a C++ program that runs
the ncnn model on one image and prints each output the manifest lists.

The pixels are prepared exactly as the detector example prepares them (`example`: OpenCV's
bilinear resize, then ncnn's copy and `substract_mean_normalize` with the manifest's mean and
scale), so the program prints what ssdconv's ncnn runner computed. A vector output (a
classifier's scores, an embedding) prints its top-5 entries as `index value`, then every value
on one line; any other output prints its shape and its values.
"""

from __future__ import annotations

from .example import CMAKE_FILE, CMAKE_TEMPLATE, _fill, cpp_string, input_fields

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
@INPUT_CONSTANTS@}  // namespace model

@BESIDE_PROGRAM@
@MAIN_START@
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

    outputs = [o["name"] for o in manifest["outputs"]]
    fields = {
        **input_fields(manifest),
        "PROGRAM": program, "PARAM": param, "BIN": binfile, "MANIFEST": manifest_file,
        "VERSION": __version__,
        "PARAM_LITERAL": cpp_string(param), "BIN_LITERAL": cpp_string(binfile),
        "INPUT_BLOB": cpp_string(manifest["blobs"]["input"]),
        "NUM_OUTPUTS": str(len(outputs)),
        "OUTPUT_BLOBS": ", ".join(cpp_string(manifest["blobs"][o]) for o in outputs),
        "TOP": str(TOP),
    }
    return {f"{program}.cpp": _fill(CPP_TEMPLATE, fields),
            CMAKE_FILE: _fill(CMAKE_TEMPLATE, fields)}
