"""`--ncnn-example` for a RetinaFace: a C++ program that runs the ncnn model on one image and
then insightface's decode (not ncnn's example's, whose +0.5 px centres, +1 widths and clipping
after NMS give other boxes: facts §12.2.1), so users get insightface's faces.

Every constant comes from the manifest: the output blobs per stride, the anchors (insightface's
base anchors per stride, computed here by `anchors.base_anchors`, inclusive corners), the score
and NMS thresholds, the input size and preprocessing. The pixels are prepared as every ssdconv
example prepares them (`ssdconv.backend.ncnn.example`: OpenCV's bilinear resize to the model's
input, ncnn's copy), so the program decodes what ssdconv's ncnn runner computes; faces are
printed in the model input's pixels and in the image's (scaled back, as insightface divides by
its `im_scale`).
"""

from __future__ import annotations

from ..backend.ncnn.example import (
    CMAKE_FILE,
    CMAKE_TEMPLATE,
    _fill,
    cpp_float,
    cpp_string,
    input_fields,
)
from .anchors import StrideAnchors, base_anchors

CPP_TEMPLATE = r"""// @PROGRAM@.cpp: run the ncnn model @PARAM@ / @BIN@ (a RetinaFace) on one
// image, then insightface's decode (retinaface.py RetinaFace.detect: +1 widths, boxes clipped
// before the score threshold, NMS with +1 areas suppressing at IoU >= the threshold).
// Written by ssdconv @VERSION@ (--ncnn-example) from @MANIFEST@; every constant below comes from
// that manifest.  Build with the CMakeLists.txt beside it, then, in this folder:
//
//   ./@PROGRAM@ IMAGE
//
// prints one line per face, "face SCORE X1 Y1 X2 Y2 LX0 LY0 ... LX4 LY4" in IMAGE's pixels
// (then "input ..." with the same in the model input's pixels).  The model files are read from
// the folder holding the program.
#include <algorithm>
#include <cmath>
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
@INPUT_CONSTANTS@const int kNumStrides = @NUM_STRIDES@;
const int kStrides[kNumStrides] = {@STRIDES@};
const int kAnchors[kNumStrides] = {@ANCHOR_COUNTS@};  // A per stride
const char* const kCls[kNumStrides] = {@CLS@};
const char* const kBbox[kNumStrides] = {@BBOX@};
const char* const kLandmark[kNumStrides] = {@LANDMARK@};  // "" without landmark outputs
// insightface's base anchors (x1, y1, x2, y2, inclusive) of cell (0, 0), per stride, A each
const double kBaseAnchors[] = {@BASE_ANCHORS@};
const float kScoreThreshold = @SCORE@;
const float kNmsThreshold = @NMS@;
}  // namespace model

struct Face
{
    float score;
    double box[4];
    double landmarks[10];
};

@BESIDE_PROGRAM@
static std::vector<float> channel_values(const ncnn::Mat& m, int q)
{
    const float* p = m.channel(q);
    return std::vector<float>(p, p + m.w * m.h);
}

// insightface's cpu_nms: score order, +1 areas, suppress at IoU >= threshold
static std::vector<Face> nms(std::vector<Face> faces)
{
    std::stable_sort(faces.begin(), faces.end(),
                     [](const Face& a, const Face& b) { return a.score > b.score; });
    std::vector<Face> kept;
    std::vector<bool> suppressed(faces.size(), false);
    for (size_t i = 0; i < faces.size(); i++)
    {
        if (suppressed[i])
            continue;
        kept.push_back(faces[i]);
        const double* a = faces[i].box;
        const double area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1);
        for (size_t j = i + 1; j < faces.size(); j++)
        {
            const double* b = faces[j].box;
            const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1);
            const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1);
            const double area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
            if (w * h / (area_a + area_b - w * h) >= model::kNmsThreshold)
                suppressed[j] = true;
        }
    }
    return kept;
}

@MAIN_START@
    std::vector<Face> faces;
    const double* base = model::kBaseAnchors;
    for (int s = 0; s < model::kNumStrides; s++)
    {
        ncnn::Mat cls, bbox, marks;
        const bool with_marks = model::kLandmark[s][0] != '\0';
        if (ex.extract(model::kCls[s], cls) != 0 || ex.extract(model::kBbox[s], bbox) != 0
            || (with_marks && ex.extract(model::kLandmark[s], marks) != 0))
        {
            fprintf(stderr, "%s: ncnn could not compute stride %d\n", argv[0], model::kStrides[s]);
            return 1;
        }
        const int A = model::kAnchors[s];
        const int w = bbox.w, h = bbox.h;
        for (int a = 0; a < A; a++, base += 4)
        {
            // the class output is (2A, H, W) after the reshape-softmax-reshape: face = A + a
            const std::vector<float> score = channel_values(cls, A + a);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    const int i = y * w + x;
                    const double x1 = base[0] + x * model::kStrides[s];
                    const double y1 = base[1] + y * model::kStrides[s];
                    const double aw = base[2] - base[0] + 1.0, ah = base[3] - base[1] + 1.0;
                    const double cx = x1 + 0.5 * (aw - 1.0), cy = y1 + 0.5 * (ah - 1.0);
                    const double dx = bbox.channel(4 * a)[i], dy = bbox.channel(4 * a + 1)[i];
                    const double dw = bbox.channel(4 * a + 2)[i], dh = bbox.channel(4 * a + 3)[i];
                    const double px = dx * aw + cx, py = dy * ah + cy;
                    const double pw = std::exp(dw) * aw, ph = std::exp(dh) * ah;
                    Face f;
                    f.score = score[i];
                    f.box[0] = std::min(std::max(px - 0.5 * (pw - 1.0), 0.0), model::kWidth - 1.0);
                    f.box[1] = std::min(std::max(py - 0.5 * (ph - 1.0), 0.0), model::kHeight - 1.0);
                    f.box[2] = std::min(std::max(px + 0.5 * (pw - 1.0), 0.0), model::kWidth - 1.0);
                    f.box[3] = std::min(std::max(py + 0.5 * (ph - 1.0), 0.0), model::kHeight - 1.0);
                    for (int k = 0; k < 5; k++)
                    {
                        const int c = 10 * a + 2 * k;
                        f.landmarks[2 * k] = with_marks ? marks.channel(c)[i] * aw + cx : 0.0;
                        f.landmarks[2 * k + 1] = with_marks ? marks.channel(c + 1)[i] * ah + cy
                                                            : 0.0;
                    }
                    if (f.score >= model::kScoreThreshold)
                        faces.push_back(f);
                }
        }
    }
    const double sx = bgr.cols / static_cast<double>(model::kWidth);
    const double sy = bgr.rows / static_cast<double>(model::kHeight);
    for (const Face& f : nms(faces))
    {
        printf("face %.6f", f.score);
        for (int k = 0; k < 4; k++)
            printf(" %.4f", f.box[k] * (k % 2 ? sy : sx));
        for (int k = 0; k < 10; k++)
            printf(" %.4f", f.landmarks[k] * (k % 2 ? sy : sx));
        printf("\ninput %.6f", f.score);
        for (int k = 0; k < 4; k++)
            printf(" %.4f", f.box[k]);
        for (int k = 0; k < 10; k++)
            printf(" %.4f", f.landmarks[k]);
        printf("\n");
    }
    return 0;
}
"""


