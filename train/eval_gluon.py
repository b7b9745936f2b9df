"""VOC07 mAP@0.5 of an exported demo model in Gluon, on held-out images of the shapes data.

This is the reference figure a conversion must keep: it scores the exported files themselves
(`PREFIX-symbol.json` + `PREFIX-0000.params`, what ssdconv converts), on the test split, which
training never draws from, with the family's GluonCV val transform. Run from the repository root:

    .venv/bin/python train/eval_gluon.py                 # the demo SSD, 1000 test images
    .venv/bin/python train/eval_gluon.py --split val --count 500
    .venv/bin/python train/eval_gluon.py --model yolo3 --count 500   # the demo YOLOv3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"  # as in training (fix_gamma binds under MKLDNN)

from ssdconv.shipped import (  # noqa: E402  (no mxnet import: the setting above holds)
    DEMO_PREFIX,
    DEMO_YOLO_PREFIX,
)

PREFIXES = {"ssd": DEMO_PREFIX, "yolo3": DEMO_YOLO_PREFIX}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ssd", choices=sorted(PREFIXES),
                    help="which demo detector (its val transform and default prefix)")
    ap.add_argument("--prefix", default=None,
                    help="export prefix (PREFIX-symbol.json, PREFIX-0000.params; default: the "
                         "shipped demo model of --model)")
    ap.add_argument("--split", default="test", choices=["test", "val", "train"])
    ap.add_argument("--count", type=int, default=1000, help="number of images (>= 500)")
    ap.add_argument("--start", type=int, default=0, help="first image index")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)

    from ssdconv.demo.evaluate import evaluate_map, load_exported
    from ssdconv.demo.yolo_model import val_transform

    args.prefix = args.prefix or str(PREFIXES[args.model])
    t0 = time.time()
    net = load_exported(args.prefix)
    net.hybridize(static_alloc=True)
    transform = val_transform() if args.model == "yolo3" else None  # None: the SSD's
    result = evaluate_map(net, args.split, count=args.count, start=args.start,
                          batch_size=args.batch_size, progress=True, transform=transform)
    seconds = time.time() - t0
    print(f"{args.prefix}: VOC07 mAP@0.5 = {result.map:.4f} on {result.images} {args.split} "
          f"images (indices {args.start}..{args.start + args.count - 1}), {seconds:.0f} s")
    for name, ap_ in result.per_class.items():
        print(f"  AP {name:<9} {ap_:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "prefix": args.prefix, "split": args.split,
                       "start": args.start, "count": args.count, "map": result.map,
                       "per_class": result.per_class},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
