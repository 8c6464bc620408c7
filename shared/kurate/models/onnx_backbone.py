"""The embedding backbone as an ONNX graph, run by ONNX Runtime: the fast CPU forward.

Lightly's CLI backbone is a fixed shape (input BatchNorm, 3x3 stem conv + BN, four stages of
``BasicBlock``/``Bottleneck`` blocks, a 1x1 conv to ``num_ftrs``, global average pool), so the graph is
written node by node from the module tree and its weights (no tracing exporter: building takes
milliseconds). ONNX Runtime fuses each convolution with its batch norm and ReLU and runs them in its
blocked (NCHWc) layout; the embeddings agree with torch's within float rounding (tests pin <= 1e-4).
torch stays the reference path: anything this builder does not know raises :class:`Unsupported` and
the caller uses torch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: ONNX Runtime >= 1.29 uploads usage telemetry from Linux too, and keeps a device id under
#: ~/.cache/Microsoft/DeveloperTools. kurate runs on users' private data and never calls out: these
#: opt-outs are set (unless the user set them) before onnxruntime is first imported.
TELEMETRY_OPT_OUT = ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")


def _import_ort() -> Any:
    """onnxruntime, imported with its telemetry off (see :data:`TELEMETRY_OPT_OUT`)."""
    for var in TELEMETRY_OPT_OUT:
        os.environ.setdefault(var, "1")
    import onnxruntime

    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return onnxruntime


class Unsupported(Exception):
    """The module tree holds something this builder does not translate (the caller falls back to torch)."""


class _Graph:
    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, arr: np.ndarray, prefix: str) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out


def _np(t: Any) -> np.ndarray:
    return t.detach().to("cpu").float().numpy()


def _conv(g: _Graph, x: str, conv: Any) -> str:
    from torch import nn

    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise Unsupported(f"conv {conv!r}")
    if isinstance(conv.padding, str):
        raise Unsupported("string padding")
    inputs = [x, g.const(_np(conv.weight), "w")]
    if conv.bias is not None:
        inputs.append(g.const(_np(conv.bias), "b"))
    ph, pw = conv.padding
    return g.node(
        "Conv",
        inputs,
        kernel_shape=list(conv.kernel_size),
        strides=list(conv.stride),
        pads=[ph, pw, ph, pw],
        dilations=list(conv.dilation),
    )


def _bn(g: _Graph, x: str, bn: Any) -> str:
    from torch import nn

    if type(bn) is not nn.BatchNorm2d or not bn.track_running_stats or bn.running_mean is None:
        raise Unsupported(f"norm {bn!r}")
    c = bn.num_features
    scale = _np(bn.weight) if bn.affine else np.ones(c, np.float32)
    bias = _np(bn.bias) if bn.affine else np.zeros(c, np.float32)
    return g.node(
        "BatchNormalization",
        [x, g.const(scale, "s"), g.const(bias, "b"), g.const(_np(bn.running_mean), "m"),
         g.const(_np(bn.running_var), "v")],
        epsilon=float(bn.eps),
    )  # fmt: skip


def _shortcut(g: _Graph, x: str, sc: Any) -> str:
    from torch import nn

    if not isinstance(sc, nn.Sequential):
        raise Unsupported("shortcut")
    if len(sc) == 0:
        return x
    if len(sc) != 2:
        raise Unsupported("shortcut layout")
    return _bn(g, _conv(g, x, sc[0]), sc[1])


def _block(g: _Graph, x: str, blk: Any) -> str:
    kind = type(blk).__name__
    if kind == "BasicBlock":
        out = g.node("Relu", [_bn(g, _conv(g, x, blk.conv1), blk.bn1)])
        out = _bn(g, _conv(g, out, blk.conv2), blk.bn2)
    elif kind == "Bottleneck":
        out = g.node("Relu", [_bn(g, _conv(g, x, blk.conv1), blk.bn1)])
        out = g.node("Relu", [_bn(g, _conv(g, out, blk.conv2), blk.bn2)])
        out = _bn(g, _conv(g, out, blk.conv3), blk.bn3)
    else:
        raise Unsupported(f"block {kind}")
    return g.node("Relu", [g.node("Add", [out, _shortcut(g, x, blk.shortcut)])])


def _module(g: _Graph, x: str, mod: Any) -> str:
    from torch import nn

    if isinstance(mod, nn.Sequential):
        for child in mod:
            x = _module(g, x, child)
        return x
    if isinstance(mod, nn.Conv2d):
        return _conv(g, x, mod)
    if isinstance(mod, nn.BatchNorm2d):
        return _bn(g, x, mod)
    if isinstance(mod, nn.ReLU):
        return g.node("Relu", [x])
    if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size in (1, (1, 1)):
        return g.node("GlobalAveragePool", [x])
    if type(mod).__name__ in ("BasicBlock", "Bottleneck"):
        return _block(g, x, mod)
    raise Unsupported(f"module {type(mod).__name__}")


def build_onnx(backbone: Any) -> bytes:
    """Serialized ONNX model of ``backbone`` followed by a flatten: input ``x`` (N,3,H,W) -> ``y`` (N,F)."""
    from onnx import TensorProto, helper

    g = _Graph()
    out = g.node("Flatten", [_module(g, "x", backbone)], axis=1)
    graph = helper.make_graph(
        g.nodes,
        "kurate_backbone",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", None])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kurate")
    model.ir_version = 8
    return model.SerializeToString()


class OnnxBackbone:
    """Callable ``(N,3,H,W) float32 array -> (N,F) float32 array`` on ONNX Runtime's CPU provider."""

    def __init__(self, backbone: Any, threads: int) -> None:
        ort = _import_ort()

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Don't spin idle threads: the DataLoader's decoding workers share these cores.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.session = ort.InferenceSession(build_onnx(backbone), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of one batch."""
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def available() -> bool:
    """Whether onnx and onnxruntime are installed (the embed extra brings them)."""
    try:
        import onnx  # noqa: F401

        _import_ort()
    except ImportError:
        return False
    return True
