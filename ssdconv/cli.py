"""The `ssdconv` command: convert, verify, list, demo.

User errors print one line and exit 2, with no traceback and no partial output; a failed check
exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from . import __version__, shipped, signals, values
from .errors import UserError
from .options import MODEL, table, target_names

DEFAULT_DEMO_MODEL = "ssd_300_mobilenet0.25_voc"
DEMO_SYMBOL = str(shipped.DEMO_SYMBOL)


def _arg(check):
    """An argparse `type` from a check in values.py: a bad value is argparse's one-line error."""
    from .values import BadValue

    def parse(text: str):
        try:
            return check(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    return parse


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", type=_arg(values.model),
                   help="GluonCV zoo name or PREFIX-symbol.json")
    p.add_argument("--config", type=_arg(values.input_file), help="a YAML preset (configs/)")


def _table_args(p: argparse.ArgumentParser, command: str) -> None:
    """The flags the option table gives `command` (`ssdconv.options`)."""
    for opt in table():
        if not opt.flag or command not in opt.commands:
            continue
        kw: dict = {"dest": opt.dest, "help": opt.help}
        if opt.kind == "switch":
            kw["action"] = "store_true"
        elif opt.kind == "append":
            kw.update(action="append", metavar=opt.metavar)
        else:
            kw["type"] = _arg(opt.check)
            default = dict(opt.command_defaults).get(command)
            if default is not None:
                kw["default"] = default
        p.add_argument(opt.flag, **kw)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"ssdconv: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ssdconv", description="Convert GluonCV SSDs to caffe-ssd "
                 "and ncnn, and prove the result.")
    ap.add_argument("--version", action="version", version=f"ssdconv {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("convert", help="convert a model (and optionally verify it)")
    _model_args(c)
    _table_args(c, "convert")
    c.add_argument("-o", "--out", default="out", type=_arg(values.output_dir),
                   help="output directory (default out/)")
    c.add_argument("--name", type=_arg(values.file_stem),
                   help="output file stem (default: the model name)")
    c.add_argument("--verify", nargs="+", metavar="IMAGE", help="verify on these images/dirs")
    c.add_argument("--winograd", action="store_true", help="verify with OpenCV's Winograd on")
    c.add_argument("--overlays", metavar="DIR", type=_arg(values.output_dir),
                   help="with --verify: write overlay PNGs here")
    v = sub.add_parser("verify", help="convert in a scratch dir and run the staged check")
    _model_args(v)
    _table_args(v, "verify")
    v.add_argument("images", nargs="*", default=[], help="images or directories")
    v.add_argument("-o", "--out", type=_arg(values.output_dir),
                   help="keep the converted files here")
    v.add_argument("--converted", metavar="NAME.json", type=_arg(values.input_file),
                   help="check this existing conversion instead of converting again")
    v.add_argument("--overlays", metavar="DIR", type=_arg(values.output_dir),
                   help="write side-by-side overlay PNGs here")
    v.add_argument("--winograd", action="store_true", help="OpenCV with Winograd convolutions")
    e = sub.add_parser("eval", help="VOC07 mAP of Gluon, OpenCV-caffe and ncnn fp32, fp16 and "
                                    "int8 on the held-out generated test set")
    _model_args(e)
    _table_args(e, "eval")
    e.add_argument("-n", "--count", type=_arg(values.count), default=500,
                   help="test images (default 500)")
    e.add_argument("--start", type=_arg(values.start), default=0,
                   help="first test-split index")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i = sub.add_parser("inspect", help="show what would be converted (head, its constants, "
                                       "layers, unsupported ops) without writing anything")
    _model_args(i)
    _table_args(i, "inspect")
    sub.add_parser("list", help="list the GluonCV zoo detectors ssdconv converts")
    d = sub.add_parser("demo", help="convert the default model and verify it on samples/")
    d.add_argument("-o", "--out", default="out/demo", type=_arg(values.output_dir),
                   help="output directory (default out/demo/)")
    return ap


def _options(args, cfg: dict):
    """The conversion options: each from its flag when given, else the preset, else the
    table's default (`ssdconv.options`; preset values were checked by load_config)."""
    from .convert import Options

    chosen = {}
    for opt in table():
        if opt.owner == MODEL:
            continue
        given = getattr(args, opt.dest, None)
        if opt.kind == "switch":
            given = given or None  # an absent switch leaves the preset's value
        elif opt.kind == "append" and given:
            given = values.check(opt.check, given, opt.flag)
        chosen[opt.key] = given if given is not None else cfg.get(opt.key, opt.default)
    return Options(targets=chosen.pop("target"), **chosen)


def _load(args, cfg: dict, out=None):
    """Load the model named by the flags (over the preset) and say where its weights came
    from on `out` (stdout by default), before the conversion starts."""
    from .models import load_model

    model = args.model or cfg.get("model")
    if not model:
        raise UserError("no model given: pass a zoo name or PREFIX-symbol.json (or `model:` in "
                        "--config)")
    size = args.input_size or cfg.get("input_size")
    params, seed = args.params, args.seed  # a weights flag overrides the preset's weights
    if params is None and seed is None:
        params, seed = cfg.get("params"), cfg.get("seed")
    arithmetic = (getattr(args, "input_arithmetic", None) or cfg.get("input_arithmetic")
                  or "fold")
    loaded = load_model(model, params=params, seed=seed,
                        classes=args.classes or cfg.get("classes"), input_size=size,
                        input_arithmetic=arithmetic)
    print(loaded.weights_line, file=out or sys.stdout, flush=True)
    return loaded


def _verify(conversion, images: list[str], winograd: bool, overlays: str | None = None) -> int:
    from .progress import terminal_progress
    from .verify.check import format_report, run_check
    from .verify.images import list_images

    with terminal_progress("images checked") as progress:
        report = run_check(conversion, list_images(images), winograd=winograd,
                           overlay_dir=overlays, progress=progress)
    print(format_report(report))
    for path in report.overlays:
        print(f"overlay {path}")
    return 0 if report.ok else 1


def _names_images(path: str) -> bool:
    """Whether a positional argument is an image or a folder (of images), not a model."""
    from .verify.images import IMAGE_EXTS

    return os.path.isdir(path) or path.lower().endswith(IMAGE_EXTS)


def cmd_convert(args) -> int:
    from .config import load_config
    from .convert import convert, prepare_targets
    from .verify.images import list_images

    start = time.time()
    for flag, given in (("--overlays", args.overlays), ("--winograd", args.winograd)):
        if given and not args.verify:
            raise UserError(f"{flag} applies to the check: add --verify IMAGE...")
    cfg = load_config(args.config)
    opts = _options(args, cfg)
    if args.verify:
        list_images(args.verify)  # a bad image is reported before anything is converted
    prepare_targets(opts, None)  # so are bad target options (calibration images)
    model = _load(args, cfg)
    conv = convert(model, args.out, opts, name=args.name)
    for fname in sorted(conv.manifest["files"]):
        print(f"wrote {os.path.join(args.out, fname)}")
    approx = conv.manifest["approximations"]
    print(f"converted {model.name} in {time.time() - start:.1f}s; approximations: "
          f"{'none' if not approx else len(approx)}; {conv.head.summary(conv.proof)}")
    for target, found in conv.manifest.get("headless", {}).get("npu_constraints", {}).items():
        print(f"NPU constraints ({target}): " + ("none broken" if not found else
              f"{len(found)} broken: " + "; ".join(found[:5])
              + ("; ..." if len(found) > 5 else "") + f" (all in {args.name or model.name}"
              ".json)"))
    if args.verify:
        return _verify(conv, args.verify, args.winograd, args.overlays)
    return 0


def cmd_verify(args) -> int:
    import tempfile

    from .config import load_config
    from .convert import convert, prepare_targets
    from .verify.images import list_images

    if args.converted and args.out:
        raise UserError("--converted checks an existing conversion and writes none: drop -o")
    if args.converted and args.ncnn_int8:
        raise UserError("--converted checks an existing conversion as it is: drop --ncnn-int8")
    cfg = load_config(args.config)
    if cfg.get("model") and args.model and _names_images(args.model):
        # `verify --config PRESET IMAGE...`: the preset names the model, the first positional
        # argument is an image (argparse gave it to the optional `model`)
        args.images, args.model = [args.model, *args.images], None
    opts = _options(args, cfg)
    images = list_images(args.images) if args.images else None  # before the model loads
    prepare_targets(opts, None)
    model = _load(args, cfg)
    images = images or [str(shipped.SAMPLES_DIR)]
    if args.converted:
        from .convert import load_conversion

        conv = load_conversion(model, args.converted, opts)
        return _verify(conv, images, args.winograd, args.overlays)
    if args.out:
        conv = convert(model, args.out, opts)
        return _verify(conv, images, args.winograd, args.overlays)
    with tempfile.TemporaryDirectory() as tmp:
        conv = convert(model, tmp, opts)
        return _verify(conv, images, args.winograd, args.overlays)


def cmd_eval(args) -> int:
    import json

    from .config import load_config
    from .demo.shapes_dataset import CLASSES, make_sample
    from .progress import terminal_progress
    from .verify.accuracy import evaluate, format_table

    cfg = load_config(args.config)
    if not args.model and not cfg.get("model"):
        if not os.path.isfile(DEMO_SYMBOL):
            raise UserError(f"no model given and the demo model {DEMO_SYMBOL} is missing")
        args.model = DEMO_SYMBOL
        args.classes = args.classes or list(CLASSES)
    opts = _options(args, cfg)
    model = _load(args, cfg, out=sys.stderr if args.json else None)  # --json: stdout is JSON

    with terminal_progress("images evaluated") as progress:
        result = evaluate(model, lambda i: make_sample("test", args.start + i), args.count,
                          opts, progress=progress,
                          calibration=lambda i: make_sample("train", i))
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_table(result))
    return 0


