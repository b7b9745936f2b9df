"""What the demo training scripts (train/train_demo.py, train/train_yolo_demo.py) share.

The two detectors differ in their transform, loss and export name; the rest is one recipe and
lives here once: the command-line options, the clock-following cosine schedule, the trainer
(no weight decay on BatchNorm and biases), the epoch loop with its per-epoch checkpoint and
validation, the CSV log and the ssdconv preset written beside the export.

The schedule follows the clock: progress is the larger of iterations done / planned and
minutes spent / `--time-budget`, so on a loaded machine a run trains fewer images in the same
time (the learning rate still anneals to its floor) rather than overrunning.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def add_training_args(ap: argparse.ArgumentParser, *, out_dir: str, work_dir: str,
                      log_name: str, lr: float = 2e-3, time_budget: float = 57) -> None:
    """The options both demo trainings take, with each script's own defaults."""
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--epoch-size", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    ap.add_argument("--wd", type=float, default=5e-5)
    ap.add_argument("--warmup-iters", type=int, default=200)
    ap.add_argument("--time-budget", type=float, default=time_budget, metavar="MIN",
                    help="also stop after MIN minutes, the schedule following whichever of "
                         "iterations or time runs out first (keeps a loaded machine in budget); "
                         "0: no time limit")
    ap.add_argument("--val-size", type=int, default=200, help="val images scored per epoch")
    ap.add_argument("--workers", type=int, default=1,
                    help="DataLoader workers rendering and encoding images (0: in the loop)")
    ap.add_argument("--worker-processes", action="store_true",
                    help="run the workers as processes, not threads of the training process. "
                         "Threads are the default: on two cores a worker process's OpenMP "
                         "threads fight the training's (x0.5 SSD: 2.4 s/it with a process, "
                         "1.34 s/it rendering in the loop, 1.26 s/it with a thread)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=out_dir)
    ap.add_argument("--work-dir", default=work_dir, help="per-epoch checkpoints")
    ap.add_argument("--log", default=None, help=f"CSV log (default OUT_DIR/{log_name})")


def start_run(args: argparse.Namespace) -> None:
    """Seed MXNet's and numpy's generators (GluonCV's augmentations draw from numpy) and make
    the output and checkpoint folders."""
    import os

    import mxnet as mx

    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.work_dir, exist_ok=True)


def lr_at(it: int, progress: float, peak: float, warmup: int) -> float:
    """Cosine from `peak` down to peak/100 over progress 0..1, times a linear warmup."""
    floor = peak / 100
    cosine = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cosine * min(1.0, (it + 1) / warmup)


class ClockSchedule:
    """Training progress 0..1: the larger of iterations done / `total_iters` and time spent /
    `budget_min` minutes (0: iterations only). `clock` is injectable for tests."""

    def __init__(self, total_iters: int, budget_min: float,
                 clock: Callable[[], float] = time.time):
        self.total_iters = total_iters
        self.budget_s = 60 * budget_min
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def progress(self, it: int) -> float:
        done = it / self.total_iters
        if self.budget_s:
            done = max(done, self.elapsed() / self.budget_s)
        return done


def make_trainer(net, args: argparse.Namespace):
    """A Gluon Trainer with the run's optimizer; no weight decay on BatchNorm or biases."""
    from mxnet import gluon

    net.collect_params(".*beta|.*gamma|.*bias").setattr("wd_mult", 0.0)
    opt = {"learning_rate": args.lr, "wd": args.wd}
    if args.optimizer == "sgd":
        opt["momentum"] = 0.9
    return gluon.Trainer(net.collect_params(), args.optimizer, opt)


class TrainLog:
    """The per-epoch CSV: epoch, images, lr, the losses, val mAP and AP per class, times."""

    def __init__(self, path: str, loss_names: Sequence[str], classes: Sequence[str]):
        self.path = path
        self.classes = list(classes)
        fields = ["epoch", "images", "lr", *loss_names, "val_map",
                  *[f"ap_{c}" for c in self.classes], "epoch_s", "elapsed_s"]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    def write(self, epoch: int, images: int, lr: float, losses: Sequence[float], val,
              epoch_s: float, elapsed_s: float) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([epoch, images, f"{lr:.6g}", *(f"{v:.5f}" for v in losses),
                                    f"{val.map:.5f}",
                                    *(f"{val.per_class[c]:.5f}" for c in self.classes),
                                    f"{epoch_s:.1f}", f"{elapsed_s:.1f}"])


