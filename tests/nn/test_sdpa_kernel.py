"""`nn.attention.sdpa_kernel` and `backends.cuda`'s SDPA switches, against PyTorch CPU: with
each choice of kernels, scaled_dot_product_attention and MultiheadAttention run (with the same
results) or raise where PyTorch's do."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch.nn.attention import SDPBackend as TBackend, sdpa_kernel as t_sdpa_kernel

import phalanx as px
import phalanx.nn.functional as F
from phalanx import nn
from phalanx.nn.attention import SDPBackend, _check_kernel, sdpa_kernel

RNG = np.random.default_rng(0)
CHOICES = [["MATH"], ["FLASH_ATTENTION"], ["EFFICIENT_ATTENTION"], ["CUDNN_ATTENTION"],
           ["OVERRIDEABLE"], [], ["FLASH_ATTENTION", "EFFICIENT_ATTENTION"],
           ["MATH", "FLASH_ATTENTION"]]
CALLS = {   # name: (query, key, value shapes, keyword arguments)
    "4-D": ([2, 3, 5, 8], [2, 3, 6, 8], [2, 3, 6, 8], {}),
    "3-D": ([3, 5, 8], [3, 6, 8], [3, 6, 8], {}),
    "causal": ([2, 3, 5, 8], [2, 3, 5, 8], [2, 3, 5, 8], {"is_causal": True}),
    "mask": ([2, 3, 5, 8], [2, 3, 6, 8], [2, 3, 6, 8], {"attn_mask": "bool"}),
    "value wider": ([2, 3, 5, 8], [2, 3, 6, 8], [2, 3, 6, 16], {}),
    "dropout": ([2, 3, 5, 8], [2, 3, 6, 8], [2, 3, 6, 8], {"dropout_p": 0.5}),
}


def outcome(fn):
    """('ok', result) or (the error's first words, None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", fn()
    except RuntimeError as e:
        return str(e).split(".")[0], None


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: "+".join(c) or "none")
def test_sdpa_runs_or_raises_as_pytorch(choice, call):
    qs, ks, vs, kw = CALLS[call]
    q, k, v = (RNG.standard_normal(s).astype(np.float32) for s in (qs, ks, vs))
    mask = np.tril(np.ones((qs[-2], ks[-2]), bool)) if kw.get("attn_mask") else None
    kw_t = dict(kw, attn_mask=None if mask is None else torch.tensor(mask))
    kw_p = dict(kw, attn_mask=None if mask is None else px.tensor(mask))
    def pytorch():
        with t_sdpa_kernel([getattr(TBackend, c) for c in choice]):
            return TF.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)), **kw_t)
    theirs = outcome(pytorch)
    with sdpa_kernel([getattr(SDPBackend, c) for c in choice]):
        ours = outcome(lambda: F.scaled_dot_product_attention(*map(px.tensor, (q, k, v)),
                                                              **kw_p))
    assert ours[0] == theirs[0], (ours[0], theirs[0])
    if ours[0] == "ok" and not kw.get("dropout_p"):
        np.testing.assert_allclose(ours[1].numpy(), theirs[1].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("choice", [["FLASH_ATTENTION"], ["EFFICIENT_ATTENTION"], ["MATH"]],
                         ids=lambda c: c[0])
def test_multihead_attention_follows_the_switches_as_pytorch(choice, training, need_weights):
    """PyTorch's MultiheadAttention goes through scaled_dot_product_attention's kernels when
    it returns no weights (so dropout in training needs the math kernel), not otherwise."""
    torch.manual_seed(0)
    t_mha = torch.nn.MultiheadAttention(8, 2, dropout=0.5).train(training)
    p_mha = nn.MultiheadAttention(8, 2, dropout=0.5).train(training)
    p_mha.load_state_dict({k: px.tensor(v.numpy()) for k, v in t_mha.state_dict().items()})
    x = RNG.standard_normal((5, 3, 8)).astype(np.float32)
    with t_sdpa_kernel([getattr(TBackend, c) for c in choice]):
        theirs = outcome(lambda: t_mha(*[torch.tensor(x)] * 3, need_weights=need_weights)[0])
    with sdpa_kernel([getattr(SDPBackend, c) for c in choice]):
        ours = outcome(lambda: p_mha(*[px.tensor(x)] * 3, need_weights=need_weights)[0])
    assert ours[0] == theirs[0]
    if ours[0] == "ok" and not training:
        np.testing.assert_allclose(ours[1].detach().numpy(), theirs[1].detach().numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_switches_come_back_after_the_block_and_after_an_error():
    cuda = px.backends.cuda
    assert cuda.math_sdp_enabled() and cuda.flash_sdp_enabled()
    with pytest.raises(ValueError):
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            assert not cuda.math_sdp_enabled() and not cuda.flash_sdp_enabled()
            assert cuda.mem_efficient_sdp_enabled()
            raise ValueError
    assert all(getattr(cuda, f"{n}_sdp_enabled")() for n in ("math", "flash", "mem_efficient",
                                                              "cudnn"))
    cuda.enable_math_sdp(False)
    try:
        assert not cuda.math_sdp_enabled()
        q = px.randn(5, 8)                  # 2-D: no flash kernel for it
        with pytest.raises(RuntimeError, match="No available kernel"):
            F.scaled_dot_product_attention(q, q, q)
    finally:
        cuda.enable_math_sdp(True)


def test_older_sdp_kernel_warns_and_switches():
    with pytest.warns(FutureWarning, match="sdpa_kernel"):
        block = px.backends.cuda.sdp_kernel(enable_math=False, enable_flash=False)
    with block:
        assert not px.backends.cuda.math_sdp_enabled()
        assert px.backends.cuda.mem_efficient_sdp_enabled()
    assert px.backends.cuda.math_sdp_enabled()


def test_bad_choices_are_refused():
    with pytest.raises(AssertionError, match="SDPBackend"):
        with sdpa_kernel("math"):
            pass
    with pytest.raises(TypeError, match="SDPBackend.MATH"):
        with sdpa_kernel([SDPBackend.ERROR]):
            pass
    assert [int(b) for b in SDPBackend] == [int(getattr(TBackend, b.name)) for b in SDPBackend]


def test_on_a_gpu_any_allowed_kernel_runs():
    """PyTorch's CUDA eligibility rules are not reproduced: any of the GPU kernels runs
    Phalanx's one kernel there; with none allowed it raises as on the CPU."""
    shapes = ([5, 8], [5, 8], [5, 16])                 # no CPU flash kernel for these
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        _check_kernel(*shapes, 0.5, on_gpu=True)
        with pytest.raises(RuntimeError, match="No viable backend"):
            _check_kernel(*shapes, 0.5, on_gpu=False)
    with sdpa_kernel(SDPBackend.OVERRIDEABLE):
        with pytest.raises(RuntimeError, match="No viable backend"):
            _check_kernel(*shapes, 0.0, on_gpu=True)
