"""Basic layers against PyTorch CPU on copied weights: outputs and gradients w.r.t. inputs and
parameters; gradcheck for the new Functions; dropout and embedding semantics."""
import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(0)


def copy_weights(tmod, pmod):
    pmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


def compare(tmod, pmod, *shapes, rtol=1e-5, atol=1e-6, inputs=None):
    """Same weights, same inputs: outputs, input gradients and parameter gradients agree."""
    copy_weights(tmod, pmod)
    arrays = inputs or [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    tx = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    px_in = [px.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tout, pout = tmod(*tx), pmod(*px_in)
    np.testing.assert_allclose(pout.numpy(force=True), tout.detach().numpy(), rtol=rtol,
                               atol=atol)
    go = RNG.standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.tensor(go))
    pout.backward(px.tensor(go))
    for t, p in zip(tx, px_in):
        if t.requires_grad:
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tmod.named_parameters())
    for name, p in pmod.named_parameters():
        if tparams[name].grad is None:
            assert p.grad is None
            continue
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)


LAYERS = [
    ("linear", lambda L: L.Linear(5, 3), [(4, 5)]),
    ("linear_nobias_3d", lambda L: L.Linear(5, 3, bias=False), [(2, 4, 5)]),
    ("bilinear", lambda L: L.Bilinear(4, 3, 2), [(5, 4), (5, 3)]),
    ("bilinear_3d", lambda L: L.Bilinear(4, 3, 2, bias=False), [(2, 5, 4), (2, 5, 3)]),
    ("identity", lambda L: L.Identity(7, k=1), [(3, 2)]),
    ("flatten", lambda L: L.Flatten(), [(2, 3, 4)]),
    ("flatten_mid", lambda L: L.Flatten(0, 1), [(2, 3, 4)]),
    ("unflatten", lambda L: L.Unflatten(1, (2, 3)), [(4, 6)]),
    ("relu", lambda L: L.ReLU(), [(4, 5)]),
    ("relu6", lambda L: L.ReLU6(), [(4, 5)]),
    ("leaky", lambda L: L.LeakyReLU(0.2), [(4, 5)]),
    ("elu", lambda L: L.ELU(0.7), [(4, 5)]),
    ("gelu", lambda L: L.GELU(), [(4, 5)]),
    ("gelu_tanh", lambda L: L.GELU(approximate="tanh"), [(4, 5)]),
    ("silu", lambda L: L.SiLU(), [(4, 5)]),
    ("mish", lambda L: L.Mish(), [(4, 5)]),
    ("tanh", lambda L: L.Tanh(), [(4, 5)]),
    ("sigmoid", lambda L: L.Sigmoid(), [(4, 5)]),
    ("hardtanh", lambda L: L.Hardtanh(-0.5, 0.5), [(4, 5)]),
    ("hardswish", lambda L: L.Hardswish(), [(4, 5)]),
    ("hardsigmoid", lambda L: L.Hardsigmoid(), [(4, 5)]),
    ("logsigmoid", lambda L: L.LogSigmoid(), [(4, 5)]),
    ("softsign", lambda L: L.Softsign(), [(4, 5)]),
    ("softplus", lambda L: L.Softplus(beta=2.0, threshold=1.0), [(4, 5)]),
    ("softmax", lambda L: L.Softmax(dim=1), [(4, 5)]),
    ("softmax0", lambda L: L.Softmax(dim=0), [(4, 5)]),
    ("logsoftmax", lambda L: L.LogSoftmax(dim=-1), [(2, 3, 5)]),
    ("softmin", lambda L: L.Softmin(dim=1), [(4, 5)]),
    ("dropout_eval", lambda L: L.Dropout(0.5).eval(), [(4, 5)]),
    ("mlp", lambda L: L.Sequential(L.Linear(6, 8), L.GELU(), L.Linear(8, 8), L.Tanh(),
                                   L.Linear(8, 2)), [(5, 6)]),
]


@pytest.mark.parametrize("name,make,shapes", LAYERS, ids=[r[0] for r in LAYERS])
def test_layer_matches_torch(name, make, shapes):
    compare(make(torch.nn), make(nn), *shapes)


def test_embedding_matches_torch():
    idx = np.array([[1, 0, 3], [3, 2, 0]], np.int64)
    t, p = torch.nn.Embedding(5, 4, padding_idx=0), nn.Embedding(5, 4, padding_idx=0)
    compare(t, p, inputs=[idx])
    assert not p.weight.grad.numpy()[0].any()  # the padding row gets no gradient
    assert not p.weight._data[0].any() and p.weight._data[1:].any()


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_scale_grad_by_freq_matches_torch(padding_idx):
    idx = np.array([[1, 0, 3, 3], [3, 2, 0, 3]], np.int64)
    t = torch.nn.Embedding(5, 4, padding_idx=padding_idx, scale_grad_by_freq=True)
    p = nn.Embedding(5, 4, padding_idx=padding_idx, scale_grad_by_freq=True)
    compare(t, p, inputs=[idx])     # rows 0 and 3 appear 2 and 4 times: their gradient / 2, / 4
    with pytest.raises(NotImplementedError, match="sparse"):
        F.embedding(px.tensor([0]), px.randn(2, 2), sparse=True)


