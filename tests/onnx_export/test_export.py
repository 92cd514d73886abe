"""px.onnx.export: the exported graph passes onnx.checker and computes in ONNX Runtime what the
model computes in phalanx (float32, 1e-5), at the traced batch size and at another one."""
import importlib.util
import io
import os
import sys

import numpy as np
import pytest

import phalanx as px
import phalanx.nn.functional as F
from phalanx import nn
from phalanx.autograd import Function

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
ATOL = 1e-5


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _check(model, inputs, others, names, **export_kw):
    """Export `model` on `inputs`; ONNX Runtime must match phalanx on `inputs` and on each
    tuple in `others` (other sizes along the dynamic axes). The model runs in eval mode."""
    model.eval()
    proto = px.onnx.export(model, tuple(inputs), None, input_names=names, **export_kw)
    onnx.checker.check_model(proto, full_check=True)
    session = _session(proto)
    for feed in [inputs] + others:
        with px.no_grad():
            want = [t.numpy() for t in _flat(model(*feed))]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, feed)})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)
    return proto


def _ops(proto):
    return {n.op_type for n in proto.graph.node}


def _randomize_batch_norms(model):
    """Non-trivial running statistics and affine parameters, as after training."""
    with px.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


# ---- the models of the issue --------------------------------------------------------------
@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_mlp_with_a_dynamic_batch_axis(opset):
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 16),
                          nn.Tanh(), nn.Linear(16, 5), nn.LogSoftmax(dim=-1))
    proto = _check(model, [px.randn(4, 12)], [(px.randn(9, 12),), (px.randn(1, 12),)], ["x"],
                   output_names=["logp"], opset_version=opset,
                   dynamic_axes={"x": {0: "batch"}, "logp": {0: "batch"}})
    assert proto.opset_import[0].version == opset
    assert ("Gelu" in _ops(proto)) == (opset >= 20)
    # parameters keep their state-dict names; inputs and outputs their given names and axes
    assert {"0.weight", "0.bias", "2.weight", "5.bias"} <= {t.name for t in
                                                          proto.graph.initializer}
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert proto.graph.output[0].name == "logp"
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 5
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _digits_cnn():
    if EXAMPLES not in sys.path:  # the examples import their shared module as a sibling
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location("digits_cnn",
                                                  os.path.join(EXAMPLES, "digits_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


def test_the_digits_cnn_example():
    pytest.importorskip("sklearn")
    px.manual_seed(1)
    model = _digits_cnn()
    proto = _check(model, [px.randn(3, 1, 8, 8)], [(px.randn(8, 1, 8, 8),)], ["image"],
                   dynamic_axes={"image": {0: "batch"}})
    assert {"Conv", "MaxPool", "Gemm"} <= _ops(proto)


def test_conv_batchnorm_pooling_dropout_net_is_exported_in_eval_mode():
    px.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding="same", groups=2), nn.SiLU(), nn.Dropout(0.5),
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Dropout(0.2), nn.Linear(24, 7))
    _randomize_batch_norms(model)
    model.train()
    x = px.randn(2, 3, 11, 9)
    trained = px.onnx.export(model, (x,), input_names=["x"], dynamic_axes={"x": [0]})
    assert all(m.training for m in model.modules())  # the mode is given back
    model.eval()
    proto = _check(model, [x], [(px.randn(5, 3, 11, 9),)], ["x"], dynamic_axes={"x": [0]})
    assert trained == proto  # exported in eval mode either way
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "x_dynamic_axes_1"
    assert {"Conv", "ConvTranspose", "MaxPool", "AveragePool"} <= _ops(proto)
    assert "Dropout" not in _ops(proto)


def test_one_dimensional_layers_group_norm_and_upsampling():
    px.manual_seed(14)
    model = nn.Sequential(nn.Conv1d(3, 4, 3, padding=2, dilation=2), nn.GroupNorm(2, 4),
                          nn.MaxPool1d(2), nn.AvgPool1d(2), nn.Hardtanh(), nn.Unflatten(1, (2, 2)),
                          nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReLU6(),
                          nn.Softsign())
    _check(model, [px.randn(2, 3, 16)], [(px.randn(4, 3, 16),)], ["x"],
           dynamic_axes={"x": {0: "batch"}})


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)  # in place, as torchvision's blocks do
        return self.relu(out)


