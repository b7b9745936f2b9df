"""Where a zoo SSD's weights come from: --params, --seed, or GluonCV's model store, never silently
random; GluonCV's fine-tuning flow (reset_class, save_parameters) converts from the zoo name.

CLI runs are subprocesses with a temporary MXNET_HOME, so the user's real model store is never
read. ssd_300_mobilenet0.25_voc at 300 is the cheapest SSD; ssd_512_mobilenet1.0_voc is used only
where a name GluonCV publishes weights for is needed, and is refused before it is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ssdconv.errors import UserError

MODEL = "ssd_300_mobilenet0.25_voc"  # GluonCV publishes no weights for it
PUBLISHED = "ssd_512_mobilenet1.0_voc"  # GluonCV does: ssd_512_mobilenet1.0_voc-37c18076.params
CLASSES = ["person", "car"]


def run_cli(mxnet_home, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore", MXNET_HOME=str(mxnet_home))
    return subprocess.run([sys.executable, "-m", "ssdconv", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def error_line(proc) -> str:
    """The one `ssdconv: error:` line of a refused run (MXNet's engine log lines aside)."""
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and "graph_executor" not in ln and "MKLDNN" not in ln]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ssdconv: error: "), lines
    return lines[0]


def weights_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("weights: ")]


def seeded_net(classes: list[str] | None = None, seed: int = 11):
    """GluonCV's fine-tuning flow with seeded weights standing in for training: build the zoo
    SSD, run it once, `reset_class`, run again, give every parameter non-trivial values."""
    import mxnet as mx
    from gluoncv import model_zoo

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block
    from ssdconv.mxnet.seeded import seed_params

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = model_zoo.get_model(MODEL, pretrained=False, pretrained_base=False)
        net.initialize()
        net(mx.nd.zeros((1, 3, 300, 300)))
        if classes:
            net.reset_class(classes)
            net(mx.nd.zeros((1, 3, 300, 300)))
        seeded = load_block(net, (300, 300), name="x")
        seed_params(seeded.graph, seed, _constants(net))
        for p in net.collect_params().values():
            if p.name in seeded.graph.params and p.name not in _constants(net):
                p.set_data(mx.nd.array(seeded.graph.params[p.name]))
    return net


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> str:
    """Weights saved with save_parameters after reset_class(CLASSES)."""
    path = tmp_path_factory.mktemp("finetuned") / "mine.params"
    seeded_net(CLASSES).save_parameters(str(path))
    return str(path)


def carries_saved_predictor(model, path: str) -> bool:
    """The model's graph holds the file's first class predictor, value for value (graph names
    depend on how many nets the process built, so the array is looked for, not its name)."""
    import mxnet as mx

    ref = mx.nd.load(path)["class_predictors.0.predictor.weight"].asnumpy()
    return any(v.shape == ref.shape and np.array_equal(v, ref)
               for v in model.graph.params.values())


# --- GluonCV's model store --------------------------------------------------------------------

def test_store_names_and_files_follow_gluoncv():
    from gluoncv.model_zoo.model_store import short_hash

    from ssdconv.mxnet.model_store import store_entry, store_name

    assert store_name("ssd_512_resnet50_v1_voc") == "ssd_512_resnet50_v1_voc"
    # get_ssd('mobilenet1.0', 300, dataset='coco') loads a name that is not the zoo name
    assert store_name("ssd_300_mobilenet1.0_lite_coco") == "ssd_300_mobilenet1.0_coco"
    assert store_name("ssd_300_mobilenet0.25_custom") is None
    entry = store_entry(PUBLISHED, root="/nowhere")
    assert entry.path == f"/nowhere/{PUBLISHED}-{short_hash(PUBLISHED)}.params"
    assert store_entry(MODEL) is None  # GluonCV publishes no weights for it


def test_store_file_with_a_matching_hash_is_loaded(tmp_path):
    """The pass path, with the store entry registered for this file (a SHA-1 cannot be
    forged for GluonCV's own table): found, checked, loaded, and said so."""
    from ssdconv.convert import Options, convert
    from ssdconv.models import load_zoo
    from ssdconv.mxnet.model_store import sha1_matches, store_entry, verified_file

    scratch = tmp_path / "scratch.params"
    seeded_net(seed=5).save_parameters(str(scratch))
    digest = hashlib.sha1(scratch.read_bytes()).hexdigest()
    entry = store_entry(MODEL, root=str(tmp_path / "models"), hashes={MODEL: digest})
    assert entry.file_name == f"{MODEL}-{digest[:8]}.params"
    os.makedirs(entry.root)
    os.replace(scratch, entry.path)
    assert sha1_matches(entry.path, digest) and not sha1_matches(entry.path, "0" * 40)
    assert verified_file(entry) == entry.path

    model = load_zoo(MODEL, store=entry)
    assert model.weights == f"GluonCV model store {entry.path} (SHA-1 ok)"
    assert carries_saved_predictor(model, entry.path)
    conv = convert(model, tmp_path / "out", Options(targets=("caffe",)))
    assert conv.manifest["notes"][0] == f"weights: GluonCV model store {entry.path} (SHA-1 ok)"


