"""Rules both backends share (ssdconv.backend): the same fault is the same kind of error in both.

An IR breaking its own contract is an internal error (RuntimeError from validate, ValueError from
a shape rule) in caffe and ncnn alike; a valid node one target cannot write is a refusal, listed
with every other refused node in one UnsupportedError; graph inputs without an Input node get
the same Input layer from both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdconv.backend.caffe.emit import parse_prototxt_strict, write_caffe
from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.errors import UnsupportedError
from ssdconv.ir.graph import Graph, Node

WRITERS = {"caffe": write_caffe, "ncnn": write_ncnn}
SHAPE = (1, 4, 8, 8)


def _graph(*nodes: Node, outputs: list[str] | None = None) -> Graph:
    """Input "data" of SHAPE, then `nodes`; not validated (some tests need broken IR)."""
    inp = Node("data", "Input", [], ["data"], {"shape": SHAPE})
    return Graph(nodes=[inp, *nodes], inputs={"data": SHAPE},
                 outputs=outputs or [nodes[-1].outputs[0]])


def _pool(name: str, **attrs) -> Node:
    a = {"method": "max", "kernel": (2, 2), "stride": (2, 2), "pad": (0, 0),
         "global_pool": False, "round": "floor", "count_include_pad": True, **attrs}
    return Node(name, "Pool", ["data"], [name], a)


IR_FAULTS = {
    "unknown pool method": (_graph(_pool("pool", method="min")), RuntimeError, "method='min'"),
    "coeffs on a product": (_graph(Node("e", "Eltwise", ["data", "data"], ["e"],
                                        {"operation": "prod", "coeffs": (1.0, 2.0)})),
                            RuntimeError, "coeffs"),
    "missing attribute": (_graph(Node("sm", "Softmax", ["data"], ["sm"], {})), RuntimeError,
                          "lacks attrs"),
    "order not a permutation": (_graph(Node("p", "Permute", ["data"], ["p"],
                                            {"order": (0, 2, 2, 1)})),
                                ValueError, "not a permutation"),
    "axis out of range": (_graph(Node("c", "Concat", ["data", "data"], ["c"], {"axis": 4})),
                          ValueError, "axis 4 out of range"),
    "upsample by 1": (_graph(Node("up", "Upsample", ["data"], ["up"], {"scale": 1})),
                      RuntimeError, "integer >= 2"),
    "factors beside weights": (_graph(Node("s", "Scale", ["data", "data"], ["s"], {"bias": False},
                                           {"scale": np.ones(4)})),
                               RuntimeError, "no weights"),
    "factors of the wrong shape": (_graph(Node("s", "Scale", ["data", "data"], ["s"],
                                               {"bias": False})),
                                   ValueError, "do not match"),
}


@pytest.mark.parametrize("backend", sorted(WRITERS))
@pytest.mark.parametrize("fault", sorted(IR_FAULTS))
def test_an_ir_fault_is_an_internal_error_in_both_backends(tmp_path, backend, fault):
    g, kind, message = IR_FAULTS[fault]
    with pytest.raises(kind, match=message) as exc:
        WRITERS[backend](g, tmp_path, "net")
    assert not isinstance(exc.value, UnsupportedError)
    assert list(tmp_path.iterdir()) == []


def test_caffe_lists_every_node_it_cannot_write_at_once(tmp_path):
    g = _graph(_pool("wide", kernel=(1, 1), stride=(1, 1), pad=(1, 1)),
               _pool("avg", method="avg", kernel=(3, 3), stride=(1, 1), pad=(1, 1),
                     count_include_pad=False),
               _pool("fine"), outputs=["wide", "avg", "fine"])
    with pytest.raises(UnsupportedError, match="the caffe backend") as exc:
        write_caffe(g, tmp_path / "caffe", "net")
    assert [(r.node, r.op) for r in exc.value.refusals] == [("wide", "Pool"), ("avg", "Pool")]
    assert not (tmp_path / "caffe").exists()
    # a target limit, not an IR fault: ncnn writes the same graph
    assert Path(write_ncnn(g, tmp_path / "ncnn", "net")["param"]).is_file()


def test_ncnn_lists_every_node_it_cannot_write_at_once(tmp_path):
    g = _graph(Node("cat", "Concat", ["data", "data"], ["cat"], {"axis": 0}),
               Node("copy", "Identity", ["data"], ["copy"]), outputs=["cat", "copy"])
    with pytest.raises(UnsupportedError, match="the ncnn backend") as exc:
        write_ncnn(g, tmp_path / "ncnn", "net")
    assert [(r.node, r.op) for r in exc.value.refusals] == [("cat", "Concat"),
                                                            ("copy", "Identity")]
    assert not (tmp_path / "ncnn").exists()


@pytest.mark.parametrize("node_name, layer_name", [("relu", "data"), ("data", "data_input")])
def test_both_backends_add_the_same_input_layer(tmp_path, node_name, layer_name):
    """A graph input without an Input node gets one, named after its blob unless taken."""
    relu = Node(node_name, "ReLU", ["data"], ["out"])
    g = Graph(nodes=[relu], inputs={"data": SHAPE}, outputs=["out"])
    first = parse_prototxt_strict(write_caffe(g, tmp_path, "net")["prototxt"]).layer[0]
    assert (first.type, first.name, list(first.top)) == ("Input", layer_name, ["data"])
    assert list(first.input_param.shape[0].dim) == list(SHAPE)
    lines = Path(write_ncnn(g, tmp_path, "net")["param"]).read_text().splitlines()
    assert lines[2].split()[:5] == ["Input", layer_name, "0", "1", "data"]
    assert [n.op for n in g.nodes] == ["ReLU"]  # the caller's graph is left as it was
