"""Transformer encoder/decoder layers, stacks and the full Transformer against PyTorch CPU on
copied weights (dropout 0): outputs and gradients, masks, pre/post-norm, activations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
from phalanx import nn
import phalanx.nn.functional as F
from phalanx.nn.modules.transformer import _detect_is_causal_mask

RNG = np.random.default_rng(0)
D, NHEAD, FF, L, T, N = 8, 2, 16, 5, 4, 3


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def to_np(t):
    return t.detach().numpy()


def load_from_torch(pm, tm):
    sd = {k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()}
    assert list(pm.state_dict()) == list(sd)
    result = pm.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys


def compare(pm, tm, p_inputs, t_inputs, p_kw, t_kw):
    to, po = tm(*t_inputs, **t_kw), pm(*p_inputs, **p_kw)
    np.testing.assert_allclose(to_np(po), to_np(to), rtol=1e-4, atol=1e-5)
    g = arr(*to.shape)
    (to * torch.tensor(g)).sum().backward()
    (po * px.tensor(g)).sum().backward()
    for a, b in zip(p_inputs, t_inputs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-3, atol=1e-5)
    for n, tp in tm.named_parameters():
        np.testing.assert_allclose(pm.get_parameter(n).grad.numpy(), tp.grad.numpy(),
                                   rtol=1e-3, atol=2e-5, err_msg=n)


def masks(kind, seq, lib):
    """(attn_mask, key_padding_mask) for a mask kind, as `lib` tensors."""
    t = (lambda a: torch.tensor(a)) if lib == "torch" else (lambda a: px.tensor(a))
    causal = np.triu(np.full((seq, seq), -np.inf, np.float32), 1)
    kpm = np.zeros((N, seq), bool)
    kpm[0, -2:] = True
    return {"none": (None, None), "causal": (t(causal), None),
            "causal-bool": (t(causal == -np.inf), None), "padding": (None, t(kpm)),
            "causal+padding": (t(causal), t(kpm))}[kind]


ENCODER_CASES = [
    (dict(), "none"),
    (dict(batch_first=True), "causal"),
    (dict(norm_first=True), "padding"),
    (dict(norm_first=True, activation="gelu", batch_first=True), "causal+padding"),
    (dict(activation=TF.silu), "causal-bool"),
    (dict(bias=False), "none"),
]


@pytest.mark.parametrize("kw,mask", ENCODER_CASES, ids=[f"{k}-{m}" for k, m in ENCODER_CASES])
def test_encoder_layer_matches_torch(kw, mask):
    pkw = dict(kw, activation=F.silu) if kw.get("activation") is TF.silu else kw
    tm = torch.nn.TransformerEncoderLayer(D, NHEAD, FF, dropout=0.0, **kw)
    pm = nn.TransformerEncoderLayer(D, NHEAD, FF, dropout=0.0, **pkw)
    load_from_torch(pm, tm)
    x = arr(N, L, D) if kw.get("batch_first") else arr(L, N, D)
    (tam, tkpm), (pam, pkpm) = masks(mask, L, "torch"), masks(mask, L, "px")
    compare(pm, tm, [px.tensor(x, requires_grad=True)], [torch.tensor(x, requires_grad=True)],
            dict(src_mask=pam, src_key_padding_mask=pkpm),
            dict(src_mask=tam, src_key_padding_mask=tkpm))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_matches_torch(norm_first):
    layer_kw = dict(dropout=0.0, norm_first=norm_first, batch_first=True)
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, NHEAD, FF, **layer_kw),
                                     2, norm=torch.nn.LayerNorm(D), enable_nested_tensor=False)
    pm = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, NHEAD, FF, **layer_kw), 2,
                               norm=nn.LayerNorm(D))
    assert pm.layers[0].linear1.weight is not pm.layers[1].linear1.weight  # deep copies
    load_from_torch(pm, tm)
    x = arr(N, L, D)
    (tam, tkpm), (pam, pkpm) = masks("causal+padding", L, "torch"), \
        masks("causal+padding", L, "px")
    compare(pm, tm, [px.tensor(x, requires_grad=True)], [torch.tensor(x, requires_grad=True)],
            dict(mask=pam, src_key_padding_mask=pkpm),
            dict(mask=tam, src_key_padding_mask=tkpm))


DECODER_CASES = [(dict(), "none"), (dict(norm_first=True, batch_first=True), "causal"),
                 (dict(activation="gelu"), "causal+padding")]


@pytest.mark.parametrize("kw,mask", DECODER_CASES, ids=[f"{k}-{m}" for k, m in DECODER_CASES])
def test_decoder_layer_and_stack_match_torch(kw, mask):
    tl = torch.nn.TransformerDecoderLayer(D, NHEAD, FF, dropout=0.0, **kw)
    tm = torch.nn.TransformerDecoder(tl, 2, norm=torch.nn.LayerNorm(D))
    pm = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, NHEAD, FF, dropout=0.0, **kw), 2,
                               norm=nn.LayerNorm(D))
    load_from_torch(pm, tm)
    bf = kw.get("batch_first")
    tgt = arr(N, T, D) if bf else arr(T, N, D)
    mem = arr(N, L, D) if bf else arr(L, N, D)
    (tam, tkpm), (pam, pkpm) = masks(mask, T, "torch"), masks(mask, T, "px")
    mem_kpm = np.zeros((N, L), bool)
    mem_kpm[1, :2] = True
    compare(pm, tm, [px.tensor(tgt, requires_grad=True), px.tensor(mem, requires_grad=True)],
            [torch.tensor(tgt, requires_grad=True), torch.tensor(mem, requires_grad=True)],
            dict(tgt_mask=pam, tgt_key_padding_mask=pkpm,
                 memory_key_padding_mask=px.tensor(mem_kpm)),
            dict(tgt_mask=tam, tgt_key_padding_mask=tkpm,
                 memory_key_padding_mask=torch.tensor(mem_kpm)))


@pytest.mark.parametrize("batch_first", [False, True])
def test_full_transformer_matches_torch(batch_first):
    kw = dict(d_model=D, nhead=NHEAD, num_encoder_layers=2, num_decoder_layers=1,
              dim_feedforward=FF, dropout=0.0, batch_first=batch_first)
    tm, pm = torch.nn.Transformer(**kw), nn.Transformer(**kw)
    load_from_torch(pm, tm)
    src = arr(N, L, D) if batch_first else arr(L, N, D)
    tgt = arr(N, T, D) if batch_first else arr(T, N, D)
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(T)
    pmask = nn.Transformer.generate_square_subsequent_mask(T)
    np.testing.assert_array_equal(pmask.numpy(), tmask.numpy())
    compare(pm, tm, [px.tensor(src, requires_grad=True), px.tensor(tgt, requires_grad=True)],
            [torch.tensor(src, requires_grad=True), torch.tensor(tgt, requires_grad=True)],
            dict(tgt_mask=pmask, tgt_is_causal=True), dict(tgt_mask=tmask, tgt_is_causal=True))


def test_state_dict_round_trip_to_torch():
    pm = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, NHEAD, FF, dropout=0.0), 2)
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, NHEAD, FF,
                                                                      dropout=0.0), 2,
                                     enable_nested_tensor=False)
    assert list(pm.state_dict()) == list(tm.state_dict())
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in pm.state_dict().items()})
    x = arr(L, N, D)
    np.testing.assert_allclose(to_np(pm(px.tensor(x))), to_np(tm(torch.tensor(x))),
                               rtol=1e-5, atol=1e-5)


def test_transformer_init_is_xavier():
    m = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                       dim_feedforward=32)
    w = m.encoder.layers[0].linear1.weight.detach().numpy()  # (32, 16)
    bound = np.sqrt(6 / (16 + 32))
    assert np.abs(w).max() <= bound and w.std() > bound / 3


def test_dropout_respects_train_and_eval():
    px.manual_seed(0)
    m = nn.TransformerEncoderLayer(D, NHEAD, FF, dropout=0.5)
    x = px.randn(L, N, D)
    assert not np.allclose(to_np(m(x)), to_np(m(x)))
    m.eval()
    np.testing.assert_array_equal(to_np(m(x)), to_np(m(x)))


def test_detect_is_causal_mask():
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    assert _detect_is_causal_mask(causal)
    assert _detect_is_causal_mask(causal == float("-inf"))
    assert not _detect_is_causal_mask(px.zeros(4, 4))
    assert not _detect_is_causal_mask(None)
    assert _detect_is_causal_mask(None, True)
    assert not _detect_is_causal_mask(causal, size=5)


def test_errors():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu"):
        nn.TransformerEncoderLayer(D, NHEAD, activation="tanhh")
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.TransformerEncoderLayer(10, 3)
    m = nn.Transformer(d_model=D, nhead=NHEAD, num_encoder_layers=1, num_decoder_layers=1,
                       dim_feedforward=FF)
    with pytest.raises(RuntimeError, match="batch number of src and tgt must be equal"):
        m(px.randn(L, 2, D), px.randn(T, 3, D))
    with pytest.raises(RuntimeError, match=r"feature number .* d_model \(8\)"):
        m(px.randn(L, 2, 6), px.randn(T, 2, 6))
    with pytest.raises(TypeError, match="encoder_layer must be a Module"):
        nn.TransformerEncoder("layer", 2)
