"""The training recipe both demo detectors share (ssdconv/demo/training.py): the schedule
follows the clock so a loaded machine stays in budget, the loop logs one row per epoch and stops
when the budget is spent, and the preset it writes is one ssdconv loads."""

from __future__ import annotations

import argparse
import csv
import math

import pytest

from ssdconv import shipped
from ssdconv.config import load_config
from ssdconv.demo.evaluate import MapResult
from ssdconv.demo.model import MEAN, STD
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.demo.training import (
    ClockSchedule,
    TrainLog,
    add_training_args,
    lr_at,
    run_epochs,
    write_preset,
)


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _args(tmp_path, *argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_training_args(ap, out_dir=str(tmp_path), work_dir=str(tmp_path / "ck"),
                      log_name="log.csv")
    return ap.parse_args(list(argv))


def test_lr_warms_up_then_anneals_to_a_hundredth():
    assert lr_at(0, 0.0, 1.0, 100) == pytest.approx(0.01)
    assert lr_at(99, 0.0, 1.0, 100) == pytest.approx(1.0)
    assert lr_at(500, 0.5, 1.0, 100) == pytest.approx(0.505)
    assert lr_at(900, 1.0, 1.0, 100) == pytest.approx(0.01)
    assert lr_at(900, 3.0, 1.0, 100) == pytest.approx(0.01)  # past the end: stays at the floor


def test_schedule_follows_whichever_runs_out_first():
    clock = FakeClock()
    schedule = ClockSchedule(total_iters=100, budget_min=10, clock=clock)
    assert schedule.progress(50) == pytest.approx(0.5)  # no time spent: iterations count
    clock.now += 9 * 60  # a slow machine: 90 % of the time for 50 % of the iterations
    assert schedule.progress(50) == pytest.approx(0.9)
    assert ClockSchedule(100, 0, clock=clock).progress(50) == pytest.approx(0.5)  # no budget


def test_loop_stops_at_the_budget_and_logs_each_epoch(tmp_path):
    args = _args(tmp_path, "--epochs", "5", "--epoch-size", "40", "--batch-size", "4",
                 "--time-budget", "1", "--warmup-iters", "1")
    (tmp_path / "ck").mkdir()
    clock = FakeClock()
    schedule = ClockSchedule(total_iters=50, budget_min=1, clock=clock)
    seen_lr, saved = [], []

    def step(lr: float) -> list[float]:
        clock.now += 2.5  # 10 iterations per epoch: an epoch takes 25 s, the budget is 60 s
        seen_lr.append(lr)
        return [3.0, 1.0, 2.0]

    def validate() -> MapResult:
        return MapResult(map=0.5, per_class={c: 0.5 for c in CLASSES}, images=8)

    names = ["loss", "a_loss", "b_loss"]
    log = TrainLog(str(tmp_path / "log.csv"), names, CLASSES)
    run = run_epochs(args, schedule, step, validate, saved.append, log, names)
    assert run.iterations == 24 and run.epochs == 3  # stopped by the clock, not at 50
    assert run.minutes == pytest.approx(1.0)
    assert [p.rsplit("/", 1)[1] for p in saved] == ["epoch01.params", "epoch02.params",
                                                   "epoch03.params"]
    assert seen_lr[0] == pytest.approx(args.lr)  # warmup of one iteration, progress 0
    assert seen_lr == sorted(seen_lr, reverse=True)  # cosine, monotone after the warmup
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [r["images"] for r in rows] == ["40", "80", "96"]
    assert float(rows[0]["loss"]) == 3.0 and float(rows[0]["b_loss"]) == 2.0
    assert float(rows[2]["ap_star"]) == 0.5
    assert math.isclose(float(rows[2]["elapsed_s"]), 60.0)


def test_preset_is_one_ssdconv_loads_with_the_ssd_presets_keys(tmp_path):
    path = tmp_path / "demo.yaml"
    write_preset(str(path), "demo", ["made by a test"], CLASSES, 256, MEAN, STD)
    assert path.read_text().startswith("# made by a test\n")
    cfg = load_config(str(path))
    shipped_cfg = load_config(str(shipped.DEMO_DIR / "shapes_ssd.yaml"))
    assert set(cfg) == set(shipped_cfg)
    assert {k: v for k, v in cfg.items() if k != "model"} == \
        {k: v for k, v in shipped_cfg.items() if k != "model"}
