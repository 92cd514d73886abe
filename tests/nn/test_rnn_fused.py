"""The fused recurrent Function (nn/functional/rnn.py) against PyTorch in float64: outputs, final
states and every gradient, with each of the three outputs weighted so that all of them carry
gradient (or none of some); gradcheck of the Function itself; and higher-order gradients,
which go through the composed steps."""
import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import nn
from phalanx.autograd import gradcheck, gradgradcheck
from phalanx.nn.functional.rnn import RecurrentLayer, composed_layer, recurrent_layer

RNG = np.random.default_rng(1)


def arr(*shape):
    return RNG.standard_normal(shape)


def copy_weights(pm, tm):
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


CASES = [  # (class, kwargs, (T, N, I, H))
    ("LSTM", dict(), (7, 4, 3, 5)),
    ("LSTM", dict(num_layers=2, bidirectional=True), (5, 3, 4, 6)),
    ("LSTM", dict(proj_size=2, num_layers=2, bidirectional=True), (4, 2, 3, 5)),
    ("LSTM", dict(proj_size=3, bias=False, batch_first=True), (6, 5, 2, 4)),
    ("LSTM", dict(), (1, 1, 1, 1)),
    ("GRU", dict(num_layers=2, bidirectional=True), (6, 3, 4, 5)),
    ("GRU", dict(bias=False), (3, 7, 2, 3)),
    ("RNN", dict(num_layers=2, bidirectional=True), (5, 4, 3, 4)),
    ("RNN", dict(nonlinearity="relu", batch_first=True), (6, 3, 2, 5)),
]


@pytest.mark.parametrize("name,kw,dims", CASES, ids=[f"{n}-{kw}-{d}" for n, kw, d in CASES])
@pytest.mark.parametrize("used", ["all", "output", "final"])
def test_layers_match_torch_float64(name, kw, dims, used):
    T, N, I, H = dims
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(I, H, **kw).double()
    pm = getattr(nn, name)(I, H, **kw).double()
    copy_weights(pm, tm)
    x = arr(N, T, I) if kw.get("batch_first") else arr(T, N, I)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    h0 = arr(L * D, N, kw.get("proj_size") or H)
    c0 = arr(L * D, N, H)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    px_, ph, pc = (px.tensor(a, requires_grad=True) for a in (x, h0, c0))
    t_out, t_state = tm(tx, (th, tc) if name == "LSTM" else th)
    p_out, p_state = pm(px_, (ph, pc) if name == "LSTM" else ph)
    t_states = t_state if name == "LSTM" else (t_state,)
    p_states = p_state if name == "LSTM" else (p_state,)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    for a, b in zip(p_states, t_states):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    # a random weighting of the outputs that are used: their gradients all differ
    weights = [arr(*t_out.shape)] + [arr(*s.shape) for s in t_states]
    pick = {"all": range(len(weights)), "output": [0], "final": range(1, len(weights))}[used]
    t_loss = sum((([t_out] + list(t_states))[k] * torch.tensor(weights[k])).sum() for k in pick)
    p_loss = sum((([p_out] + list(p_states))[k] * px.tensor(weights[k])).sum() for k in pick)
    t_loss.backward()
    p_loss.backward()
    inputs = [(px_, tx), (ph, th)] + ([(pc, tc)] if name == "LSTM" else [])
    for a, b in inputs:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_match_torch_float64(name, bias):
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(3, 4, bias=bias).double()
    pm = getattr(nn, name)(3, 4, bias=bias).double()
    copy_weights(pm, tm)
    x, h, c = arr(5, 3), arr(5, 4), arr(5, 4)
    t_in = [torch.tensor(a, requires_grad=True) for a in (x, h, c)]
    p_in = [px.tensor(a, requires_grad=True) for a in (x, h, c)]
    # two steps, so the state produced by the fused step feeds the next one
    for lib, (vx, vh, vc), m in ((torch, t_in, tm), (px, p_in, pm)):
        state = (vh, vc) if name == "LSTMCell" else vh
        for _ in range(2):
            state = m(vx, state)
        parts = state if name == "LSTMCell" else (state,)
        loss = sum((p * lib.tensor(arr(5, 4) * 0 + k + 1.5)).sum() for k, p in enumerate(parts))
        loss.backward()
    used = 3 if name == "LSTMCell" else 2
    for a, b in zip(p_in[:used], t_in[:used]):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=n)


def _layer_inputs(mode, T=3, N=2, I=2, H=3, P=0, bias=True):
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1) * H
    hs = P or H
    t = lambda *s: px.tensor(arr(*s) * 0.7, requires_grad=True)  # noqa: E731
    return [t(T, N, I), t(N, hs), t(N, H) if mode == "LSTM" else None, t(G, I), t(G, hs),
            t(G) if bias else None, t(G) if bias else None, t(P, H) if P else None]


LAYER_CASES = [("LSTM", dict()), ("LSTM", dict(P=2)), ("LSTM", dict(bias=False)),
               ("GRU", dict()), ("GRU", dict(bias=False)), ("RNN_TANH", dict()),
               ("RNN_RELU", dict())]