class _ResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))
        self.layers = nn.Sequential(_Block(8, 8, 1), _Block(8, 16, 2), _Block(16, 16, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def test_a_small_resnet_with_in_place_residuals():
    px.manual_seed(3)
    model = _ResNet()
    _randomize_batch_norms(model)
    proto = _check(model, [px.randn(2, 3, 12, 12)], [(px.randn(6, 3, 12, 12),)], ["images"],
                   output_names=["logits"], dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}})
    assert "layers.1.shortcut.0.weight" in {t.name for t in proto.graph.initializer}
    assert len([n for n in proto.graph.node if n.op_type == "Conv"]) == 8


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_with_a_dynamic_batch_axis(batch_first):
    px.manual_seed(4)
    model = nn.LSTM(6, 8, num_layers=2, batch_first=batch_first, bidirectional=True)
    def seq(n):  # 5 time steps, n sequences
        return px.randn(n, 5, 6) if batch_first else px.randn(5, n, 6)
    batch = 0 if batch_first else 1
    proto = _check(model, [seq(3)], [(seq(7),), (seq(1),)], ["x"],
                   output_names=["out", "h_n", "c_n"],
                   dynamic_axes={"x": {batch: "batch"}, "out": {batch: "batch"},
                                 "h_n": {1: "batch"}, "c_n": {1: "batch"}})
    assert [o.name for o in proto.graph.output] == ["out", "h_n", "c_n"]


def test_lstm_with_given_initial_state():
    px.manual_seed(5)
    model = nn.LSTM(4, 5, batch_first=True)
    def feed(n):
        return px.randn(n, 3, 4), px.randn(1, n, 5), px.randn(1, n, 5)
    x, h0, c0 = feed(2)

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = model

        def forward(self, x, h0, c0):
            return self.lstm(x, (h0, c0))

    _check(WithState(), [x, h0, c0], [feed(4)], ["x", "h0", "c0"],
           dynamic_axes={"x": {0: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}})


@pytest.mark.parametrize("batch_first,activation,norm_first", [(True, "relu", False),
                                                               (False, "gelu", True)])
def test_transformer_encoder_with_dynamic_batch_and_sequence(batch_first, activation,
                                                             norm_first):
    px.manual_seed(6)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1,
                                       activation=activation, batch_first=batch_first,
                                       norm_first=norm_first)
    model = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16))
    def src(n, s):
        return px.randn(n, s, 16) if batch_first else px.randn(s, n, 16)
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    proto = _check(model, [src(3, 5)], [(src(2, 7),), (src(5, 3),)], ["src"],
                   dynamic_axes={"src": axes})
    assert "Softmax" in _ops(proto)


class _TinyLM(nn.Module):
    """A decoder-only language model: token and position embeddings (px.arange), causal
    scaled-dot-product attention, weight tying."""

    def __init__(self, vocab=11, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(16, dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tokens.weight

    def forward(self, ids):
        B, T = ids.shape
        x = self.tokens(ids) + self.positions(px.arange(T))
        q, k, v = (t.reshape(B, T, self.heads, -1).transpose(1, 2)
                   for t in self.qkv(self.norm(x)).chunk(3, dim=-1))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, -1))
        return self.head(x)


def test_causal_language_model_with_dynamic_batch_and_sequence():
    px.manual_seed(13)
    ids = px.randint(0, 11, (2, 6))
    proto = _check(_TinyLM(), [ids], [(px.randint(0, 11, (3, 9)),), (px.randint(0, 11, (1, 2)),)],
                   ["ids"], output_names=["logits"],
                   dynamic_axes={"ids": {0: "batch", 1: "time"},
                                 "logits": {0: "batch", 1: "time"}})
    assert {"Range", "Trilu"} <= _ops(proto)  # positions and the causal mask follow `time`


def test_transformer_encoder_with_a_causal_mask():
    px.manual_seed(7)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    model = nn.TransformerEncoder(layer, 1)
    mask = nn.Transformer.generate_square_subsequent_mask(6)

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = model

        def forward(self, x):
            return self.enc(x, mask=mask)

    _check(Causal(), [px.randn(2, 6, 8)], [(px.randn(4, 6, 8),)], ["x"],
           dynamic_axes={"x": {0: "batch"}})


@pytest.mark.parametrize("make", [lambda: nn.GRU(4, 5, num_layers=2, batch_first=True),
                                  lambda: nn.RNN(4, 5, nonlinearity="relu", batch_first=True),
                                  lambda: nn.LSTM(4, 6, proj_size=3, batch_first=True)])
def test_other_recurrent_layers(make):
    px.manual_seed(10)
    _check(make(), [px.randn(3, 4, 4)], [(px.randn(6, 4, 4),)], ["x"],
           dynamic_axes={"x": {0: "batch"}})