def example_files(manifest: dict, param: str, binfile: str, program: str,
                  manifest_file: str) -> dict[str, str]:
    """{file name: text} of the RetinaFace example for the manifest's model."""
    from .. import __version__

    section = manifest["retinaface"]
    blobs = manifest["blobs"]
    strides = [a["stride"] for a in section["anchors"]]
    anchors = [StrideAnchors(a["stride"], tuple(a["scales"]), a["base_size"], tuple(a["ratios"]))
               for a in section["anchors"]]
    base = [v for a in anchors for v in base_anchors(a).reshape(-1)]

    def names(kind: str) -> str:
        return ", ".join(cpp_string(blobs.get(f"{kind}_stride{s}", "")) for s in strides)

    fields = {
        **input_fields(manifest),
        "PROGRAM": program, "PARAM": param, "BIN": binfile, "MANIFEST": manifest_file,
        "VERSION": __version__,
        "PARAM_LITERAL": cpp_string(param), "BIN_LITERAL": cpp_string(binfile),
        "INPUT_BLOB": cpp_string(blobs["input"]),
        "NUM_STRIDES": str(len(strides)), "STRIDES": ", ".join(map(str, strides)),
        "ANCHOR_COUNTS": ", ".join(str(a.count) for a in anchors),
        "CLS": names("cls"), "BBOX": names("bbox"), "LANDMARK": names("landmark"),
        "BASE_ANCHORS": ", ".join(repr(float(v)) for v in base),
        "SCORE": cpp_float(section["decode"]["score_threshold"]),
        "NMS": cpp_float(section["decode"]["nms_threshold"]),
    }
    return {f"{program}.cpp": _fill(CPP_TEMPLATE, fields),
            CMAKE_FILE: _fill(CMAKE_TEMPLATE, fields)}
