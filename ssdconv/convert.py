"""The conversion pipeline: recognise the head, walk the backbone, synthesise the tail, run the
passes, prove the head's constants, emit, and write the manifest, all or nothing.

Everything about the head is asked of the head its family recognised (`ssdconv.family`); this
module does not know which family it converts, and asks for class names only of a detector
(`DetectorHead`): any other head's manifest has its outputs, no classes or label offset."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__, values
from .backend import backend, backends
from .errors import UserError
from .family import families, recognise
from .family.interface import STOCK, DetectorHead, Head, Proof
from .fileio import StagedDirectory
from .frontend.registry import ConvertContext
from .frontend.walk import walk
from .ir.graph import Graph
from .ir.preprocess import Preprocess
from .mxnet.load import LoadedModel
from .options import (
    options_class,
    owned,
    refuse_foreign_family,
    refuse_foreign_targets,
    set_away_from_default,
    table,
)
from .passes.pipeline import run_passes

# what checking an existing conversion reads (and the blobs of the head's manifest section)
MANIFEST_KEYS = ("input_shape", "channel_order", "mean", "scale", "blobs")
DETECTOR_KEYS = ("classes", "label_offset")  # and, for a detector's, what its rows mean


Options = options_class()  # the conversion settings: one field per option (`ssdconv.options`)


@dataclass
class Conversion:
    """A converted model in memory: the IR, the recognised head, the manifest to publish, the
    options it was made with (the check's reference preprocessing comes from them) and what the
    head proved."""

    model: LoadedModel
    head: Head
    graph: Graph
    manifest: dict
    options: Options
    files: dict[str, str] = field(default_factory=dict)
    proof: Proof | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)  # by head form, `graph` among them


def _family_owner(head: Head) -> str:
    return f"family {head.family.name}"


def configure_head(head: Head, options: Options) -> None:
    """Give the head its options (its family's own, `ssdconv.options`); an option another
    family owns, or a target's option shaping a detection head (`Option.shapes_head`) for a
    network that has none, set away from its default, is refused: it would be silently
    ignored."""
    refuse_foreign_family(options, head.family.name, {f.name: f.kind for f in families()})
    if not isinstance(head, DetectorHead) or options.headless:
        has = "a headless model keeps none of it" if options.headless else \
            f"this model is {head.family.kind}, which has none"
        for opt in set_away_from_default(options):
            if opt.shapes_head:
                raise UserError(f"{opt.shown} shapes a detector's post-processing; {has}: "
                                "drop it")
    head.configure(options)


def configured_head(source, options: Options) -> Head:
    """The head recognised in `source`, given its options; with `--headless`, cut where its
    family says the NPU stops (`ssdconv.headless`)."""
    head = recognise(source)
    configure_head(head, options)
    if options.headless:
        from .headless.head import cut_head

        head = cut_head(head, options.headless_layout)
    return head


def head_options(head: Head, options: Options) -> dict:
    """The head options a conversion was made with (the manifest's `head_options`): its
    family's, and those of the written targets that change the head they write."""
    written = {o.key: getattr(options, o.key) for o in table()
               if o.api and o.shapes_head and o.owned_by[0] == "target"
               and o.owned_by[1] in options.targets and hasattr(options, o.key)}
    return {**owned(_family_owner(head), options), **written}


SOURCE_NORMALISATION = ("source_mean", "source_std")


def source_preprocessing(model: LoadedModel, head: Head,
                         options: Options) -> tuple[tuple, tuple, str, str]:
    """(mean, std, channel order, layout) of the pixels the source network takes: what the
    graph's own input arithmetic reads (`model.adapter`), else the options', except that a head
    taking raw pixels by its family's convention (`Head.raw_pixels`) gets mean 0 and std 1
    unless the options set them."""
    adapter = model.adapter
    if adapter is not None:  # the graph normalises raw RGB pixels itself
        return adapter.mean, adapter.std, "RGB", adapter.layout
    if head.raw_pixels and not any(o.key in SOURCE_NORMALISATION
                                   for o in set_away_from_default(options)):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), options.source_channel_order, "NCHW"
    return options.source_mean, options.source_std, options.source_channel_order, "NCHW"


# the passes that change what the converted model's input is (a data BatchNorm into the mean,
# the 1/std and the RGB->BGR swap into the first convolution)
INPUT_PASSES = ("fold_input_affine", "fold_input_scale")


def input_passes_skipped(head: Head) -> tuple[str, ...]:
    """The input passes a head whose clients feed raw RGB pixels (`Head.raw_pixels`: ncnn's
    RetinaFace example) must not run: its model takes exactly what the source takes."""
    return INPUT_PASSES if head.raw_pixels else ()


def build_ir(model: LoadedModel, options: Options, form: str = STOCK,
             head: Head | None = None) -> tuple[Graph, Head, dict]:
    """Everything up to, not including, writing files, for one head form (`HEAD_FORMS`: the
    one the targets ask for); `head`, when given, is the model's head already recognised."""
    source = model.graph
    if head is None:
        head = configured_head(source, options)
    adapter = model.adapter
    graph = walk(source, head.walk_roots, adapter)
    ctx = ConvertContext(source)
    if adapter is not None:
        ctx.aliases[adapter.end] = source.input_name
    head.synthesise(graph, ctx.blob, form)
    mean, std, order, _ = source_preprocessing(model, head, options)
    graph.preprocess = Preprocess.from_source(mean, std, order)
    done = run_passes(graph, options.skip_passes + input_passes_skipped(head))
    head.after_passes(graph)
    return graph, head, done


def _class_names(model: LoadedModel, head: Head) -> list[str] | None:
    """A detector's class names, checked against the classes it predicts (generated when the
    model has none); None for a head that is no detector: it has no classes to name."""
    if not isinstance(head, DetectorHead):
        return _output_class_names(model, head)
    n = head.num_classes
    classes = model.classes or [f"class{i}" for i in range(n)]
    if len(classes) != n:
        raise UserError(f"{len(classes)} class names given but the model predicts "
                        f"{n} classes; pass --classes with {n} names")
    return list(values.check(values.class_names, classes, "class names"))


def _output_class_names(model: LoadedModel, head: Head) -> list[str] | None:
    """A plain network's class names (a GluonCV classifier's `classes`, or --classes): they
    name the entries of an output with as many values; None when there are none."""
    if not model.classes:
        return None
    sizes = [math.prod(shape[1:]) for shape in head.prove().figures.get("outputs", {}).values()]
    if len(model.classes) not in sizes:
        raise UserError(f"{len(model.classes)} class names given, but no output of the model "
                        f"has {len(model.classes)} values (its outputs have "
                        f"{', '.join(map(str, sizes))}); drop --classes or give one name each")
    # not required distinct: ImageNet's own list names "crane" and "maillot" twice
    return [str(c) for c in model.classes]


def _manifest(model: LoadedModel, head: Head, graph: Graph, proof: Proof, passes: dict,
              approximations: list[dict], choices: list[str], options: Options) -> dict:
    """The generic keys around the head's own section (`Head.manifest_section`); a
    detector's `classes` and `label_offset` (what its detection rows' labels mean) among them."""
    classes = _class_names(model, head)
    section = head.manifest_section(proof)
    labels = ({} if classes is None else {"classes": classes} if "label_offset" not in section
              else {"classes": classes, "label_offset": section.pop("label_offset")})
    pre = graph.preprocess
    return {
        "ssdconv_version": __version__,
        "name": model.name,
        "source": model.graph.origin,
        "family": head.family.name,
        "head_options": head_options(head, options),
        "notes": [model.weights_line, *model.notes],
        "input_shape": list(graph.inputs[section["blobs"]["input"]]),
        **pre.as_dict(),
        **labels,
        "blobs": section.pop("blobs"),
        "approximations": approximations,
        "choices": choices,
        **section,
        "passes": passes,
        "layer_counts": graph.op_counts(),
    }


def load_conversion(model: LoadedModel, manifest_path: str | os.PathLike,
                    options: Options | None = None) -> Conversion:
    """An existing conversion (its manifest and the files beside it) paired with the model it
    came from, for checking without writing anything."""
    path = Path(values.check(values.input_file, str(manifest_path), "manifest"))
    try:
        manifest = json.loads(path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not an ssdconv manifest (no 'files' list)") from None
    if not isinstance(listed, list) or not all(
            isinstance(f, str) and "." in f and os.path.basename(f) == f for f in listed):
        raise UserError(f"{path} is not an ssdconv manifest ('files' must list file names "
                        "beside it)")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise UserError(f"{path} is not a complete ssdconv manifest (no {', '.join(missing)}); "
                        "convert again")
    files = {}
    for fname in listed:
        full = path.parent / fname
        if not full.is_file():
            raise UserError(f"{full} is listed in {path.name} but missing")
        files[fname.rsplit(".", 1)[1]] = str(full)
    options = options or Options()
    written = tuple(b.name for b in backends() if b.wrote(files))
    recorded = manifest.get("head_options", {})
    if isinstance(recorded, dict):  # the head is rebuilt as it was converted, for its files
        family_keys = {k for f in families() for k in owned(f"family {f.name}", options)}
        options = replace(options, targets=written or options.targets,
                          **{k: v for k, v in recorded.items() if k in family_keys},
                          **_headless_options(manifest))
        options = options.checked()
    graph, head, _ = build_ir(model, options)
    proof = head.prove()
    family = manifest.get("family", head.family.name)  # manifests before the seam had none
    if family != head.family.name:
        raise UserError(f"{path} is the manifest of a {family} conversion, but the model is "
                        f"{head.family.kind}; pass the manifest written for this model")
    missing = [k for k in DETECTOR_KEYS if isinstance(head, DetectorHead) and k not in manifest]
    if missing:
        raise UserError(f"{path} is not a complete ssdconv manifest (no {', '.join(missing)}); "
                        "convert again")
    roles = [r for r in head.manifest_section(proof)["blobs"]
             if not isinstance(manifest["blobs"], dict) or r not in manifest["blobs"]]
    if roles:
        raise UserError(f"{path} is not a complete ssdconv manifest (no blobs {', '.join(roles)})"
                        "; convert again")
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=proof, graphs={STOCK: graph})


def _headless_options(manifest: dict) -> dict:
    """The options that rebuild a headless conversion's head (its manifest's `headless`)."""
    cut = manifest.get("headless")
    if not isinstance(cut, dict):
        return {}
    return {"headless": True, "headless_layout": cut.get("layout")}


def _output_stem(name: str | None, model: LoadedModel) -> str:
    """The checked file stem: the name asked for, else the model's own name."""
    if name is not None:
        return values.check(values.file_stem, name, "output name")
    try:
        return values.file_stem(model.name)
    except values.BadValue as exc:
        raise UserError(f"the model's name {model.name!r} cannot name the output files; pass "
                        f"--name, which {exc}") from None


def prepare_targets(options: Options, name: str | None) -> dict:
    """Each target's `Backend.prepare` (its options' files and names checked before any work;
    `name` None: before the output name is known, as the command line checks early), after
    refusing an option of a target the conversion does not write."""
    refuse_foreign_targets(options)
    return {t: backend(t).prepare(options, name) for t in options.targets}


def convert(model: LoadedModel, out_dir: str | os.PathLike, options: Options | None = None,
            name: str | None = None) -> Conversion:
    """Convert a loaded model and write `out_dir/NAME.*` for each target.

    All or nothing: the files are prepared in a hidden staging directory inside `out_dir` and
    published together at the end, so a failure or an interruption leaves an earlier conversion
    there byte-identical, and two conversions into one folder never mix their files."""
    options = (options or Options()).checked()
    name = _output_stem(name, model)
    prepared = prepare_targets(options, name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} is a file, not a directory; pass -o DIR")
    targets = [backend(t) for t in options.targets]
    forms = list(dict.fromkeys(t.head_form for t in targets))
    graph, head, passes = build_ir(model, options, forms[0])
    graphs = {forms[0]: graph}
    for form in forms[1:]:
        graphs[form] = build_ir(model, options, form, head)[0]
    proof = head.prove()
    _class_names(model, head)  # a wrong class count is refused before anything is written
    approximations: list[dict] = list(proof.approximations) + head.approximations()
    for target in targets:
        approximations += target.approximations(options)
    approximations += [{**a, "runtimes": [r for t in targets for r in t.runtimes]}
                       for a in graph.approximations]
    with StagedDirectory(out) as stage:
        staging = stage.path
        choices: list[str] = []
        sections: dict = {}
        linted: dict[str, list[str]] = {}
        for target in targets:
            written = target.write(graphs[target.head_form], staging, name, options,
                                   prepared[target.name])
            if options.headless:
                found = target.npu_lint(written.files, list(next(iter(graph.inputs.values()))))
                if found is not None:
                    linted[target.name] = found
            choices += written.choices
            approximations += written.approximations
            if written.section is not None:
                sections[target.name] = written.section
        for fname, data in head.files(name).items():
            (staging / fname).write_bytes(data)
        manifest = _manifest(model, head, graph, proof, passes, approximations, choices,
                             options)
        manifest.update(sections)
        if options.headless:  # what NPU toolchains would refuse, per linted format
            manifest["headless"]["npu_constraints"] = linted
        for target in targets:
            target.finish(manifest, staging, name, prepared[target.name])
        written_names = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        manifest["files"] = written_names + [f"{name}.json"]
        (staging / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        published = stage.publish(manifest["files"])
    files = {p.name.rsplit(".", 1)[1]: str(p) for p in published}
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=proof, graphs=graphs)
