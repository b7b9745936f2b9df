"""Train the demo shapes SSD from scratch with GluonCV's own training parts, then export it.

Why from scratch and on synthetic shapes: no pretrained weights or data can be downloaded
here, and the demo needs a detector that really detects so that conversions can be judged by
accuracy, not only by bit-level agreement. The pieces are the ones GluonCV's train_ssd.py uses:
SSDDefaultTrainTransform with the net's anchors (its SSDTargetGenerator builds the targets in
the data workers), SSDMultiBoxLoss with hard negative mining, and VOC07MApMetric on the val
split each epoch. Every training image is fresh (drawn from the train seed stream, never
repeated), so there is no overfitting to manage, only the CPU budget.

Run from the repository root (57 minutes on two CPU cores, the --time-budget default; the
cosine learning-rate schedule follows the clock, so a slower machine trains fewer images in the
same time rather than overrunning):

    .venv/bin/python train/train_demo.py

Writes samples/demo/shapes_ssd-symbol.json + shapes_ssd-0000.params (net.export),
samples/demo/shapes_ssd.yaml (an ssdconv preset) and samples/demo/train_log.csv; per-epoch
checkpoints go to --work-dir, outside the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

# MKLDNN subgraph fusion breaks binds on some fix_gamma graphs (GluonCV's extra layers).
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"

from ssdconv.demo.training import add_training_args  # noqa: E402  (imports no mxnet)
from ssdconv.shipped import DEMO_DIR  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_args(ap, out_dir=str(DEMO_DIR), work_dir="/tmp/shapes_ssd_run",
                      log_name="train_log.csv")
    ap.add_argument("--multiplier", type=float, default=None, help="MobileNetV2 width")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mxnet as mx
        from gluoncv.data.batchify import Stack, Tuple
        from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
        from gluoncv.loss import SSDMultiBoxLoss
        from mxnet import autograd, gluon

        from ssdconv.demo import training
        from ssdconv.demo.gluon_data import ShapesDetection
        from ssdconv.demo.model import (
            MEAN,
            MULTIPLIER,
            STD,
            build_shapes_ssd,
            init_weights,
            param_count,
        )
        from ssdconv.demo.shapes_dataset import CLASSES, IMAGE_SIZE

    multiplier = args.multiplier or MULTIPLIER
    training.start_run(args)
    log_path = args.log or os.path.join(args.out_dir, "train_log.csv")

    net = build_shapes_ssd(CLASSES, multiplier=multiplier)
    init_weights(net)
    net.hybridize(static_alloc=True, static_shape=True)
    size = IMAGE_SIZE
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    print(f"net: MobileNetV2 x{multiplier} SSD, {param_count(net)} stored values, "
          f"{anchors.shape[1]} anchors", flush=True)

    iters_per_epoch = args.epoch_size // args.batch_size
    total_iters = iters_per_epoch * args.epochs
    train_set = ShapesDetection("train", total_iters * args.batch_size).transform(
        SSDDefaultTrainTransform(size, size, anchors.as_in_context(mx.cpu()), mean=MEAN, std=STD))
    loader = gluon.data.DataLoader(train_set, args.batch_size, shuffle=False,
                                   last_batch="discard", num_workers=args.workers,
                                   thread_pool=not args.worker_processes,
                                   batchify_fn=Tuple(Stack(), Stack(), Stack()))
    trainer = training.make_trainer(net, args)
    mbox_loss = SSDMultiBoxLoss()
    loss_names = ["loss", "cls_loss", "box_loss"]
    log = training.TrainLog(log_path, loss_names, CLASSES)
    schedule = training.ClockSchedule(total_iters, args.time_budget)
    batches = iter(loader)

    def step(lr: float) -> list[float]:
        # Worker batches live in shared memory (cpu_shared); the cached graph wants cpu.
        data, cls_targets, box_targets = (a.as_in_context(mx.cpu()) for a in next(batches))
        trainer.set_learning_rate(lr)
        with autograd.record():
            cls_preds, box_preds, _ = net(data)
            sum_loss, cls_loss, box_loss = mbox_loss(
                [cls_preds], [box_preds], [cls_targets], [box_targets])
        autograd.backward(sum_loss)
        trainer.step(1)  # SSDMultiBoxLoss already normalises by the number of positives
        # Per-image losses are already divided by the batch's positives: their sum is the
        # loss per positive anchor, the figure GluonCV's train_ssd.py logs.
        return [float(loss[0].sum().asscalar()) for loss in (sum_loss, cls_loss, box_loss)]

    run = training.run_epochs(args, schedule, step, lambda: training.validate(net, args),
                              net.save_parameters, log, loss_names)

    prefix = os.path.join(args.out_dir, "shapes_ssd")
    training.export_demo(net, prefix, [
        "The demo shapes SSD, trained from scratch by train/train_demo.py on the synthetic",
        "shapes data (ssdconv/demo/shapes_dataset.py). Convert it with",
        "  ssdconv convert --config samples/demo/shapes_ssd.yaml -o out --verify samples/",
        "builder: ssdconv.demo.model:build_shapes_ssd(classes, "
        f"multiplier={multiplier}, input_size={size})",
        "weights: net.export(PREFIX) of that net after training, PREFIX-0000.params",
    ], CLASSES, size, MEAN, STD)
    print(training.summary(run, args.batch_size, prefix), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