@pytest.mark.parametrize("make", [lambda: nn.LSTMCell(4, 5), lambda: nn.GRUCell(4, 5)])
def test_recurrent_cells(make):
    px.manual_seed(11)
    _check(make(), [px.randn(3, 4)], [(px.randn(8, 4),)], ["x"], dynamic_axes={"x": [0]})


class _ManyOps(nn.Module):
    """One use of most exportable ops (and of composites built from them)."""

    def forward(self, x):
        padded = F.pad(x, (1, 2), mode="reflect") + F.pad(x, (2, 1), value=0.5)
        moved = x.flip(-1).roll(1, -1).cumsum(-1)
        gram = px.einsum("bij,bkj->bik", x, x)
        norms = (x.norm(dim=-1) + x.norm(p=3, dim=-1) + x.logsumexp(-1) + x.amax(-1)
                 + x.max(-1).values + x.std(-1) + x.prod(-1) + x.sum(-1) / 4)
        elementwise = (x.tril() + x.triu(1) * 2 + x.clamp(-0.5, 0.5) + x.abs().sqrt()
                       + x.exp().log1p() - x.softmax(-1) + F.softplus(x, beta=2)
                       + F.hardswish(x) + F.mish(x) + x.sin() * x.cos() + (x ** 2).rsqrt()
                       + x.sigmoid().maximum(x.tanh()) / 3 + F.silu(x).expm1())
        return (padded, moved, gram, norms, elementwise, x.transpose(0, 1).contiguous(),
                x[..., None, ::2], x[:, 1], x[:, [2, 0]], x.repeat(1, 2, 1),
                x.unsqueeze(1).expand(-1, 3, -1, -1), px.cat([x, x * 2], dim=1),
                x.to(px.float64) * 2, x.max(-1).indices)


class _RoundingAndLogs(nn.Module):
    """Piecewise-constant ops (Functions with a zero gradient) and log2/log10."""

    def forward(self, x):
        y = x * 3.7
        return (y.floor(), y.ceil(), y.trunc(), y.round(), y.round(decimals=1),
                x.abs().log2() + x.abs().log10())


def test_rounding_and_log_bases():
    px.manual_seed(13)
    x = px.randn(3, 5)
    x[0, 0] = 1.25 / 3.7           # a tie: rounds half to even everywhere
    _check(_RoundingAndLogs(), [x], [], ["x"])


@pytest.mark.parametrize("opset", [13, 18])
def test_many_ops(opset):
    px.manual_seed(12)
    _check(_ManyOps(), [px.randn(2, 4, 4)], [(px.randn(5, 4, 4),)], ["x"],
           opset_version=opset, dynamic_axes={"x": {0: "batch"}})


def test_embedding_model_with_integer_inputs():
    px.manual_seed(8)

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 6)
            self.fc = nn.Linear(6, 3)

        def forward(self, tokens):
            h = self.emb(tokens)
            return self.fc(h.mean(dim=1)).softmax(-1), h[:, -1], h[:, 1:3].sum(-1)

    tokens = px.randint(0, 20, (4, 7))
    _check(Bag(), [tokens], [(px.randint(0, 20, (9, 7)),)], ["tokens"],
           dynamic_axes={"tokens": {0: "batch"}})


# ---- what cannot be exported is refused, naming the cause ---------------------------------
def test_an_op_without_translation_raises_an_error_naming_it():
    class Loss(nn.Module):
        def forward(self, logits, target):
            return F.cross_entropy(logits, target)

    with pytest.raises(px.onnx.UnsupportedOperatorError, match="CrossEntropy"):
        px.onnx.export(Loss(), (px.randn(4, 3), px.tensor([0, 2, 1, 0])))

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            return px.Tensor._make(x._data ** 3)

    class UsesCube(nn.Module):
        def forward(self, x):
            return Cube.apply(x) + 1

    with pytest.raises(px.onnx.UnsupportedOperatorError, match="Cube"):
        px.onnx.export(UsesCube(), (px.randn(2),))


def test_a_tensor_computed_outside_the_traced_ops_from_the_input_is_refused():
    class Mask(nn.Module):
        def forward(self, x):
            keep = px.tensor(x.numpy() > 0)  # NumPy's comparison: the graph cannot compute it
            return px.where(keep, x, x * 0.1)

    with pytest.raises(px.onnx.OnnxExporterError, match="outside the traced ops"):
        px.onnx.export(Mask(), (px.randn(3, 4),))


def test_a_python_loop_over_a_dynamic_axis_is_refused():
    model = nn.LSTM(3, 4)
    with pytest.raises(px.onnx.OnnxExporterError, match="runs different ops"):
        px.onnx.export(model, (px.randn(5, 2, 3),), input_names=["x"],
                       dynamic_axes={"x": {0: "time"}})


