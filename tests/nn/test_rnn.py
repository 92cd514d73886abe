"""RNN, LSTM, GRU and their cells against PyTorch CPU on copied weights: outputs, final states
and gradients w.r.t. inputs, initial states and every parameter; gradcheck; state dicts."""
import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import nn
from phalanx.autograd import gradcheck

RNG = np.random.default_rng(0)


def arr(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def load_from_torch(pm, tm):
    sd = {k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()}
    result = pm.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys


def to_np(t):
    return t.detach().numpy()


LAYERS = [  # (phalanx class, torch class, kwargs)
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2)),
    ("RNN", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True, bias=False)),
    ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=3, batch_first=True)),
    ("GRU", dict(num_layers=2, bidirectional=True, bias=False)),
]


@pytest.mark.parametrize("name,kw", LAYERS, ids=[f"{n}-{kw}" for n, kw in LAYERS])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batched", [True, False])
def test_matches_torch(name, kw, with_hx, batched):
    I, H, T, N = 4, 5, 6, 3
    tm = getattr(torch.nn, name)(I, H, **kw)
    pm = getattr(nn, name)(I, H, **kw)
    load_from_torch(pm, tm)
    x = arr(N, T, I) if kw.get("batch_first") else arr(T, N, I)
    if not batched:
        x = x[0] if kw.get("batch_first") else x[:, 0]
    tx, pxx = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    t_args, p_args, t_states, p_states = (), (), [], []
    if with_hx:
        D = 2 if kw.get("bidirectional") else 1
        layers = kw.get("num_layers", 1)
        h_size = kw.get("proj_size") or H
        shapes = [(layers * D, N, h_size)] + ([(layers * D, N, H)] if name == "LSTM" else [])
        for s in shapes:
            a = arr(*s) if batched else arr(s[0], s[2])
            t_states.append(torch.tensor(a, requires_grad=True))
            p_states.append(px.tensor(a, requires_grad=True))
        t_args = (tuple(t_states),) if name == "LSTM" else (t_states[0],)
        p_args = (tuple(p_states),) if name == "LSTM" else (p_states[0],)
    t_out, t_h = tm(tx, *t_args)
    p_out, p_h = pm(pxx, *p_args)
    np.testing.assert_allclose(to_np(p_out), to_np(t_out), rtol=1e-5, atol=1e-5)
    t_h = t_h if isinstance(t_h, tuple) else (t_h,)
    p_h = p_h if isinstance(p_h, tuple) else (p_h,)
    for a, b in zip(p_h, t_h):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-5, atol=1e-5)
    g = arr(*t_out.shape)
    weights = [arr(*h.shape) for h in t_h]
    t_loss = (t_out * torch.tensor(g)).sum() + sum((h * torch.tensor(w)).sum()
                                                   for h, w in zip(t_h, weights))
    p_loss = (p_out * px.tensor(g)).sum() + sum((h * px.tensor(w)).sum()
                                                for h, w in zip(p_h, weights))
    t_loss.backward()
    p_loss.backward()
    np.testing.assert_allclose(pxx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(p_states, t_states):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=n)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(name, with_hx, batched):
    I, H, N = 4, 5, 3
    kw = dict(nonlinearity="relu") if name == "RNNCell" and with_hx else {}
    tm, pm = getattr(torch.nn, name)(I, H, **kw), getattr(nn, name)(I, H, **kw)
    load_from_torch(pm, tm)
    x = arr(N, I) if batched else arr(I)
    tx, pxx = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    n_states = 2 if name == "LSTMCell" else 1
    states = [arr(N, H) if batched else arr(H) for _ in range(n_states)]
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    ps = [px.tensor(s, requires_grad=True) for s in states]
    if with_hx:
        t_out = tm(tx, tuple(ts) if n_states == 2 else ts[0])
        p_out = pm(pxx, tuple(ps) if n_states == 2 else ps[0])
    else:
        t_out, p_out = tm(tx), pm(pxx)
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    p_out = p_out if isinstance(p_out, tuple) else (p_out,)
    for a, b in zip(p_out, t_out):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-5, atol=1e-6)
    sum((o * (i + 1)).sum() for i, o in enumerate(t_out)).backward()
    sum((o * (i + 1)).sum() for i, o in enumerate(p_out)).backward()
    np.testing.assert_allclose(pxx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    if with_hx:
        for a, b in zip(ps, ts):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-6)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=n)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_gradcheck(name):
    px.manual_seed(0)
    cell = getattr(nn, name)(3, 2).double()
    x = px.randn(2, 3, dtype=px.float64, requires_grad=True)
    h = px.randn(2, 2, dtype=px.float64, requires_grad=True)
    c = px.randn(2, 2, dtype=px.float64, requires_grad=True)
    w = cell.weight_hh

    def f(x, h, c, w):
        out = cell(x, (h, c)) if name == "LSTMCell" else cell(x, h)
        return out if isinstance(out, tuple) else (out,)
    assert gradcheck(f, (x, h, c, w))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_layers_gradcheck(name):
    px.manual_seed(0)
    m = getattr(nn, name)(2, 2, num_layers=2, bidirectional=True).double()
    x = px.randn(3, 1, 2, dtype=px.float64, requires_grad=True)
    assert gradcheck(lambda x, w: m(x)[0], (x, m.weight_ih_l1_reverse))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_state_dict_keys_and_round_trip(name):
    kw = dict(num_layers=2, bidirectional=True, **({"proj_size": 2} if name == "LSTM" else {}))
    tm, pm = getattr(torch.nn, name)(3, 4, **kw), getattr(nn, name)(3, 4, **kw)
    assert list(pm.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(pm.state_dict()[k].shape) == tuple(v.shape), k
    # phalanx -> torch
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in pm.state_dict().items()})
    x = arr(5, 2, 3)
    np.testing.assert_allclose(to_np(pm(px.tensor(x))[0]), to_np(tm(torch.tensor(x))[0]),
                               rtol=1e-5, atol=1e-6)
    assert len(pm.all_weights) == 4 and pm.all_weights[0][0] is pm.weight_ih_l0


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_default_init_is_uniform_in_bound(name):
    H = 16
    m = getattr(nn, name)(8, H)
    bound = 1 / np.sqrt(H)
    for n, p in m.named_parameters():
        a = p.detach().numpy()
        assert np.abs(a).max() <= bound, n
        assert a.std() > bound / 3, n  # spread over the range, not constant


