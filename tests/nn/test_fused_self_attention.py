"""The fused self-attention of multi-head attention (`_SelfAttention`) against the composed form
it replaces (same seed, so the same dropout mask), against PyTorch, and to second order."""
import contextlib

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn.functional as F
from phalanx.autograd import dispatch, gradcheck, gradgradcheck
from phalanx.nn.functional import attention

E, H = 8, 2


@contextlib.contextmanager
def composed():
    """An observer on the dispatch point: attention then runs as its primitives."""
    with dispatch.intercept(lambda cls, args, kwargs, proceed: proceed(args, kwargs)):
        yield


def _params(rng, dtype=np.float64):
    shapes = [(3 * E, E), (3 * E,), (E, E), (E,)]
    return [px.tensor(rng.standard_normal(s).astype(dtype) * 0.5, requires_grad=True)
            for s in shapes]


def _mha(x, params, training=True, dropout_p=0.0, **kwargs):
    w_in, b_in, w_out, b_out = params
    return F.multi_head_attention_forward(
        x, x, x, E, H, w_in, b_in, None, None, False, dropout_p, w_out, b_out,
        training=training, need_weights=False, **kwargs)


def _run(x_np, params_np, seed, **kwargs):
    """Output and the gradients of x and every parameter."""
    px.manual_seed(seed)
    x = px.tensor(x_np, requires_grad=True)
    params = [px.tensor(p, requires_grad=True) for p in params_np]
    out, weights = _mha(x, params, **kwargs)
    assert weights is None
    g = np.random.default_rng(1).standard_normal(tuple(out.shape))
    out.backward(px.tensor(g))
    return [out.detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in params]


def _masks(L, N):
    causal = px.tensor(np.triu(np.ones((L, L), bool), 1))
    padding = np.zeros((N, L), bool)
    padding[0, -2:] = True
    padding_dead = np.zeros((N, L), bool)
    padding_dead[-1] = True                     # every key of the last sample: rows give 0
    float_mask = px.tensor(np.random.default_rng(3).standard_normal((L, L)))
    return {
        "none": {},
        "causal": {"attn_mask": causal},
        "float": {"attn_mask": float_mask},
        "3d": {"attn_mask": px.tensor(np.random.default_rng(4).random((N * H, L, L)) < 0.3)},
        "padding": {"key_padding_mask": px.tensor(padding)},
        "causal+dead_rows": {"attn_mask": causal, "key_padding_mask": px.tensor(padding_dead)},
    }


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "causal", "float", "3d", "padding",
                                   "causal+dead_rows"])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_fused_matches_composed(batch_first, masks, dropout_p):
    L, N = 5, 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E))
    params = [p.detach().numpy() for p in _params(rng)]
    kwargs = dict(_masks(L, N)[masks], batch_first=batch_first, dropout_p=dropout_p)
    fused = _run(x, params, 7, **kwargs)
    with composed():
        plain = _run(x, params, 7, **kwargs)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    if masks == "causal+dead_rows":                      # the dead sample's output is the bias
        dead = fused[0][-1] if batch_first else fused[0][:, -1]
        np.testing.assert_allclose(dead, np.broadcast_to(params[3], dead.shape), atol=1e-12)


def test_fused_path_is_taken_and_skipped_while_watching(monkeypatch):
    calls = []
    forward = attention._SelfAttention.forward
    monkeypatch.setattr(attention._SelfAttention, "forward",
                        staticmethod(lambda *a: calls.append(1) or forward(*a)))
    x = px.randn(4, 2, E, dtype=px.float64)
    params = _params(np.random.default_rng(0))
    _mha(x, params)
    assert calls == [1]
    with composed():
        _mha(x, params)
    w_in, b_in, w_out, b_out = params   # asking for the weights takes the composed form too
    F.multi_head_attention_forward(x, x, x, E, H, w_in, b_in, None, None, False, 0.0, w_out,
                                   b_out, need_weights=True)
    assert calls == [1]


def test_mask_that_wants_a_gradient_gets_it():
    rng = np.random.default_rng(5)
    x = px.tensor(rng.standard_normal((4, 2, E)))
    mask = px.tensor(rng.standard_normal((4, 4)), requires_grad=True)
    out, _ = _mha(x, _params(rng), attn_mask=mask)
    out.sum().backward()
    assert mask.grad is not None and np.abs(mask.grad.numpy()).sum() > 0


@pytest.mark.parametrize("batch_first", [False, True])
def test_module_matches_torch(batch_first):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    ours = px.nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, E) if batch_first else (6, 3, E))
    padding = np.zeros((3, 6), bool)
    padding[1, 4:] = True
    causal = np.triu(np.ones((6, 6), bool), 1)
    tx = torch.tensor(x, requires_grad=True)
    px_x = px.tensor(x, requires_grad=True)
    want = theirs(tx, tx, tx, key_padding_mask=torch.tensor(padding),
                  attn_mask=torch.tensor(causal), need_weights=False)[0]
    got = ours(px_x, px_x, px_x, key_padding_mask=px.tensor(padding),
               attn_mask=px.tensor(causal), need_weights=False)[0]
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(want.shape))
    want.backward(torch.tensor(g))
    got.backward(px.tensor(g))
    np.testing.assert_allclose(px_x.grad.numpy(), tx.grad.numpy(), atol=1e-12)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad.numpy(),
                                   p.grad.numpy(), atol=1e-12, err_msg=name)


def test_unbatched_input():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, E))
    params = [p.detach().numpy() for p in _params(rng)]
    fused = _run(x, params, 0)
    with composed():
        plain = _run(x, params, 0)
    assert fused[0].shape == (5, E)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_gradients_to_second_order():
    """gradcheck and gradgradcheck through the fused op (backward under create_graph
    differentiates the composed form with the same dropout mask)."""
    rng = np.random.default_rng(7)
    params = _params(rng)
    causal = px.tensor(np.triu(np.ones((3, 3), bool), 1))

    def f(x, w_in, b_in):
        px.manual_seed(3)    # the same dropout mask at every evaluation
        return _mha(x, [w_in, b_in] + params[2:], dropout_p=0.25, attn_mask=causal)[0]
    x = px.tensor(rng.standard_normal((3, 2, E)), requires_grad=True)
    assert gradcheck(f, (x, params[0], params[1]))
    assert gradgradcheck(f, (x, params[0], params[1]))


def test_float32_step_and_invalid_dropout():
    x = px.randn(4, 2, E)
    params = _params(np.random.default_rng(8), np.float32)
    out, _ = _mha(x, params, dropout_p=0.1)
    out.sum().backward()
    assert out.dtype == px.float32 and params[0].grad.dtype == px.float32
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        _mha(x, params, dropout_p=1.5)