def test_in_place_writes_it_cannot_follow_are_refused():
    class ViewWrite(nn.Module):
        def forward(self, x):
            y = x * 2
            y.reshape(-1)[0:2].relu_()  # through a view of a view: y changes behind its back
            return y + 1

    with pytest.raises(px.onnx.OnnxExporterError, match="modified in place"):
        px.onnx.export(ViewWrite(), (px.randn(2, 3),))

    class PartWrite(nn.Module):
        def forward(self, x):
            y = x * 2
            y[:, 0] = 0.0
            return y

    with pytest.raises(px.onnx.UnsupportedOperatorError, match="Overwrite"):
        px.onnx.export(PartWrite(), (px.randn(2, 3),))


def test_an_input_read_outside_the_traced_ops_is_reported():
    class Masked(nn.Module):
        def forward(self, x, keep):
            return x * px.tensor(keep.numpy().astype(np.float32))  # NumPy: not traced

    with pytest.warns(UserWarning, match="does not use input 'keep'"):
        px.onnx.export(Masked(), (px.randn(2, 3), px.ones(2, 3, dtype=px.bool)))


def test_a_failing_run_at_the_longer_dynamic_axis_is_explained():
    class Positions(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(px.randn(4, 3))

        def forward(self, x):
            return x + self.pos[:x.shape[0]]

    with pytest.raises(px.onnx.OnnxExporterError, match="one longer"):
        px.onnx.export(Positions(), (px.randn(4, 3),), input_names=["x"],
                       dynamic_axes={"x": {0: "n"}})


def test_ops_inside_an_op_are_recorded_once():
    from phalanx.onnx.tracer import Recorder

    class Outer(Function):
        @staticmethod
        def forward(ctx, x):
            return (x.exp() + 1).log()  # ops of their own, inside this op

    recorder = Recorder([], [], set())
    with px.no_grad(), px.autograd.dispatch.intercept(recorder):
        Outer.apply(px.randn(3)).neg()
    assert [c.cls.__name__ for c in recorder.calls] == ["Outer", "Neg"]


# ---- export options -----------------------------------------------------------------------
def _mlp():
    px.manual_seed(9)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def test_export_params_false_makes_parameters_inputs():
    model = _mlp().eval()
    _randomize_batch_norms(model)
    x = px.randn(3, 4)
    proto = px.onnx.export(model, (x,), input_names=["x"], export_params=False)
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    assert not {t.name for t in proto.graph.initializer} & set(state)
    inputs = [i.name for i in proto.graph.input]
    assert inputs[0] == "x" and set(inputs[1:]) <= set(state) and "0.weight" in inputs
    feed = {"x": x.numpy(), **{n: state[n].detach().numpy() for n in inputs[1:]}}
    got = _session(proto).run(None, feed)[0]
    with px.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=ATOL)


def test_constant_folding_and_initializers_as_inputs():
    model = _mlp().eval()
    _randomize_batch_norms(model)
    x = px.randn(5, 4)
    folded = px.onnx.export(model, (x,), input_names=["x"])
    unfolded = px.onnx.export(model, (x,), input_names=["x"], do_constant_folding=False,
                              keep_initializers_as_inputs=True)
    assert "Sqrt" not in _ops(folded) and "Sqrt" in _ops(unfolded)  # BN statistics folded
    assert {i.name for i in unfolded.graph.input} >= {t.name for t in
                                                      unfolded.graph.initializer}
    with px.no_grad():
        want = model(x).numpy()
    for proto in (folded, unfolded):
        got = _session(proto).run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_writes_to_a_path_or_a_file_and_rejects_what_it_cannot_honour(tmp_path):
    model = _mlp()
    x = px.randn(2, 4)
    path = tmp_path / "mlp.onnx"
    proto = px.onnx.export(model, x, path)
    assert onnx.load(str(path)) == proto
    buffer = io.BytesIO()
    px.onnx.export(model, (x,), buffer)
    assert onnx.load_from_string(buffer.getvalue()) == proto
    with pytest.raises(NotImplementedError, match="dynamic_shapes"):
        px.onnx.export(model, (x,), dynamic_shapes={"x": {0: "batch"}})
    with pytest.raises(NotImplementedError, match="training"):
        px.onnx.export(model, (x,), training=px.onnx.TrainingMode.TRAINING)
    with pytest.raises(TypeError, match="no_such_option"):
        px.onnx.export(model, (x,), no_such_option=1)
    with pytest.raises(ValueError, match="opset_version 9"):
        px.onnx.export(model, (x,), opset_version=9)
