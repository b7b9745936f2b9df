"""BENCHMARKS.md's RKNN simulator section, from bench/rknn_target.py's results (each model's
`rknn` entry): raw maps and detections of ssdconv's headless conversions in rknn-toolkit2's
simulator (fp16, int8) against Gluon float32, the demos' mAP, accuracy_analysis's worst layers.

Every cell is a measured figure or says why there is none.
"""

from __future__ import annotations

from common import by_manifest_role
from onnx_report import run_record

HEADING = "## RKNN simulator"
WEIGHTS = ("the demos (`demo_ssd`, `demo_yolo3`): the shipped trained checkpoints "
           "(ssdconv/samples/demo); zoo names: GluonCV's architectures with seeded random "
           "weights (`load_model(name, seed=0)`), so they have no mAP, only agreement.")


def _entries(results: dict) -> dict:
    return {m: e["rknn"] for m, e in results.items() if e.get("rknn")}


def _g(x: float | None, fmt: str = ".1e") -> str:
    return "–" if x is None else format(x, fmt)


def _roles(values: dict, worst) -> str:
    folded = by_manifest_role(values) if worst is max else \
        {k: -v for k, v in by_manifest_role({r: -x for r, x in values.items()}).items()}
    return " / ".join(f"{k} {_g(v, '.1e' if worst is max else '.6f')}"
                      for k, v in folded.items())


def _det(d: dict) -> tuple[str, str]:
    every = (f"{d['images_equal']}/{d['images']} images; {d['rows_matched']}/"
             f"{d['rows_gluon']} rows")
    conf = (f"{d['confident_images_equal']}/{d['images']} images equal; found "
            f"{d['confident_found']}/{d['confident_gluon']}, extra {d['confident_extra']}")
    return every, conf


def agreement_table(entries: dict) -> list[str]:
    lines = ["| model | format | precision | max rel. error (per role) | min cosine (per role) | "
             "all rows equal | score ≥ 0.5: row for row; by IoU | mAP | sim. ms/img |",
             "|---" * 9 + "|"]
    for model, e in entries.items():
        if "error" in e:
            lines.append(f"| {model} | {e['error']} |" + " |" * 7)
            continue
        for key, r in e.get("runs", {}).items():
            fmt, _, precision = key.partition(" ")
            if "error" in r:
                lines.append(f"| {model} | {fmt} | {precision} | fails: {r['error']} |"
                             + " |" * 5)
                continue
            every, conf = _det(r["detections"])
            lines.append(f"| {model} | {fmt} | {precision} | {_roles(r['max_rel_err'], max)} | "
                         f"{_roles(r['min_cos'], min)} | {every} | {conf} | "
                         f"{_g(r.get('map'), '.4f')} | {_g(r.get('inference_ms_median'), '.0f')} |")
    return lines


def map_table(entries: dict) -> list[str]:
    demos = {m: e for m, e in entries.items() if "gluon_map" in e}
    if not demos:
        return []
    keys = list(dict.fromkeys(k for e in demos.values() for k in e.get("runs", {})))
    lines = ["| model | eval images | Gluon float32 | " + " | ".join(f"RKNN {k}" for k in keys)
             + " |", "|---" * (3 + len(keys)) + "|"]
    for model, e in demos.items():
        cells = []
        for k in keys:
            r = e["runs"].get(k)
            cells.append("–" if not r else "fails" if "error" in r else
                         f"{r['map']:.4f} ({r['map'] - e['gluon_map']:+.4f})")
        lines.append(f"| {model} | {e['images']['eval']} | {e['gluon_map']:.4f} | "
                     + " | ".join(cells) + " |")
    return lines


def worst_layers(entries: dict) -> list[str]:
    lines = []
    for model, e in entries.items():
        for key, r in e.get("runs", {}).items():
            worst = r.get("worst_layers")
            if worst:
                cells = "; ".join(f"`{w['layer']}` ({w['op']}) {w['entire_cos']:.4f} / "
                                  f"{w['single_cos']:.4f}" for w in worst)
                lines.append(f"- {model}, {key}: {cells}")
    return lines


def section(data: dict) -> list[str]:
    """The section of a `run.py --stage rknn` run, headed by its run's record."""
    entries, meta = _entries(data["results"]), data["meta"]
    if not entries:
        return [HEADING, "", "No model was measured in the RKNN simulator."]
    rk = meta.get("rknn", {})
    toolkit = next((e.get("toolkit") for e in entries.values() if e.get("toolkit")), None)
    calib = next((e.get("calibration") for e in entries.values() if e.get("calibration")), "–")
    return [
        HEADING,
        "",
        *run_record(meta, WEIGHTS, pnnx=False)[:-1],
        f"- RKNN: rknn-toolkit2 {toolkit or '?'} (bench/setup_rknn.sh's .venv-rknn), simulator "
        f"(`init_runtime()` without a target), target_platform {rk.get('platform', '?')}; "
        f"int8 calibration: {calib}",
        "",
        "bench/rknn_target.py per model: `convert(model, DIR, Options(targets=(\"caffe\", "
        "\"onnx\"), headless=True))` (the network up to its raw prediction maps, the manifest, "
        "the generated C tail), then bench/rknn_runner.py in .venv-rknn per format and "
        "precision: `load_caffe` / `load_onnx` (outputs named in the manifest's order), "
        "`config(mean_values, std_values = 1/scale, quant_img_RGB2BGR = channel order is "
        "BGR)`, `build(do_quantization)` (fp16: none, the simulator's float; int8: w8a8 with "
        "quantized_algorithm normal, for the demo SSD's caffe conversion also mmse and "
        "kl_divergence), "
        "`inference` on uint8 NHWC images already at the network size in the model's channel "
        "order. Held out from calibration: the demo's evaluation images (`make_sample(\"test\", "
        "i)`, the split `ssdconv eval` scores) and the six sample photos, all resized to the "
        "network size. *max rel. error*: the largest |RKNN − Gluon float32| over a map and the "
        "images, divided by that map's largest |Gluon| (the worst map of each role: SSD loc, "
        "conf; YOLOv3 outputs); *min cosine*: the smallest over maps and images; *all rows "
        "equal*: ssdconv's C tail on RKNN's maps against GluonCV's own post-processing, every "
        "row (also the near-zero ones) compared row for row (`compare_rows`: same label, score "
        "within 1e-3, box IoU ≥ 0.99 or corners within 0.01 px, float32 NMS ties "
        "explained): images whose every row matched, rows matched of Gluon's; *score ≥ 0.5*: "
        "both sides cut at 0.5, images equal row for row; then by IoU whatever the order and "
        "score: Gluon's detections with an RKNN partner (same label, IoU ≥ 0.5, score ≥ 0.3) "
        "of all Gluon's, RKNN's without such a Gluon partner (extra); *mAP*: VOC07 mAP@0.5 "
        "(GluonCV's VOC07MApMetric, boxes clipped to the image, as `ssdconv eval`) of the C "
        "tail's rows; *sim. ms/img*: the simulator's median `inference` time on this x86 CPU "
        "(not the NPU's latency).",
        "",
        *agreement_table(entries),
        "",
        *(["Demo mAP (Δ to Gluon float32):", "", *map_table(entries), ""]
          if map_table(entries) else []),
        "`accuracy_analysis` on the first held-out image, int8 against the simulator's float "
        "model, the five layers with the lowest cosine (entire: the error accumulated from the "
        "input / single: the layer alone on float inputs):",
        "",
        *(worst_layers(entries) or ["- none ran"]),
    ]