def test_embedding_from_pretrained_and_errors():
    w = px.randn(4, 3)
    e = nn.Embedding.from_pretrained(w)
    assert not e.weight.requires_grad
    np.testing.assert_array_equal(e(px.tensor([2]))._data[0], w._data[2])
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad
    with pytest.raises(IndexError, match="num_embeddings=4"):
        e(px.tensor([4]))
    with pytest.raises(RuntimeError, match="integer tensor"):
        e(px.tensor([1.0]))
    m = nn.Embedding(6, 3, padding_idx=-1)
    assert m.padding_idx == 5
    tm = torch.nn.Embedding(6, 3, max_norm=1.0)
    pm = nn.Embedding(6, 3, max_norm=1.0)
    copy_weights(tm, pm)
    i = [[0, 2], [2, 5]]
    np.testing.assert_allclose(pm(px.tensor(i)).numpy(force=True),
                               tm(torch.tensor(i)).detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(pm.weight.numpy(force=True), tm.weight.detach().numpy(),
                               rtol=1e-5)


def test_embedding_gradcheck():
    w = px.randn(5, 3, dtype=px.float64, requires_grad=True)
    idx = px.tensor([[0, 2, 2], [4, 1, 0]])
    # (padding_idx deliberately drops a true gradient, so it is checked against PyTorch above)
    assert gradcheck(lambda w: F.embedding(idx, w), (w,))
    assert gradgradcheck(lambda w: F.embedding(idx, w) ** 2, (w,))


def test_one_hot():
    t = torch.tensor([0, 3, 1])
    np.testing.assert_array_equal(F.one_hot(px.tensor([0, 3, 1]), 5).numpy(),
                                  torch.nn.functional.one_hot(t, 5).numpy())
    assert F.one_hot(px.tensor([[1], [2]])).shape == (2, 1, 3)


def test_dropout_train_eval_and_seeding():
    d = nn.Dropout(0.25)
    x = px.ones(200, 100)
    px.manual_seed(3)
    a = d(x)
    px.manual_seed(3)
    b = d(x)
    np.testing.assert_array_equal(a._data, b._data)
    kept = a._data != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(a._data[kept], 1 / 0.75, rtol=1e-6)
    g = px.Generator().manual_seed(5)
    c = F.dropout(x, 0.25, generator=g)
    g.manual_seed(5)
    np.testing.assert_array_equal(c._data, F.dropout(x, 0.25, generator=g)._data)
    d.eval()
    assert d(x) is x
    xr = px.randn(10, 10, requires_grad=True)
    d.train()
    y = d(xr)
    y.sum().backward()
    np.testing.assert_allclose(xr.grad._data, (y._data != 0) / 0.75, rtol=1e-6)
    assert not F.dropout(x, 1.0)._data.any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    assert repr(nn.Dropout(0.1)) == repr(torch.nn.Dropout(0.1))


@pytest.mark.parametrize("layer,shape,axes", [(nn.Dropout2d, (8, 16, 5, 5), (2, 3)),
                                              (nn.Dropout1d, (8, 16, 7), (2,)),
                                              (nn.Dropout3d, (16, 5, 5, 5), (1, 2, 3))])
def test_channel_dropout_zeroes_whole_channels(layer, shape, axes):
    y = layer(0.5)(px.ones(*shape))._data
    per_channel = y.min(axis=axes) == y.max(axis=axes)
    assert per_channel.all()
    assert 0.2 < (y == 0).mean() < 0.8


def test_inplace_activation():
    x = px.randn(3, 4)
    ref = np.maximum(x._data, 0)
    out = nn.ReLU(inplace=True)(x)
    assert out is x
    np.testing.assert_array_equal(x._data, ref)


def test_linear_errors():
    with pytest.raises(RuntimeError, match=r"5 features .* weight has shape \[3, 4\]"):
        nn.Linear(4, 3)(px.randn(2, 5))
    with pytest.raises(RuntimeError, match="do not match weight"):
        nn.Bilinear(2, 3, 1)(px.randn(1, 2), px.randn(1, 4))


def test_cosine_similarity_and_normalize():
    a, b = RNG.standard_normal((4, 6)), RNG.standard_normal((4, 6))
    np.testing.assert_allclose(
        F.cosine_similarity(px.tensor(a), px.tensor(b)).numpy(),
        torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b)).numpy(),
        rtol=1e-6)
    np.testing.assert_allclose(F.normalize(px.tensor(a), dim=1).numpy(),
                               torch.nn.functional.normalize(torch.tensor(a), dim=1).numpy(),
                               rtol=1e-6)


def test_layer_defaults_match_torch_bounds():
    lin = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w, b = lin.weight._data, lin.bias._data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.9 * bound
    bil = nn.Bilinear(50, 20, 30)
    assert np.abs(bil.weight._data).max() <= 1 / np.sqrt(50)
    np.testing.assert_allclose(bil.weight._data.std(), 1 / np.sqrt(50) / np.sqrt(3), rtol=0.03)
    emb = nn.Embedding(1000, 64)
    np.testing.assert_allclose([emb.weight._data.mean(), emb.weight._data.std()], [0, 1],
                               atol=0.02)
    assert lin.weight.dtype == px.float32
    assert nn.Linear(2, 2, dtype=px.float64).weight.dtype == px.float64


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_function_gradcheck(shape, bias):
    gen = px.Generator().manual_seed(3)
    x = px.randn(*shape, generator=gen, dtype=px.float64, requires_grad=True)
    w = px.randn(5, 4, generator=gen, dtype=px.float64, requires_grad=True)
    b = px.randn(5, generator=gen, dtype=px.float64, requires_grad=True) if bias else None
    inputs = (x, w, b) if bias else (x, w)
    assert gradcheck(lambda *a: F.linear(*a), inputs)
    assert gradgradcheck(lambda *a: F.linear(*a), inputs)


def test_linear_weight_grad_is_c_contiguous():
    m = nn.Linear(8, 6)
    m(px.randn(5, 8)).sum().backward()
    assert m.weight.grad._data.flags.c_contiguous


def test_linear_dtype_mismatch_names_both():
    with pytest.raises(RuntimeError, match="float64.*float32"):
        F.linear(px.randn(2, 3, dtype=px.float64), px.randn(4, 3))
