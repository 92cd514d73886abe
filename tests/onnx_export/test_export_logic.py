"""Comparisons, logical/bitwise ops, NaN tests and argmax/argmin go through the dispatch point,
so models that use them (LeakyReLU, ELU, SELU, CELU, PReLU, Threshold, Hardshrink, masks)
export to ONNX and compute in ONNX Runtime what they compute in phalanx."""
import numpy as np
import pytest

import phalanx as px
import phalanx.nn.functional as F
from phalanx import nn
from phalanx.autograd import dispatch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _check(model, x, others, opset=None):
    model.eval()
    proto = px.onnx.export(model, (x,), None, input_names=["x"], opset_version=opset,
                           dynamic_axes={"x": {0: "batch"}})
    onnx.checker.check_model(proto, full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    for feed in [x] + others:
        with px.no_grad():
            out = model(feed)
        want = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        got = session.run(None, {"x": feed.numpy()})
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    return proto


@pytest.mark.parametrize("layer", [nn.LeakyReLU(0.2), nn.ELU(0.7), nn.SELU(), nn.CELU(1.3),
                                   nn.PReLU(5), nn.Threshold(0.1, -2.0), nn.Hardshrink(0.4),
                                   nn.RReLU()],
                         ids=lambda m: type(m).__name__)
def test_activations_built_on_masks_export(layer):
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), layer)
    _check(model, px.randn(4, 3), [px.randn(7, 3)])


class _Logic(nn.Module):
    def forward(self, x):
        pos, big = x > 0, x >= 0.5
        small = (x < -0.5) | (x <= -1.0)
        eq = (x == x) & (x != 0.25)
        picked = px.where(pos ^ big, x, -x) + px.where(~small, 1.0, 0.0)
        finite = px.isfinite(x) & ~px.isnan(x) & ~px.isinf(x)
        return (picked, eq, finite, px.logical_not(pos), px.logical_and(pos, big),
                px.logical_or(pos, small), px.logical_xor(pos, small), x.argmax(-1),
                x.argmin(0, keepdim=True), x.argmax(), x.argmax(keepdim=True),
                (x > 0).long() + 1, px.eq(x, 0.0), px.ne(x.argmax(-1), 2))


@pytest.mark.parametrize("opset", [13, 18])
def test_comparisons_logic_and_argmax_export(opset):
    px.manual_seed(1)
    proto = _check(_Logic(), px.randn(4, 6), [px.randn(2, 6)], opset)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not", "And", "Or",
            "Xor", "IsNaN", "IsInf", "ArgMax", "ArgMin", "Where"} <= ops


def test_integer_bitwise_ops_need_opset_18():
    class Bits(nn.Module):
        def forward(self, x):
            k = x.argmax(-1)
            return (k & 1) | (k ^ 3), ~k

    model = Bits()
    _check(model, px.randn(3, 5), [px.randn(6, 5)], opset=18)
    with pytest.raises(Exception, match="opset 18"):
        px.onnx.export(model, (px.randn(3, 5),), None, opset_version=13)


def test_comparisons_are_seen_at_the_dispatch_point():
    seen = []

    def record(cls, args, kwargs, proceed):
        seen.append(cls.__name__)
        return proceed(args, kwargs)

    x = px.randn(3, requires_grad=True)
    with dispatch.intercept(record):
        mask = x > 0
        _ = (mask & (x < 1), ~mask, x.argmax(), px.isnan(x), x == 1, px.where(mask, x, -x),
             F.leaky_relu(x))
    for name in ("Gt", "Lt", "LogicalAnd", "BitwiseNot", "Argmax", "IsNan", "Eq", "Where",
                 "LeakyRelu"):
        assert name in seen, (name, seen)
    assert not mask.requires_grad and mask.grad_fn is None


def test_inverse_trigonometric_and_hyperbolic_functions_export():
    class Trig(nn.Module):
        def forward(self, x):
            u = x.tanh() * 0.9
            return (px.asin(u) + px.acos(u) + px.atan(x) + px.sinh(x) + px.cosh(x)
                    + px.asinh(x) + px.acosh(x.abs() + 1.5) + px.atanh(u),
                    px.atan2(x, x.flip(-1)), px.atan2(x, px.zeros_like(x)))

    x = px.randn(3, 4)
    x[0, 0] = 0.0
    _check(Trig(), x, [px.randn(5, 4)])
