"""The paths a recurrent language-model step takes (benchmarks/script_steps.py, lstm_lm):
`stack` as one Function (an RNN's final states), zero initial states made without a stacked
tensor, the LSTM kernels' in-place gradient accumulation, and a whole step that reads nothing
back from the device."""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import nn
from phalanx.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_stack_matches_torch_with_gradients(dim):
    arrays = [RNG.standard_normal((3, 4)) for _ in range(3)]
    weight = RNG.standard_normal(torch.stack([torch.tensor(a) for a in arrays], dim).shape)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    ps = [px.tensor(a, requires_grad=True) for a in arrays]
    t_out, p_out = torch.stack(ts, dim), px.stack(ps, dim)
    np.testing.assert_array_equal(p_out.detach().numpy(), t_out.detach().numpy())
    (t_out * torch.tensor(weight)).sum().backward()
    (p_out * px.tensor(weight)).sum().backward()
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


def test_stack_promotes_dtypes_like_torch_and_gives_each_input_its_dtype():
    a32, a64 = RNG.standard_normal((2, 3)).astype(np.float32), RNG.standard_normal((2, 3))
    ps = [px.tensor(a32, requires_grad=True), px.tensor(a64, requires_grad=True)]
    ts = [torch.tensor(a32, requires_grad=True), torch.tensor(a64, requires_grad=True)]
    p_out, t_out = px.stack(ps, 1), torch.stack(ts, 1)
    assert p_out.dtype == px.float64 and t_out.dtype == torch.float64
    p_out.sum().backward()
    t_out.sum().backward()
    assert [p.grad.dtype for p in ps] == [px.float32, px.float64]
    assert [t.grad.dtype for t in ts] == [torch.float32, torch.float64]


def test_stack_has_first_and_second_derivatives():
    xs = [px.tensor(RNG.standard_normal((2, 3)), requires_grad=True) for _ in range(2)]
    fn = lambda a, b: px.stack([a * b, a.sin()], 1)  # noqa: E731
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


def test_stack_errors_name_the_shapes():
    with pytest.raises(RuntimeError, match=r"equal size.*\[2, 3\].*\[3, 2\]"):
        px.stack([px.zeros(2, 3), px.zeros(3, 2)])
    with pytest.raises(RuntimeError, match="non-empty"):
        px.stack([])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_no_hx_is_zero_hx(name):
    kw = dict(num_layers=2, bidirectional=True, dropout=0.0)
    px.manual_seed(0)
    m = getattr(nn, name)(3, 4, **kw).double()
    x = px.tensor(RNG.standard_normal((5, 2, 3)), requires_grad=True)
    out, state = m(x)
    zeros = px.zeros(4, 2, 4, dtype=px.float64)
    out2, state2 = m(x, (zeros, zeros) if name == "LSTM" else zeros)
    np.testing.assert_array_equal(out.detach().numpy(), out2.detach().numpy())
    for a, b in zip(state if name == "LSTM" else [state], state2 if name == "LSTM" else [state2]):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    (out.sum() + (state[0] if name == "LSTM" else state).sum()).backward()
    g1 = [p.grad.numpy().copy() for p in m.parameters()] + [x.grad.numpy().copy()]
    m.zero_grad()
    x.grad = None
    (out2.sum() + (state2[0] if name == "LSTM" else state2).sum()).backward()
    g2 = [p.grad.numpy() for p in m.parameters()] + [x.grad.numpy()]
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("proj_size", [0, 2])
def test_lstm_leaves_the_incoming_final_state_gradient_untouched(proj_size):
    # batch of one: h_n's gradient transposed is contiguous, the case where accumulating into
    # it in place would write into the caller's array
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, proj_size=proj_size).double()
    pm = nn.LSTM(3, 4, proj_size=proj_size).double()
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = RNG.standard_normal((4, 1, 3))
    w_out, w_h = (RNG.standard_normal((4, 1, proj_size or 4)),
                  RNG.standard_normal((1, 1, proj_size or 4)))
    tx, px_x = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    t_out, (t_h, _) = tm(tx)
    p_out, (p_h, _) = pm(px_x)
    seen = []
    p_h.register_hook(lambda g: seen.append(g))
    ((t_out * torch.tensor(w_out)).sum() + (t_h * torch.tensor(w_h)).sum()).backward()
    ((p_out * px.tensor(w_out)).sum() + (p_h * px.tensor(w_h)).sum()).backward()
    np.testing.assert_array_equal(seen[0].numpy(), w_h)
    np.testing.assert_allclose(px_x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=n)


def _host_transfer_harness():
    path = pathlib.Path(__file__).resolve().parents[1] / "gpu_path" / "test_host_transfers.py"
    spec = importlib.util.spec_from_file_location("host_transfers_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.mpi_skip
@pytest.mark.timeout(120)
def test_word_lm_lstm_step_makes_no_host_read():
    """word_lm.py's step (embedding, 2-layer LSTM with dropout, decoder, log_softmax + NLL,
    SGD) on arrays that record every read of their values on the host. Without the script's
    clip_grad_norm_: the stand-in leaves some gradients plain arrays (the LSTM kernels make
    fresh ones), and moving the norms of those onto the others' "device" counts as a transfer
    that a GPU, where all of them live on one device, does not make (clipping is checked in
    test_host_transfers.py)."""
    harness = _host_transfer_harness()
    px.manual_seed(0)

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.2)
            self.encoder = nn.Embedding(50, 8)
            self.rnn = nn.LSTM(8, 8, 2, dropout=0.2)
            self.decoder = nn.Linear(8, 50)

        def forward(self, x):
            out, _ = self.rnn(self.drop(self.encoder(x)))
            return px.nn.functional.log_softmax(self.decoder(self.drop(out)).view(-1, 50), 1)

    model = RNNModel()
    opt = px.optim.SGD(model.parameters(), lr=5)
    tokens, target = harness._batch(px.randint(0, 50, (6, 4)), px.randint(0, 50, (24,)))
    step = harness._train_step(model, opt,
                               lambda: px.nn.functional.nll_loss(model(tokens), target))
    harness._assert_no_reads(step, model)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_an_empty_batch_runs_forward_and_backward_as_in_torch(name):
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(3, 4)
    pm = getattr(nn, name)(3, 4)
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    shape = (0, 3) if name.endswith("Cell") else (5, 0, 3)
    tx, px_x = torch.zeros(shape, requires_grad=True), px.zeros(*shape, requires_grad=True)
    t_res, p_res = tm(tx), pm(px_x)
    t_flat = [t_res] if isinstance(t_res, torch.Tensor) else \
        [t_res[0]] + (list(t_res[1]) if isinstance(t_res[1], tuple) else [t_res[1]])
    p_flat = [p_res] if isinstance(p_res, px.Tensor) else \
        [p_res[0]] + (list(p_res[1]) if isinstance(p_res[1], tuple) else [p_res[1]])
    assert [tuple(p.shape) for p in p_flat] == [tuple(t.shape) for t in t_flat]
    sum(t.sum() for t in t_flat).backward()
    sum(p.sum() for p in p_flat).backward()
    assert tuple(px_x.grad.shape) == tuple(tx.grad.shape)
    for n, tp in tm.named_parameters():
        np.testing.assert_array_equal(pm.get_parameter(n).grad.numpy(), tp.grad.numpy())