def cmd_inspect(args) -> int:
    from .config import load_config
    from .convert import build_ir

    cfg = load_config(args.config)
    opts = _options(args, cfg)
    model = _load(args, cfg)
    graph, head, passes = build_ir(model, opts)
    first, *rest = head.describe(head.prove())
    print(f"model {model.name}: {first}")
    for line in rest:
        print(line)
    pre = graph.preprocess
    print(f"input: {pre.channel_order}, mean {[round(m, 3) for m in pre.mean]}, scale "
          f"{[round(s, 6) for s in pre.scale]}")
    print("passes: " + ", ".join(f"{k} {v}" for k, v in passes.items()))
    print("IR layers: " + ", ".join(f"{k} {v}" for k, v in sorted(graph.op_counts().items())))
    return 0


def cmd_list(args) -> int:
    from .family import zoo_names

    print("\n".join(zoo_names()))
    return 0


def cmd_demo(args) -> int:
    """The README's first command: the shipped trained model (or, without it, a seeded zoo
    SSD) converted to caffe-ssd and ncnn, checked on generated scenes and real photos."""
    from .convert import Options, convert
    from .models import load_model

    images = [str(p) for p in shipped.demo_images()]
    if not images:
        raise UserError(f"no sample images in {shipped.SAMPLES_DIR}; reinstall ssdconv")
    start = time.time()
    if os.path.isfile(DEMO_SYMBOL):
        from .demo.shapes_dataset import CLASSES

        model = load_model(DEMO_SYMBOL, classes=list(CLASSES))
        what = "the shipped demo model (trained on generated shapes)"
    else:
        model = load_model(DEFAULT_DEMO_MODEL, seed=0)
        what = f"{DEFAULT_DEMO_MODEL} (seeded weights, seed 0)"
    print(model.weights_line, flush=True)
    conv = convert(model, args.out, Options(targets=target_names()))
    print(f"converted {what} to {', '.join(target_names())} in {time.time() - start:.1f}s:")
    for _, path in sorted(conv.files.items()):
        print(f"  {path}")
    return _verify(conv, images, False, os.path.join(args.out, "overlays"))


