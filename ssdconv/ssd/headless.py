"""A GluonCV SSD cut headless (`--headless`): its per-level box and class prediction convs.

What NPU toolchains' SSD samples expect (facts §13.1.6, §13.2.4, §13.4): the network up to the
raw loc/conf maps of each level, in level order (loc0, conf0, loc1, conf1, ...: HiSilicon's
report-node order); the priors as a file; softmax, decode and NMS on the CPU. Layouts:

* nchw: each conv's own output [1, A*4, H, W] / [1, A*(C+1), H, W] (channel a*4+k, resp.
  a*(C+1)+class): no layer after the convs at all, so nothing a toolchain rejects or moves to
  its CPU (RK3566/68 run Permute(0,2,3,1) on the CPU);
* nhwc: each map permuted (0,2,3,1), GluonCV's own transpose, as the NNIE sample's report
  nodes are (its only Permute order). Rockchip's vgg-ssd example concatenates these maps
  flattened: the same values, level after level.

Sidecars: the priors as normalised corners (xmin, ymin, xmax, ymax) in the flattened order
(level, y, x, anchor), then their variances: `NAME_priors.txt` one value per line as Rockchip's
example reads `mbox_priorbox_97.txt`, and `NAME_priors.f32` the same values as little-endian
float32 [2, P, 4] (caffe-ssd's mbox_priorbox blob). The C tail itself decodes against GluonCV's
own float32 anchors (centre form, input pixels), embedded exactly: the corners above are for
code of the user's own.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..family.interface import HeadlessCut
from ..values import HEADLESS_LAYOUTS


def _transpose_after(source, conv) -> tuple[int, int]:
    """The (0,2,3,1) transpose GluonCV applies to a prediction conv (the matcher found it)."""
    found = [n for n in source.consumers(conv.index) if n.op == "transpose"]
    if len(found) != 1:
        raise UserError(f"--headless-layout nhwc: the prediction conv {conv.name} feeds "
                        f"{len(found)} transposes, not one; use --headless-layout nchw")
    return found[0].index, 0


def priors_text(corners: np.ndarray, variances: np.ndarray) -> str:
    """Rockchip's priors file: every corner value, then every variance, one per line."""
    values = np.concatenate([corners.reshape(-1), variances.reshape(-1)]).astype(np.float32)
    return "".join(f"{float(v):.9g}\n" for v in values)


def ssd_cut(head, source, layout: str) -> HeadlessCut:
    """The SSD `head` (an SsdHead) in `source`, cut headless in `layout`."""
    if layout not in HEADLESS_LAYOUTS:
        raise UserError(f"--headless-layout {layout!r}: an SSD offers "
                        f"{', '.join(HEADLESS_LAYOUTS)}")
    spec, match = head.spec, head.match
    outputs: dict[str, tuple[int, int]] = {}
    described = []
    for i, (loc, conf, lv) in enumerate(zip(match.loc_convs, match.conf_convs, spec.levels)):
        for kind, conv, per in (("loc", loc, 4), ("conf", conf, spec.num_classes + 1)):
            where = (conv.index, 0) if layout == "nchw" else _transpose_after(source, conv)
            outputs[f"{kind}.{i}"] = where
            described.append({
                "role": f"{kind}.{i}", "level": i, "shape": list(source.shape(*where)),
                "channels": f"a*{per} + k for anchor a < {lv.per_cell}, "
                            + ("k = dx, dy, dw, dh" if kind == "loc"
                               else f"k = class (0 background, then {spec.num_classes} "
                                    "foreground)")})
    corners = spec.anchors_normalised().astype(np.float32)
    variances = np.broadcast_to(np.asarray(spec.decoder.stds, np.float32), corners.shape)

    def tail(name: str) -> dict[str, str]:
        from ..backend.onnx.ssd_head import head_kwargs
        from ..tail import c_prefix, ssd_tail_source

        levels = [(lv.height, lv.width, lv.per_cell) for lv in spec.levels]
        return ssd_tail_source(c_prefix(name), stem=name, levels=levels, layout=layout,
                               **head_kwargs(head, decoder=head.decoder))

    def sidecars(name: str) -> dict[str, bytes]:
        blob = np.stack([corners, variances]).astype("<f4").tobytes()
        return {f"{name}_priors.txt": priors_text(corners, variances).encode(),
                f"{name}_priors.f32": blob}

    loc_roles = tuple(f"loc.{i}" for i in range(len(spec.levels)))
    conf_roles = tuple(f"conf.{i}" for i in range(len(spec.levels)))
    meaning = {
        "outputs": described,
        "priors": {"count": int(spec.num_priors), "order": "level, y, x, anchor",
                   "format": "normalised corners xmin, ymin, xmax, ymax of every prior, then "
                             "its variances (_priors.txt: one value per line; _priors.f32: "
                             "little-endian float32 [2, P, 4])"},
        "tail": {"inputs": "loc maps of every level, then conf maps, in this layout",
                 "rows": "GluonCV's rows (class id, score, x1, y1, x2, y2 in input pixels), "
                         "-1 rows after the last detection",
                 "computes": "softmax, GluonCV's box decoder (its variances and exp), the 0.01 "
                             "class threshold, top-k over all classes, per-class NMS, post-NMS "
                             "top-k, as MXNet does in float32"},
    }
    return HeadlessCut(outputs=outputs, meaning=meaning, tail_inputs=(loc_roles, conf_roles),
                       tail=tail, sidecars=sidecars)