def test_store_file_failing_the_checksum_is_refused(tmp_path):
    from ssdconv.mxnet.model_store import store_entry

    entry = store_entry(PUBLISHED, root=str(tmp_path / "models"))
    os.makedirs(entry.root)
    with open(entry.path, "wb") as f:
        f.write(b"half a download")
    out = tmp_path / "out"
    line = error_line(run_cli(tmp_path, "convert", PUBLISHED, "-o", str(out)))
    assert entry.path in line and "SHA-1 checksum" in line and "--params" in line, line
    assert not out.exists()
    assert open(entry.path, "rb").read() == b"half a download"  # refused, not deleted


# --- no silent random weights -----------------------------------------------------------------

def test_no_weights_is_refused_naming_every_way_to_give_them(tmp_path):
    from ssdconv.mxnet.model_store import store_entry

    out = tmp_path / "out"
    line = error_line(run_cli(tmp_path, "convert", PUBLISHED, "-o", str(out)))
    looked = store_entry(PUBLISHED, root=str(tmp_path / "models")).path
    assert "--params" in line and looked in line and "--seed" in line, line
    line = error_line(run_cli(tmp_path, "convert", MODEL, "-o", str(out)))
    assert "--params" in line and str(tmp_path / "models") in line and "--seed" in line, line
    assert f"{MODEL}-SHORTHASH.params" in line, line
    assert not out.exists()
    line = error_line(run_cli(tmp_path, "inspect", MODEL))  # every command that loads a model
    assert "--seed" in line


def test_api_refuses_without_weights(tmp_path):
    from ssdconv.api import convert_model
    from ssdconv.models import load_model

    with pytest.raises(UserError, match="--seed"):
        convert_model("ssd_300_mobilenet0.25_custom", tmp_path / "o", classes=["a"])
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="--params and --seed"):
        load_model(MODEL, params="x.params", seed=0)


def test_weights_line_names_the_source(tmp_path):
    """convert and inspect print where the weights came from; the manifest notes say the same."""
    from ssdconv.models import load_model
    from ssdconv.mxnet.load import save_exported

    proc = run_cli(tmp_path, "inspect", MODEL, "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == "weights: seeded random (seed 3)"

    symbol = save_exported(load_model(MODEL, seed=1).graph, str(tmp_path / "exp"))
    proc = run_cli(tmp_path, "convert", symbol, "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = f"weights: exported with the symbol {tmp_path / 'exp-0000.params'}"
    assert weights_lines(proc.stdout) == [line]
    manifest = json.loads((tmp_path / "out" / "exp.json").read_text())
    assert manifest["notes"][0] == line


# --- GluonCV's fine-tuning flow -----------------------------------------------------------------

def test_weights_saved_after_reset_class_convert_and_verify(finetuned, tmp_path, sample_images):
    from ssdconv.models import load_model

    model = load_model(MODEL, params=finetuned, classes=CLASSES)
    assert carries_saved_predictor(model, finetuned)
    out = tmp_path / "out"
    proc = run_cli(tmp_path, "convert", MODEL, "--params", finetuned, "--classes",
                   ",".join(CLASSES), "--target", "all", "-o", str(out),
                   "--verify", sample_images[0])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert weights_lines(proc.stdout) == [f"weights: {finetuned}"]
    assert "verdict: PASS" in proc.stdout
    assert "[ok  ] opencv" in proc.stdout and "[ok  ] ncnn" in proc.stdout, proc.stdout
    manifest = json.loads((out / f"{MODEL}.json").read_text())
    assert manifest["classes"] == CLASSES
    assert manifest["notes"][0] == f"weights: {finetuned}"


def test_reset_class_with_seed_converts_and_verifies(tmp_path, sample_images):
    out = tmp_path / "out"
    proc = run_cli(tmp_path, "convert", MODEL, "--seed", "3", "--classes", ",".join(CLASSES),
                   "--target", "all", "-o", str(out), "--verify", sample_images[0])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert weights_lines(proc.stdout) == ["weights: seeded random (seed 3)"]
    assert "verdict: PASS" in proc.stdout
    assert "[ok  ] opencv" in proc.stdout and "[ok  ] ncnn" in proc.stdout, proc.stdout
    assert json.loads((out / f"{MODEL}.json").read_text())["classes"] == CLASSES


def test_reset_class_weights_without_classes_say_how_many(finetuned, tmp_path):
    line = error_line(run_cli(tmp_path, "convert", MODEL, "--params", finetuned,
                              "-o", str(tmp_path / "out")))
    assert "holds 2 classes" in line and "--classes" in line, line
    assert not (tmp_path / "out").exists()
