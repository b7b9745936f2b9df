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
import csv
import math
import os
import sys
import time
import warnings

# MKLDNN subgraph fusion breaks binds on some fix_gamma graphs (GluonCV's extra layers).
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"

from ssdconv.shipped import DEMO_DIR  # noqa: E402  (no mxnet import: the setting above holds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--epoch-size", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    ap.add_argument("--wd", type=float, default=5e-5)
    ap.add_argument("--warmup-iters", type=int, default=200)
    ap.add_argument("--time-budget", type=float, default=57, metavar="MIN",
                    help="also stop after MIN minutes, the schedule following whichever of "
                         "iterations or time runs out first (keeps a loaded machine in budget); "
                         "0: no time limit")
    ap.add_argument("--val-size", type=int, default=200, help="val images scored per epoch")
    ap.add_argument("--workers", type=int, default=1,
                    help="DataLoader workers rendering and encoding images (0: in the loop)")
    ap.add_argument("--worker-processes", action="store_true",
                    help="run the workers as processes, not threads of the training process. "
                         "Threads are the default: on two cores a worker process's OpenMP "
                         "threads fight the training's (x0.5 net: 2.4 s/it with a process, "
                         "1.34 s/it rendering in the loop, 1.26 s/it with a thread)")
    ap.add_argument("--multiplier", type=float, default=None, help="MobileNetV2 width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=str(DEMO_DIR))
    ap.add_argument("--work-dir", default="/tmp/shapes_ssd_run", help="per-epoch checkpoints")
    ap.add_argument("--log", default=None, help="CSV log (default OUT_DIR/train_log.csv)")
    return ap.parse_args(argv)


def lr_at(it: int, progress: float, peak: float, warmup: int) -> float:
    """Cosine from `peak` down to peak/100 over progress 0..1, times a linear warmup."""
    floor = peak / 100
    cosine = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cosine * min(1.0, (it + 1) / warmup)


def write_preset(path: str, prefix_rel: str, multiplier: float, classes: list[str],
                 input_size: int, mean: tuple, std: tuple) -> None:
    """An ssdconv preset for the exported model; the builder is recorded as comments because
    the preset format rejects unknown keys."""
    lines = [
        "# The demo shapes SSD, trained from scratch by train/train_demo.py on the synthetic",
        "# shapes data (ssdconv/demo/shapes_dataset.py). Convert it with",
        "#   ssdconv convert --config samples/demo/shapes_ssd.yaml -o out --verify samples/",
        "# builder: ssdconv.demo.model:build_shapes_ssd(classes, "
        f"multiplier={multiplier}, input_size={input_size})",
        "# weights: net.export(PREFIX) of that net after training, PREFIX-0000.params",
        "# source normalisation: GluonCV's default ImageNet mean/std, as SSDDefaultTrainTransform",
        "model: " + prefix_rel + "-symbol.json",
        "classes: [" + ", ".join(classes) + "]",
        f"input_size: [{input_size}, {input_size}]",
        "source_mean: [" + ", ".join(f"{255 * m:.3f}".rstrip("0").rstrip(".")
                                     for m in mean) + "]",
        "source_std: [" + ", ".join(f"{255 * s:.3f}".rstrip("0").rstrip(".")
                                    for s in std) + "]",
        "source_channel_order: RGB",
        "target: all",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mxnet as mx
        import numpy as np
        from gluoncv.data.batchify import Stack, Tuple
        from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
        from gluoncv.loss import SSDMultiBoxLoss
        from mxnet import autograd, gluon
        from tqdm import tqdm

        from ssdconv.demo.evaluate import evaluate_map
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
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.work_dir, exist_ok=True)
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
    net.collect_params(".*beta|.*gamma|.*bias").setattr("wd_mult", 0.0)
    opt = {"learning_rate": args.lr, "wd": args.wd}
    if args.optimizer == "sgd":
        opt["momentum"] = 0.9
    trainer = gluon.Trainer(net.collect_params(), args.optimizer, opt)
    mbox_loss = SSDMultiBoxLoss()

    fields = ["epoch", "images", "lr", "loss", "cls_loss", "box_loss", "val_map",
              *[f"ap_{c}" for c in CLASSES], "epoch_s", "elapsed_s"]
    with open(log_path, "w", newline="") as f:
        csv.writer(f).writerow(fields)
    start = time.time()
    batches = iter(loader)
    it = 0

    def progress() -> float:
        done = it / total_iters
        if args.time_budget:
            done = max(done, (time.time() - start) / (60 * args.time_budget))
        return done

    epochs = 0
    for epoch in range(args.epochs):
        if progress() >= 1:
            break
        epochs += 1
        t0 = time.time()
        sums = np.zeros(3)
        bar = tqdm(range(iters_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                   unit="it", mininterval=5, file=sys.stdout)
        for _ in bar:
            if progress() >= 1:
                break
            # Worker batches live in shared memory (cpu_shared); the cached graph wants cpu.
            data, cls_targets, box_targets = (a.as_in_context(mx.cpu()) for a in next(batches))
            lr = lr_at(it, progress(), args.lr, args.warmup_iters)
            trainer.set_learning_rate(lr)
            with autograd.record():
                cls_preds, box_preds, _ = net(data)
                sum_loss, cls_loss, box_loss = mbox_loss(
                    [cls_preds], [box_preds], [cls_targets], [box_targets])
            autograd.backward(sum_loss)
            trainer.step(1)  # SSDMultiBoxLoss already normalises by the number of positives
            # Per-image losses are already divided by the batch's positives: their sum is the
            # loss per positive anchor, the figure GluonCV's train_ssd.py logs.
            sums += [float(sum_loss[0].sum().asscalar()), float(cls_loss[0].sum().asscalar()),
                     float(box_loss[0].sum().asscalar())]
            it += 1
            n = it - epoch * iters_per_epoch
            bar.set_postfix(loss=f"{sums[0] / n:.3f}", cls=f"{sums[1] / n:.3f}",
                            box=f"{sums[2] / n:.3f}", lr=f"{lr:.2e}")
        bar.close()
        net.save_parameters(os.path.join(args.work_dir, f"epoch{epoch + 1:02d}.params"))
        # The SSD traces a different graph in inference mode: drop the cached training graph.
        net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
        val = evaluate_map(net, "val", count=args.val_size, batch_size=args.batch_size)
        net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
        epoch_s, elapsed = time.time() - t0, time.time() - start
        mean = sums / max(1, it - epoch * iters_per_epoch)
        print(f"epoch {epoch + 1}: loss {mean[0]:.4f} (cls {mean[1]:.4f}, box {mean[2]:.4f}) "
              f"val mAP {val.map:.4f} " + " ".join(f"{k} {v:.3f}" for k, v in
                                                  val.per_class.items())
              + f"  {epoch_s:.0f}s, total {elapsed / 60:.1f} min", flush=True)
        with open(log_path, "a", newline="") as f:
            csv.writer(f).writerow([epoch + 1, it * args.batch_size, f"{lr:.6g}",
                                    *(f"{v:.5f}" for v in mean), f"{val.map:.5f}",
                                    *(f"{val.per_class[c]:.5f}" for c in CLASSES),
                                    f"{epoch_s:.1f}", f"{elapsed:.1f}"])

    prefix = os.path.join(args.out_dir, "shapes_ssd")
    net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
    net(mx.nd.zeros((1, 3, size, size)))  # trace the inference graph, then export it
    net.export(prefix, epoch=0)
    # the preset names the model beside it (presets resolve files relative to themselves)
    write_preset(prefix + ".yaml", os.path.basename(prefix), multiplier, CLASSES, size, MEAN, STD)
    total = time.time() - start
    print(f"trained {epochs} epochs ({it * args.batch_size} images) in {total / 60:.1f} min;"
          f" exported {prefix}-symbol.json and {prefix}-0000.params", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