def test_dropout_between_layers():
    px.manual_seed(0)
    m = nn.LSTM(3, 8, num_layers=2, dropout=0.5)
    x = px.randn(4, 2, 3)
    px.manual_seed(1)
    a = m(x)[0]
    px.manual_seed(1)
    b = m(x)[0]
    c = m(x)[0]
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())  # seeded
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())  # a fresh mask
    m.eval()
    ref = nn.LSTM(3, 8, num_layers=2)
    ref.load_state_dict(m.state_dict())
    np.testing.assert_allclose(m(x)[0].detach().numpy(), ref(x)[0].detach().numpy())


def test_errors_name_expected_and_got():
    m = nn.LSTM(4, 5, num_layers=2)
    with pytest.raises(RuntimeError, match="Expected 4, got 3"):
        m(px.randn(6, 2, 3))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 2, 5\), got"):
        m(px.randn(6, 2, 4), (px.zeros(1, 2, 5), px.zeros(2, 2, 5)))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size"):
        m(px.randn(6, 2, 4), (px.zeros(2, 2, 5), px.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match="tuple"):
        m(px.randn(6, 2, 4), px.zeros(2, 2, 5))
    with pytest.raises(ValueError, match="2D .* or 3D"):
        m(px.randn(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 5\)"):
        nn.GRU(4, 5)(px.randn(6, 2, 4), px.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(4, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="only supported for LSTM"):
        nn.RNNBase("GRU", 4, 5, proj_size=2)
    with pytest.raises(ValueError, match="smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(RuntimeError, match="got 3 expected 4"):
        nn.GRUCell(4, 5)(px.randn(2, 3))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 5\)"):
        nn.RNNCell(4, 5)(px.randn(2, 4), px.zeros(3, 5))


def test_repr():
    assert repr(nn.LSTM(3, 4, num_layers=2, batch_first=True)) == \
        "LSTM(3, 4, num_layers=2, batch_first=True)"
    assert repr(nn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4)"    # as PyTorch prints it
