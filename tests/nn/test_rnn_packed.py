"""`nn.utils.rnn` (pad/pack/unpack) and packed input to RNN/LSTM/GRU against PyTorch CPU:
values, lengths, permutations, final states and gradients on copied weights."""
import numpy as np
import pytest
import torch
import torch.nn.utils.rnn as trnn

import phalanx as px
from phalanx import nn
from phalanx.nn.utils import rnn as prnn

RNG = np.random.default_rng(0)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float64)


def pair(a):
    return torch.tensor(a, requires_grad=True), px.tensor(a, requires_grad=True)


def close(p, t, **kw):
    np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-9,
                               **kw)


def same_packed(pp, tp):
    close(pp.data, tp.data)
    assert pp.batch_sizes.tolist() == tp.batch_sizes.tolist()
    for mine, theirs in ((pp.sorted_indices, tp.sorted_indices),
                         (pp.unsorted_indices, tp.unsorted_indices)):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.tolist() == theirs.tolist()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence(batch_first, padding_side):
    seqs = [arr(n, 2, 3) for n in (3, 5, 1)]
    ts, ps = zip(*(pair(s) for s in seqs))
    out_t = trnn.pad_sequence(ts, batch_first=batch_first, padding_value=-2.5,
                              padding_side=padding_side)
    out_p = prnn.pad_sequence(ps, batch_first=batch_first, padding_value=-2.5,
                              padding_side=padding_side)
    close(out_p, out_t)
    w = arr(*out_t.shape)
    (out_t * torch.tensor(w)).sum().backward()
    (out_p * px.tensor(w)).sum().backward()
    for a, b in zip(ps, ts):
        close(a.grad, b.grad)


def test_pad_sequence_errors():
    with pytest.raises(RuntimeError, match="empty list"):
        prnn.pad_sequence([])
    with pytest.raises(RuntimeError, match="padding_side"):
        prnn.pad_sequence([px.zeros(2)], padding_side="middle")
    with pytest.raises(RuntimeError, match=r"sequence 1 has shape \[3, 4\]"):
        prnn.pad_sequence([px.zeros(2, 3), px.zeros(3, 4)])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted,lengths", [(True, [5, 3, 3, 1]),
                                                    (False, [2, 5, 1, 4]),
                                                    (False, [3, 3, 3, 3])])