COMMANDS = {"convert": cmd_convert, "verify": cmd_verify, "list": cmd_list, "demo": cmd_demo,
            "eval": cmd_eval, "inspect": cmd_inspect}


def main(argv: list[str] | None = None) -> int:
    """The program. Ctrl-C exits 130 and SIGTERM 143, each with one line, after removing any
    temporary files; an earlier result in the output folder is never touched (fileio.py).

    Run as the program (argv None), a signal that arrives once the command is done is ignored,
    so the exit code reports what happened; an in-process caller gets its handlers back."""
    previous = signals.install()
    try:
        return _main(argv)
    except (KeyboardInterrupt, signals.Terminated) as exc:  # while parsing or importing
        return _stopped(signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
    finally:
        if argv is None:
            signals.ignore()
        else:
            signals.restore(previous)


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot place positionals that follow options (`verify M --seed 1 a.jpg`): the
    # leftovers are images for verify and convert --verify, anything else is an error
    stray = [e for e in extra if e.startswith("-")]
    if stray or (extra and args.command not in ("verify", "convert")) or (
            extra and args.command == "convert" and not args.verify):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        if args.command == "verify":
            args.images = list(args.images) + extra
        else:
            args.verify = list(args.verify) + extra
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"ssdconv: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, signals.Terminated) as exc:
        return _stopped(signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)


def _stopped(signum: int) -> int:
    """After Ctrl-C or SIGTERM: further signals are ignored while leftovers are removed."""
    from .fileio import remove_temporaries

    signals.ignore()
    remove_temporaries()
    print(f"ssdconv: {'interrupted' if signum == signal.SIGINT else 'terminated'}",
          file=sys.stderr)
    return signals.EXIT_CODES[signum]


if __name__ == "__main__":
    sys.exit(main())
