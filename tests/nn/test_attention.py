"""scaled_dot_product_attention and MultiheadAttention against PyTorch CPU: outputs, attention
weights and gradients for every mask kind; gradcheck; state dicts; errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
from phalanx import nn
from phalanx.autograd import gradcheck
import phalanx.nn.functional as F
from phalanx.nn.functional import attention

RNG = np.random.default_rng(0)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def to_np(t):
    return t.detach().numpy()


def pair(a, grad=True):
    if a is None or isinstance(a, (bool, float, int)):
        return a, a
    return torch.tensor(a, requires_grad=grad and a.dtype.kind == "f"), \
        px.tensor(a, requires_grad=grad and a.dtype.kind == "f")


def dead_row_mask():
    m = RNG.random((5, 6)) > 0.3
    m[2] = False  # a query that sees no key: zeros, not NaN
    return m


SDPA_CASES = {  # name: (q shape, k shape, v shape, mask, kwargs)
    "plain": ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7), None, {}),
    "bool-2d": ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 4), RNG.random((5, 6)) > 0.4, {}),
    "bool-4d-broadcast": ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 4),
                          RNG.random((2, 1, 5, 6)) > 0.4, {}),
    "bool-dead-row": ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 4), dead_row_mask(), {}),
    "float": ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 4), arr(2, 1, 5, 6), {}),
    "causal": ((2, 4, 4), (2, 4, 4), (2, 4, 3), None, dict(is_causal=True)),
    "causal-rect": ((1, 3, 4), (1, 5, 4), (1, 5, 3), None, dict(is_causal=True)),
    "scale": ((3, 5, 4), (3, 6, 4), (3, 6, 2), None, dict(scale=0.3)),
    "2d-inputs": ((5, 4), (6, 4), (6, 3), RNG.random((5, 6)) > 0.2, {}),
}


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case):
    qs, ks, vs, mask, kw = SDPA_CASES[case]
    tq, pq = pair(arr(*qs))
    tk, pk = pair(arr(*ks))
    tv, pv = pair(arr(*vs))
    tm, pm = pair(mask)
    to = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, **kw)
    po = F.scaled_dot_product_attention(pq, pk, pv, attn_mask=pm, **kw)
    assert np.isfinite(to_np(po)).all()
    np.testing.assert_allclose(to_np(po), to_np(to), rtol=1e-5, atol=1e-6)
    g = arr(*to.shape)
    to.backward(torch.tensor(g))
    po.backward(px.tensor(g))
    for a, b in [(pq, tq), (pk, tk), (pv, tv)] + ([(pm, tm)] if mask is not None and
                                                    mask.dtype.kind == "f" else []):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal"])
def test_sdpa_gradcheck(mask):
    px.manual_seed(0)
    q = px.randn(2, 3, 4, dtype=px.float64, requires_grad=True)
    k = px.randn(2, 5, 4, dtype=px.float64, requires_grad=True)
    v = px.randn(2, 5, 2, dtype=px.float64, requires_grad=True)
    inputs, kw = [q, k, v], {}
    if mask == "bool":
        kw["attn_mask"] = px.tensor(np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0],
                                              [1, 1, 1, 0, 1]], bool))
    elif mask == "float":
        inputs.append(px.randn(3, 5, dtype=px.float64, requires_grad=True))
    elif mask == "causal":
        kw["is_causal"] = True

    def f(q, k, v, m=None):
        return F.scaled_dot_product_attention(q, k, v, **({"attn_mask": m} if m is not None
                                                          else {}), **kw)
    assert gradcheck(f, tuple(inputs))


def test_sdpa_dropout_is_seeded_and_scaled():
    q, k, v = px.randn(2, 4, 8), px.randn(2, 6, 8), px.ones(2, 6, 3)
    px.manual_seed(3)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    px.manual_seed(3)
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    ref = F.scaled_dot_product_attention(q, k, v)
    assert not np.allclose(a.numpy(), ref.numpy())
    assert np.allclose(ref.numpy(), 1.0, atol=1e-6)  # rows of softmax weights sum to 1
    assert F.scaled_dot_product_attention(q, k, v, dropout_p=1.0).abs().sum().item() == 0


def _composed(monkeypatch):
    """Make sdpa take its composed form (as under the profiler)."""
    monkeypatch.setattr(attention.dispatch, "watching", lambda fused=None: True)


@pytest.mark.parametrize("mask", [None, "bool", "dead-row"])
@pytest.mark.parametrize("dropout_p", [0.0, 0.4])
def test_fused_sdpa_equals_its_composition(monkeypatch, mask, dropout_p):
    q, k, v = (px.randn(2, 3, n, 4, requires_grad=True) for n in (5, 6, 6))
    m = None if mask is None else px.tensor(dead_row_mask() if mask == "dead-row"
                                            else RNG.random((5, 6)) > 0.4)
    g = px.randn(2, 3, 5, 4)
    results = []
    for composed in (False, True):
        with monkeypatch.context() as mp:
            if composed:
                _composed(mp)
            px.manual_seed(7)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout_p)
            grads = px.autograd.grad(out, (q, k, v), g)
            results.append([out.detach().numpy()] + [t.numpy() for t in grads])
    for fused, composed in zip(*results):
        np.testing.assert_allclose(fused, composed, rtol=1e-5, atol=1e-6)


def test_fused_sdpa_second_derivatives():
    px.manual_seed(0)
    q = px.randn(2, 3, 4, dtype=px.float64, requires_grad=True)
    k = px.randn(2, 5, 4, dtype=px.float64, requires_grad=True)
    v = px.randn(2, 5, 2, dtype=px.float64, requires_grad=True)
    mask = px.tensor(np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]], bool))
    assert px.autograd.gradgradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), (q, k, v))


def test_autocast_runs_attention_fused_in_the_low_precision(monkeypatch):
    monkeypatch.setattr(attention, "_attend", None)    # the composed form is not reached
    q, k, v = (px.randn(2, 5, 8, requires_grad=True) for _ in range(3))
    tq, tk, tv = (torch.tensor(t.detach().numpy()) for t in (q, k, v))
    with px.autocast("cpu", dtype=px.bfloat16):
        out = F.scaled_dot_product_attention(q, k, v)
        mha = nn.MultiheadAttention(8, 2, batch_first=True)
        y, _ = mha(q, q, q, need_weights=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t_out = TF.scaled_dot_product_attention(tq, tk, tv)
    assert out.dtype is px.bfloat16 and y.dtype is px.bfloat16
    np.testing.assert_allclose(out.float().detach().numpy(), t_out.float().numpy(),
                               rtol=0.03, atol=0.03)
    out.float().sum().backward()
    assert q.grad.dtype is px.float32 and np.isfinite(q.grad.numpy()).all()


def test_sdpa_errors():
    q, k = px.randn(2, 3, 4), px.randn(2, 5, 4)
    with pytest.raises(RuntimeError, match=r"query's last dim \(4\) must equal key's \(3\)"):
        F.scaled_dot_product_attention(q, px.randn(2, 5, 3), px.randn(2, 5, 3))
    with pytest.raises(RuntimeError, match="same sequence length"):
        F.scaled_dot_product_attention(q, k, px.randn(2, 4, 4))
    with pytest.raises(RuntimeError, match="should not be set when is_causal"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=px.ones(3, 5, dtype=px.bool),
                                       is_causal=True)
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \[4, 5\] cannot be broadcast"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=px.ones(4, 5, dtype=px.bool))


# ---- MultiheadAttention --------------------------------------------------------------------
def load_from_torch(pm, tm):
    result = pm.load_state_dict({k: px.tensor(v.detach().numpy())
                                 for k, v in tm.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys


L, S, N, E, H = 5, 6, 3, 8, 2
MHA_CASES = {  # name: (module kwargs, "self"/"cross"/"kv", forward kwargs)
    "self": ({}, "self", {}),
    "self-batch-first": (dict(batch_first=True), "self", {}),
    "cross": ({}, "cross", {}),
    "key-is-value": (dict(batch_first=True), "kv", {}),
    "kdim-vdim": (dict(kdim=5, vdim=7), "cross", {}),
    "no-bias": (dict(bias=False), "self", dict(need_weights=False)),
    "bias-kv-zero-attn": (dict(add_bias_kv=True, add_zero_attn=True), "cross",
                          dict(key_padding_mask=RNG.random((N, S)) > 0.7)),
    "key-padding-bool": (dict(batch_first=True), "cross",
                         dict(key_padding_mask=np.array([[False] * 4 + [True] * 2] * N))),
    "key-padding-float": ({}, "cross", dict(key_padding_mask=arr(N, S))),
    "mask-bool-2d+kpm": ({}, "self", dict(attn_mask=RNG.random((L, L)) > 0.8,
                                          key_padding_mask=RNG.random((N, L)) > 0.8)),
    "mask-float-3d": (dict(batch_first=True), "cross",
                      dict(attn_mask=arr(N * H, L, S), average_attn_weights=False)),
    "causal": ({}, "self", dict(attn_mask=np.triu(np.ones((L, L), bool), 1), is_causal=True,
                                need_weights=False)),
    "causal-float": (dict(batch_first=True), "self",
                     dict(attn_mask=np.triu(np.full((L, L), -np.inf, np.float32), 1))),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
@pytest.mark.parametrize("batched", [True, False])
def test_mha_matches_torch(case, batched):
    kw, kind, fkw = MHA_CASES[case]
    if not batched and (fkw.get("attn_mask") is not None and fkw["attn_mask"].ndim == 3):
        pytest.skip("3-D masks need a batch")
    tm, pm = torch.nn.MultiheadAttention(E, H, **kw), nn.MultiheadAttention(E, H, **kw)
    load_from_torch(pm, tm)
    bf = kw.get("batch_first", False)

    def shape(n, e):
        if not batched:
            return (n, e)
        return (N, n, e) if bf else (n, N, e)
    tq, pq = pair(arr(*shape(L, E)))
    if kind == "self":
        tk = tv = tq
        pk = pv = pq
    else:
        tk, pk = pair(arr(*shape(S, kw.get("kdim", E))))
        if kind == "kv":
            tv, pv = tk, pk
        else:
            tv, pv = pair(arr(*shape(S, kw.get("vdim", E))))
    tf, pf = {}, {}
    for name, value in fkw.items():
        if isinstance(value, np.ndarray) and name == "key_padding_mask" and not batched:
            value = value[0]
        tf[name], pf[name] = pair(value, grad=False)
    to, tw = tm(tq, tk, tv, **tf)
    po, pw = pm(pq, pk, pv, **pf)
    np.testing.assert_allclose(to_np(po), to_np(to), rtol=1e-5, atol=1e-5)
    assert (pw is None) == (tw is None)
    if tw is not None:
        np.testing.assert_allclose(to_np(pw), to_np(tw), rtol=1e-5, atol=1e-6)
    g = arr(*to.shape)
    t_loss = (to * torch.tensor(g)).sum() + (tw.sum() if tw is not None else 0)
    p_loss = (po * px.tensor(g)).sum() + (pw.sum() if pw is not None else 0)
    t_loss.backward()
    p_loss.backward()
    for a, b in [(pq, tq), (pk, tk), (pv, tv)]:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=n)


@pytest.mark.parametrize("kw", [{}, dict(kdim=3, vdim=5), dict(add_bias_kv=True, bias=False)])
def test_mha_state_dict_keys_and_round_trip(kw):
    tm, pm = torch.nn.MultiheadAttention(8, 4, **kw), nn.MultiheadAttention(8, 4, **kw)
    assert list(pm.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(pm.state_dict()[k].shape) == tuple(v.shape), k
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in pm.state_dict().items()})
    q, k = arr(2, 3, 8), arr(4, 3, kw.get("kdim", 8))
    v = arr(4, 3, kw.get("vdim", 8))
    np.testing.assert_allclose(to_np(pm(px.tensor(q), px.tensor(k), px.tensor(v))[0]),
                               to_np(tm(torch.tensor(q), torch.tensor(k),
                                        torch.tensor(v))[0]), rtol=1e-5, atol=1e-6)
    assert type(pm.out_proj).__name__ == "NonDynamicallyQuantizableLinear"


def test_mha_default_init():
    m = nn.MultiheadAttention(64, 4)
    w = m.in_proj_weight.detach().numpy()
    bound = np.sqrt(6 / (64 + 3 * 64))  # xavier_uniform over the (3E, E) matrix
    assert np.abs(w).max() <= bound and w.std() > bound / 3
    assert not m.in_proj_bias.detach().numpy().any() and not m.out_proj.bias.detach().numpy().any()


def test_mha_dropout_only_in_training():
    px.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = px.randn(4, 2, 8)
    a, b = m(x, x, x)[0], m(x, x, x)[0]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())
    m.eval()
    np.testing.assert_array_equal(m(x, x, x)[0].detach().numpy(),
                                  m(x, x, x)[0].detach().numpy())


def test_mha_errors():
    with pytest.raises(ValueError, match=r"embed_dim must be divisible by num_heads \(got "
                                         r"embed_dim=10, num_heads=3\)"):
        nn.MultiheadAttention(10, 3)
    m = nn.MultiheadAttention(8, 2)
    x = px.randn(4, 2, 8)
    with pytest.raises(RuntimeError, match=r"expecting embedding dimension of 8, but got query "
                                           r"of shape \[4, 2, 6\]"):
        m(px.randn(4, 2, 6), x, x)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal"):
        m(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match=r"2D attn_mask is \[3, 4\], but should be \[4, 4\]"):
        m(x, x, x, attn_mask=px.zeros(3, 4))
    with pytest.raises(RuntimeError, match=r"key_padding_mask should have shape \[2, 4\]"):
        m(x, x, x, key_padding_mask=px.zeros(2, 5, dtype=px.bool))
    with pytest.raises(RuntimeError, match="should be 3-D .* or 2-D"):
        m(px.randn(1, 4, 2, 8), x, x)


def test_sdpa_mask_must_broadcast_to_the_scores_as_in_torch():
    q, k, v = arr(5, 4), arr(6, 4), arr(6, 3)
    mask = RNG.random((2, 5, 6)) > 0.3          # would widen the (5, 6) scores
    with pytest.raises(RuntimeError):
        TF.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                        attn_mask=torch.tensor(mask))
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \[2, 5, 6\] cannot be "
                                           r"broadcast to the attention scores' shape \[5, 6\]"):
        F.scaled_dot_product_attention(px.tensor(q), px.tensor(k), px.tensor(v),
                                       attn_mask=px.tensor(mask))


def test_sdpa_output_keeps_the_querys_layout():
    """PyTorch's CPU kernel returns the output laid out as the query: the SDPA tutorial's
    `y.transpose(1, 2).view(B, L, H * E)` (no .contiguous()) works on a transposed query."""
    data = np.random.default_rng(3).standard_normal((2, 8, 4, 16))
    for lib in (px, torch):
        x = lib.tensor(data, requires_grad=True)
        q = x.transpose(1, 2)
        y = lib.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        merged = y.transpose(1, 2).view(2, 8, 64)
        merged.sum().backward()
        if lib is px:
            mine, mine_grad = merged.detach().numpy(), x.grad.numpy()
            assert y.stride() == (512, 16, 64, 1)
    np.testing.assert_allclose(mine, merged.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mine_grad, x.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_sdpa_takes_bfloat16_and_causal_biases():
    from phalanx.nn.attention.bias import CausalVariant, causal_lower_right, causal_upper_left
    import torch.nn.attention.bias as tbias
    q = px.rand(2, 4, 8, 16, dtype=px.bfloat16)
    assert px.nn.functional.scaled_dot_product_attention(q, q, q).dtype == px.bfloat16
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(s) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 4))]
    for mine, theirs in ((causal_lower_right(3, 5), tbias.causal_lower_right(3, 5)),
                         (causal_upper_left(3, 5), tbias.causal_upper_left(3, 5))):
        np.testing.assert_array_equal(mine._materialize().numpy(),
                                      theirs._materialize().numpy())
        y = px.nn.functional.scaled_dot_product_attention(*map(px.tensor, arrays),
                                                          attn_mask=mine)
        ty = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, arrays),
                                                              attn_mask=theirs)
        np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-12, atol=1e-12)
    assert causal_lower_right(3, 5).variant is CausalVariant.LOWER_RIGHT