def test_pack_and_pad_roundtrip(batch_first, enforce_sorted, lengths):
    T, B = max(lengths) + 1, len(lengths)
    x = arr(B, T, 3) if batch_first else arr(T, B, 3)
    tx, pxx = pair(x)
    tp = trnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    pp = prnn.pack_padded_sequence(pxx, lengths, batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    same_packed(pp, tp)
    out_t, len_t = trnn.pad_packed_sequence(tp, batch_first=batch_first, padding_value=7.0,
                                            total_length=T + 2)
    out_p, len_p = prnn.pad_packed_sequence(pp, batch_first=batch_first, padding_value=7.0,
                                            total_length=T + 2)
    close(out_p, out_t)
    assert len_p.tolist() == len_t.tolist() and len_p.dtype == px.int64
    w = arr(*out_t.shape)
    (out_t * torch.tensor(w)).sum().backward()
    (out_p * px.tensor(w)).sum().backward()
    close(pxx.grad, tx.grad)


def test_pack_sequence_and_unpack():
    seqs = [arr(n, 2) for n in (2, 4, 3)]
    tp = trnn.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    pp = prnn.pack_sequence([px.tensor(s) for s in seqs], enforce_sorted=False)
    same_packed(pp, tp)
    for mine, s in zip(prnn.unpack_sequence(pp), seqs):
        np.testing.assert_array_equal(mine.numpy(), s)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        prnn.pack_sequence([px.tensor(s) for s in seqs])


def test_pack_errors():
    x = px.zeros(4, 3, 2)
    with pytest.raises(RuntimeError, match="equal to batch_size"):
        prnn.pack_padded_sequence(x, [4, 3])
    with pytest.raises(RuntimeError, match="greater than 0"):
        prnn.pack_padded_sequence(x, [4, 0, 2], enforce_sorted=False)
    with pytest.raises(RuntimeError, match="exceeds the 4 time steps"):
        prnn.pack_padded_sequence(x, [5, 3, 1])
    packed = prnn.pack_padded_sequence(x, [4, 3, 1])
    with pytest.raises(ValueError, match="total_length=3 and max sequence length being 4"):
        prnn.pad_packed_sequence(packed, total_length=3)


def test_packed_sequence_casts_and_fields():
    pp = prnn.pack_sequence([px.ones(2, 3), px.ones(3, 3)], enforce_sorted=False)
    assert pp.float().data.dtype == px.float32 and pp.double().data.dtype == px.float64
    assert pp.to(px.float16).data.dtype == px.float16
    assert pp.to("cpu") is pp and not pp.is_cuda
    assert prnn.invert_permutation(px.tensor([2, 0, 1])).tolist() == [1, 2, 0]
    data, batch_sizes, sorted_indices, unsorted_indices = pp
    assert batch_sizes.tolist() == [2, 2, 1] and sorted_indices.tolist() == [1, 0]


LAYERS = [
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(batch_first=True)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
]


@pytest.mark.parametrize("name,kw", LAYERS, ids=[f"{n}-{kw}" for n, kw in LAYERS])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
def test_packed_rnn_matches_torch(name, kw, enforce_sorted, with_hx):
    I, H, B = 3, 4, 4
    lengths = [5, 4, 2, 2] if enforce_sorted else [2, 5, 1, 4]
    T = max(lengths)
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(I, H, **kw).double()
    pm = getattr(nn, name)(I, H, **kw).double()
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    batch_first = kw.get("batch_first", False)
    tx, pxx = pair(arr(B, T, I) if batch_first else arr(T, B, I))
    t_args, p_args, states = (), (), []
    if with_hx:
        D = 2 if kw.get("bidirectional") else 1
        n = kw.get("num_layers", 1) * D
        shapes = [(n, B, kw.get("proj_size") or H)] + ([(n, B, H)] if name == "LSTM" else [])
        states = [pair(arr(*s)) for s in shapes]
        t_states, p_states = [t for t, _ in states], [p for _, p in states]
        t_args = (tuple(t_states),) if name == "LSTM" else (t_states[0],)
        p_args = (tuple(p_states),) if name == "LSTM" else (p_states[0],)
    tp = trnn.pack_padded_sequence(tx, lengths, batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    pp = prnn.pack_padded_sequence(pxx, lengths, batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    t_out, t_hidden = tm(tp, *t_args)
    p_out, p_hidden = pm(pp, *p_args)
    assert isinstance(p_out, prnn.PackedSequence)
    same_packed(p_out, t_out)
    t_hidden = t_hidden if name == "LSTM" else (t_hidden,)
    p_hidden = p_hidden if name == "LSTM" else (p_hidden,)
    for a, b in zip(p_hidden, t_hidden):
        close(a, b)
    t_pad, _ = trnn.pad_packed_sequence(t_out, batch_first=batch_first)
    p_pad, _ = prnn.pad_packed_sequence(p_out, batch_first=batch_first)
    w_out = arr(*t_pad.shape)
    w_h = [arr(*h.shape) for h in t_hidden]
    t_loss = (t_pad * torch.tensor(w_out)).sum() + sum(
        (h * torch.tensor(w)).sum() for h, w in zip(t_hidden, w_h))
    p_loss = (p_pad * px.tensor(w_out)).sum() + sum(
        (h * px.tensor(w)).sum() for h, w in zip(p_hidden, w_h))
    t_loss.backward()
    p_loss.backward()
    close(pxx.grad, tx.grad)
    for t_state, p_state in states:
        close(p_state.grad, t_state.grad)
    t_params = dict(tm.named_parameters())
    for k, v in pm.named_parameters():
        close(v.grad, t_params[k].grad, err_msg=k)


def test_flatten_parameters_is_a_noop():
    m = nn.LSTM(3, 4)
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    assert m.flatten_parameters() is None
    assert all(np.array_equal(before[k], v.numpy()) for k, v in m.state_dict().items())


@pytest.mark.parametrize("name,shape,lead,warns", [
    ("dropout2d", (6, 40), 2, 1), ("dropout2d", (6, 40, 3), 2, 1),
    ("dropout2d", (2, 30, 3, 3, 3), 2, 1), ("dropout2d", (2, 30, 3, 3), 2, 0),
    ("dropout3d", (60,), 1, 1), ("dropout3d", (30, 4, 4), 1, 1),
    ("dropout3d", (30, 2, 2, 2), 1, 0), ("dropout1d", (30, 5), 1, 0)])
def test_channel_dropout_ranks_follow_torch(name, shape, lead, warns):
    """PyTorch still runs dropout2d/3d on other ranks (with a deprecation warning) and reads a
    3-D dropout2d input as (N, C, L): the first `lead` dims get their own mask entries and the
    rest share them."""
    import warnings
    px.manual_seed(0)   # the share of dropped entries is checked: no unlucky draws
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        getattr(torch.nn.functional, name)(torch.ones(shape))
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        y = getattr(px.nn.functional, name)(px.ones(*shape)).numpy()
    assert len(ours) == len(theirs) == warns
    assert y.shape == shape
    groups = y.reshape(int(np.prod(shape[:lead])), -1)
    assert (groups.min(-1) == groups.max(-1)).all()
    assert 0.2 < (groups[:, 0] == 0).mean() < 0.8
    with pytest.raises(RuntimeError, match="at least 2 dimensions"), \
            pytest.warns(UserWarning, match="Received a 1-D input"):
        px.nn.functional.dropout2d(px.ones(5))