@pytest.mark.parametrize("mode,kw", LAYER_CASES, ids=[f"{m}-{kw}" for m, kw in LAYER_CASES])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_layer_gradcheck_and_matches_composed(mode, kw, reverse):
    inputs = _layer_inputs(mode, **kw)
    present = [k for k, t in enumerate(inputs) if t is not None]

    def fused(*ts):
        full = list(inputs)
        for k, t in zip(present, ts):
            full[k] = t
        out = recurrent_layer(mode, *full, reverse=reverse)
        return tuple(o for o in out if o is not None)

    assert gradcheck(fused, [inputs[k] for k in present])
    with px.no_grad():
        a = [o for o in recurrent_layer(mode, *inputs, reverse=reverse) if o is not None]
        b = [o for o in composed_layer(mode, *inputs, reverse) if o is not None]
    for u, v in zip(a, b):
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(P=2)), ("GRU", dict()),
                                     ("RNN_TANH", dict())])
def test_higher_order_gradients_use_the_composed_steps(mode, kw):
    inputs = _layer_inputs(mode, T=2, **kw)
    x, w_hh = inputs[0], inputs[4]

    def f(x, w_hh):
        full = list(inputs)
        full[0], full[4] = x, w_hh
        return RecurrentLayer.apply(mode, False, *full)[0]

    assert gradgradcheck(f, (x, w_hh))


def test_cells_support_second_derivatives():
    cell = nn.LSTMCell(2, 3).double()
    x = px.tensor(arr(2, 2), requires_grad=True)
    assert gradgradcheck(lambda x, w: cell(x)[1], (x, cell.weight_hh))


def test_layer_errors_name_the_dtypes():
    m = nn.LSTM(2, 3)
    with pytest.raises(RuntimeError, match="same dtype"):
        m(px.tensor(arr(4, 1, 2)), (px.zeros(1, 1, 3), px.zeros(1, 1, 3, dtype=px.float64)))


@pytest.mark.parametrize("name", ["LSTM", "RNN"])
def test_in_place_change_of_the_output_is_caught(name):
    m = getattr(nn, name)(2, 3)
    out, _ = m(px.tensor(arr(4, 1, 2).astype(np.float32)))
    loss = out.sum()    # Sum saves nothing: the error must come from the layer
    with px.no_grad():
        out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_lstm_gradient_through_c_n_alone():
    torch.manual_seed(0)
    tm, pm = torch.nn.LSTM(2, 3, bidirectional=True).double(), nn.LSTM(2, 3, bidirectional=True)
    pm = pm.double()
    copy_weights(pm, tm)
    x = arr(4, 2, 2)
    tx, px_ = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    tm(tx)[1][1].sum().backward()
    pm(px_)[1][1].sum().backward()
    np.testing.assert_allclose(px_.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("lengths", [[6, 6, 4, 4, 4, 1], [3, 3, 3], [7, 5, 2, 1]])
@pytest.mark.parametrize("name,kw", [("LSTM", dict(bidirectional=True, proj_size=2)),
                                     ("LSTM", dict(num_layers=2)),
                                     ("GRU", dict(bidirectional=True)),
                                     ("RNN", dict(bidirectional=True))])
def test_packed_runs_match_torch_float64(name, kw, lengths):
    """Packed input runs one fused call per run of equal batch sizes."""
    import torch.nn.utils.rnn as trnn
    from phalanx.nn.utils import rnn as prnn
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(3, 4, **kw).double()
    pm = getattr(nn, name)(3, 4, **kw).double()
    copy_weights(pm, tm)
    x = arr(max(lengths), len(lengths), 3)
    tx, px_ = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    t_out, t_hid = tm(trnn.pack_padded_sequence(tx, lengths))
    p_out, p_hid = pm(prnn.pack_padded_sequence(px_, lengths))
    t_hid = t_hid if name == "LSTM" else (t_hid,)
    p_hid = p_hid if name == "LSTM" else (p_hid,)
    w = arr(*t_out.data.shape)
    t_loss = (t_out.data * torch.tensor(w)).sum() + sum((h * 1.5).sum() for h in t_hid)
    p_loss = (p_out.data * px.tensor(w)).sum() + sum((h * 1.5).sum() for h in p_hid)
    np.testing.assert_allclose(p_loss.item(), t_loss.item(), rtol=1e-12)
    t_loss.backward()
    p_loss.backward()
    np.testing.assert_allclose(px_.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=n)


def test_packed_lstm_gradcheck():
    from phalanx.nn.utils import rnn as prnn
    m = nn.LSTM(2, 3, bidirectional=True, proj_size=2).double()
    x = px.tensor(arr(4, 3, 2), requires_grad=True)

    def f(x, w):
        out, (h, c) = m(prnn.pack_padded_sequence(x, [4, 2, 1]))
        return out.data, h, c

    assert gradcheck(f, (x, m.weight_hh_l0_reverse))