def validate(net, args: argparse.Namespace, transform=None):
    """VOC07 mAP of the training net on `args.val_size` val images (evaluate.evaluate_map).

    Inference traces another graph than training: set_nms drops the cached one before and
    after (GluonCV's own NMS settings both times).
    """
    from .evaluate import evaluate_map

    net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
    val = evaluate_map(net, "val", count=args.val_size, batch_size=args.batch_size,
                       transform=transform)
    net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
    return val


@dataclass
class RunResult:
    """How far a run got: epochs started, iterations done, minutes spent."""

    epochs: int
    iterations: int
    minutes: float


def run_epochs(args: argparse.Namespace, schedule: ClockSchedule,
               step: Callable[[float], Sequence[float]], validate: Callable[[], object],
               checkpoint: Callable[[str], None], log: TrainLog,
               loss_names: Sequence[str]) -> RunResult:
    """The training loop both demos run.

    `step(lr)` trains one batch and returns its losses (`loss_names`, total first);
    `validate()` returns a MapResult on the val split; `checkpoint(path)` saves the weights.
    Each epoch ends with a checkpoint in `args.work_dir`, a validation and a log row; the run
    stops when the schedule's progress reaches 1 (iterations or time budget).
    """
    import os

    from tqdm import tqdm

    iters_per_epoch = args.epoch_size // args.batch_size
    it = 0
    lr = 0.0
    epochs = 0
    for epoch in range(args.epochs):
        if schedule.progress(it) >= 1:
            break
        epochs += 1
        t0 = time.time()
        sums = np.zeros(len(loss_names))
        bar = tqdm(range(iters_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                   unit="it", mininterval=5, file=sys.stdout)
        for _ in bar:
            if schedule.progress(it) >= 1:
                break
            lr = lr_at(it, schedule.progress(it), args.lr, args.warmup_iters)
            sums += np.asarray(step(lr), dtype=np.float64)
            it += 1
            n = it - epoch * iters_per_epoch
            bar.set_postfix({k: f"{v / n:.3f}" for k, v in zip(loss_names, sums)},
                            lr=f"{lr:.2e}")
        bar.close()
        checkpoint(os.path.join(args.work_dir, f"epoch{epoch + 1:02d}.params"))
        val = validate()
        epoch_s, elapsed = time.time() - t0, schedule.elapsed()
        mean = sums / max(1, it - epoch * iters_per_epoch)
        parts = ", ".join(f"{k.removesuffix('_loss')} {v:.4f}"
                          for k, v in zip(loss_names[1:], mean[1:]))
        print(f"epoch {epoch + 1}: loss {mean[0]:.4f} ({parts}) val mAP {val.map:.4f} "
              + " ".join(f"{k} {v:.3f}" for k, v in val.per_class.items())
              + f"  {epoch_s:.0f}s, total {elapsed / 60:.1f} min", flush=True)
        log.write(epoch + 1, it * args.batch_size, lr, mean, val, epoch_s, elapsed)
    return RunResult(epochs=epochs, iterations=it, minutes=schedule.elapsed() / 60)


def write_preset(path: str, prefix_rel: str, header: Sequence[str], classes: Sequence[str],
                 input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
    """An ssdconv preset for an exported demo model; `header` (how it was made, the builder)
    goes in as comments because the preset format rejects unknown keys."""
    lines = [
        *("# " + h for h in header),
        "# source normalisation: GluonCV's default ImageNet mean/std, as its train transforms",
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


def export_demo(net, prefix: str, header: Sequence[str], classes: Sequence[str],
                input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
    """`net.export(prefix)` of the inference graph (GluonCV's NMS settings) and the preset
    `prefix.yaml` naming it (presets resolve files relative to themselves).

    Exporting, not save_parameters, so that what ssdconv converts is exactly the graph and
    weights the final evaluation scores.
    """
    import os

    import mxnet as mx

    net.set_nms(nms_thresh=0.45, nms_topk=400, post_nms=100)
    net(mx.nd.zeros((1, 3, input_size, input_size)))  # trace the inference graph
    net.export(prefix, epoch=0)
    write_preset(prefix + ".yaml", os.path.basename(prefix), header, classes, input_size,
                 mean, std)


def summary(run: RunResult, batch_size: int, prefix: str) -> str:
    """The last line a training prints."""
    return (f"trained {run.epochs} epochs ({run.iterations * batch_size} images) in "
            f"{run.minutes:.1f} min; exported {prefix}-symbol.json and {prefix}-0000.params")
