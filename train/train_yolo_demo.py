"""Train the demo shapes YOLOv3 from scratch with GluonCV's own YOLO training parts, then export it.

The YOLOv3 counterpart of train_demo.py (same data, schedule, loop and log: ssdconv/demo/
training.py), with the pieces GluonCV's scripts/detection/yolo/train_yolo3.py uses:
YOLO3DefaultTrainTransform given the net, so its YOLOV3PrefetchTargetGenerator builds the
objectness, centre, scale, weight and class targets in the data worker; the YOLOv3 loss the
net computes itself in a recorded training-mode forward (`net(x, gt_boxes, *targets)` returns
obj, centre, scale and class losses per image); VOC07MApMetric on the val split each epoch
with YOLO3DefaultValTransform. Every training image is fresh (drawn from the train seed
stream, never repeated). Unlike train_yolo3.py the input size is fixed (no random multi-scale
batches): the exported model is 256 x 256 and the time is better spent at that size.

Run from the repository root (the cosine learning-rate schedule follows the clock, so a slower
machine trains fewer images in the same time rather than overrunning):

    nice -n 5 .venv/bin/python train/train_yolo_demo.py --time-budget 85

(the shipped model: 27 epochs, 54,896 images in 85 minutes on two shared CPU cores; val mAP
0.812 at the end, test mAP 0.8065 on 500 images; samples/README.md).

Writes samples/demo/shapes_yolo3-symbol.json + shapes_yolo3-0000.params (net.export),
samples/demo/shapes_yolo3.yaml (an ssdconv preset) and samples/demo/train_log_yolo3.csv;
per-epoch checkpoints go to --work-dir, outside the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"  # as train_demo.py: no MKLDNN subgraph fusion

from ssdconv.demo.training import add_training_args  # noqa: E402  (imports no mxnet)
from ssdconv.shipped import DEMO_DIR, DEMO_YOLO_NAME  # noqa: E402

LOSS_NAMES = ["loss", "obj_loss", "center_loss", "scale_loss", "cls_loss"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_args(ap, out_dir=str(DEMO_DIR), work_dir="/tmp/shapes_yolo3_run",
                      log_name="train_log_yolo3.csv")
    ap.add_argument("--multiplier", type=float, default=None, help="MobileNet width")
    ap.add_argument("--neck", default=None,
                    help="neck channels per YOLO block, deepest first, e.g. 128,64,32")
    ap.add_argument("--obj-prior", type=float, default=None,
                    help="initial objectness of every box (default yolo_model.OBJ_PRIOR; "
                         "0: zero bias, GluonCV's default)")
    ap.add_argument("--iters", type=int, default=0,
                    help="only time this many training iterations (after 3 warm-up ones), "
                         "print s/it and exit: for choosing a width")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import time

        import mxnet as mx
        from gluoncv.data.batchify import Stack, Tuple
        from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
        from mxnet import autograd, gluon

        from ssdconv.demo import training
        from ssdconv.demo.gluon_data import ShapesDetection
        from ssdconv.demo.model import param_count
        from ssdconv.demo.shapes_dataset import CLASSES, IMAGE_SIZE, MAX_OBJECTS
        from ssdconv.demo.yolo_model import (
            ANCHORS,
            MEAN,
            MULTIPLIER,
            NECK_CHANNELS,
            OBJ_PRIOR,
            STD,
            build_shapes_yolo3,
            init_yolo_weights,
            val_transform,
        )

    multiplier = args.multiplier or MULTIPLIER
    neck = tuple(int(c) for c in args.neck.split(",")) if args.neck else NECK_CHANNELS
    training.start_run(args)
    size = IMAGE_SIZE

    net = build_shapes_yolo3(CLASSES, multiplier=multiplier, neck_channels=neck)
    init_yolo_weights(net, OBJ_PRIOR if args.obj_prior is None else args.obj_prior)
    iters_per_epoch = args.epoch_size // args.batch_size
    total_iters = iters_per_epoch * args.epochs
    # The transform runs the net once in training mode (to learn the anchors, offsets and map
    # sizes its target generator needs); that also completes the deferred initialisation.
    transform = YOLO3DefaultTrainTransform(size, size, net, mean=MEAN, std=STD)
    net.hybridize(static_alloc=True, static_shape=True)
    print(f"net: MobileNet x{multiplier} YOLOv3, neck {','.join(map(str, neck))}, "
          f"{param_count(net)} stored values", flush=True)

    def fixed_box_rows(*sample):
        """Pad the gt boxes to MAX_OBJECTS rows of -1 (what Pad pads with), so every batch has
        the same shapes and the static graph is never re-planned."""
        *targets, gt_boxes = sample
        missing = MAX_OBJECTS - gt_boxes.shape[0]
        if missing:
            gt_boxes = mx.nd.concat(gt_boxes, mx.nd.full((missing, 4), -1), dim=0)
        return (*targets, gt_boxes)

    train_set = ShapesDetection("train", total_iters * args.batch_size).transform(
        transform).transform(fixed_box_rows)
    # img, objectness, centres, scales, weights, class targets, gt boxes: all fixed size
    batchify = Tuple(*[Stack() for _ in range(7)])
    loader = gluon.data.DataLoader(train_set, args.batch_size, shuffle=False,
                                   last_batch="discard", num_workers=args.workers,
                                   thread_pool=not args.worker_processes, batchify_fn=batchify)
    trainer = training.make_trainer(net, args)
    batches = iter(loader)

    def step(lr: float) -> list[float]:
        # Worker batches live in shared memory (cpu_shared); the cached graph wants cpu.
        data, *targets, gt_boxes = (a.as_in_context(mx.cpu()) for a in next(batches))
        trainer.set_learning_rate(lr)
        with autograd.record():
            losses = net(data, gt_boxes, *targets)  # obj, centre, scale, class; (B,) each
            total = losses[0] + losses[1] + losses[2] + losses[3]
        autograd.backward(total)
        trainer.step(args.batch_size)  # as train_yolo3.py: per-image losses, mean over batch
        return [float(a.mean().asscalar()) for a in (total, *losses)]

    if args.iters:
        for _ in range(3):
            step(args.lr / 100)
        t0 = time.time()
        for _ in range(args.iters):
            step(args.lr / 100)
        s_it = (time.time() - t0) / args.iters
        print(f"timing: {s_it:.3f} s/it at batch {args.batch_size} "
              f"({args.batch_size / s_it:.1f} images/s)", flush=True)
        return 0

    log = training.TrainLog(args.log or os.path.join(args.out_dir, "train_log_yolo3.csv"),
                            LOSS_NAMES, CLASSES)
    schedule = training.ClockSchedule(total_iters, args.time_budget)
    run = training.run_epochs(args, schedule, step,
                              lambda: training.validate(net, args, val_transform(size)),
                              net.save_parameters, log, LOSS_NAMES)

    prefix = os.path.join(args.out_dir, DEMO_YOLO_NAME)
    anchors = "; ".join(",".join(map(str, a)) for a in ANCHORS)
    training.export_demo(net, prefix, [
        "The demo shapes YOLOv3, trained from scratch by train/train_yolo_demo.py on the",
        "synthetic shapes data (ssdconv/demo/shapes_dataset.py).",
        "builder: ssdconv.demo.yolo_model:build_shapes_yolo3(classes, "
        f"multiplier={multiplier}, neck_channels={neck}, input_size={size})",
        f"anchors (w,h per level, strides 8, 16, 32): {anchors}",
        "weights: net.export(PREFIX) of that net after training, PREFIX-0000.params",
    ], CLASSES, size, MEAN, STD)
    print(training.summary(run, args.batch_size, prefix), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
