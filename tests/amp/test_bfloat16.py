"""bfloat16 (ml_dtypes on the CPU) against torch.bfloat16: conversions, promotion, printing,
finfo, ops computed in float32 and rounded back, gradients, and safetensors round trips."""
import numpy as np
import pytest
import torch

import phalanx as px

VALUES = [0.1, -1.337, 3.14159, 1e-3, 65504.0, 1e20, -2.5e-7, 7.0]


def _np(t):
    return t.detach().float().numpy() if isinstance(t, px.Tensor) else t.detach().float().numpy()


def test_conversion_rounds_as_torch():
    x = np.array(VALUES, dtype=np.float32)
    ours = px.tensor(x).bfloat16()
    theirs = torch.tensor(x).bfloat16()
    assert ours.dtype is px.bfloat16 and ours.element_size() == 2
    np.testing.assert_array_equal(_np(ours), _np(theirs))
    np.testing.assert_array_equal(_np(px.tensor(x).to(px.bfloat16)), _np(theirs))
    np.testing.assert_array_equal(_np(px.tensor(VALUES, dtype=px.bfloat16)),
                                  _np(torch.tensor(VALUES, dtype=torch.bfloat16)))
    back = ours.float()
    assert back.dtype is px.float32
    np.testing.assert_array_equal(back.numpy(), theirs.float().numpy())
    assert ours.type() == "phalanx.BFloat16Tensor"
    assert px.tensor([1, 2]).to(px.bfloat16).is_floating_point()


@pytest.mark.parametrize("other", ["float16", "float32", "float64", "int8", "int32", "int64",
                                   "uint8", "bool", "bfloat16"])
def test_promotion_as_torch(other):
    ours = px.promote_types(px.bfloat16, getattr(px, other if other != "bool" else "bool"))
    theirs = torch.promote_types(torch.bfloat16, getattr(torch, other))
    assert ours.name == str(theirs).split(".")[1]
    a = px.ones(3, dtype=px.bfloat16)
    b = px.ones(3, dtype=getattr(px, other))
    ta = torch.ones(3, dtype=torch.bfloat16)
    tb = torch.ones(3, dtype=getattr(torch, other))
    assert (a + b).dtype.name == str((ta + tb).dtype).split(".")[1]
    assert (a * 2.5).dtype is px.bfloat16 and (a + 1).dtype is px.bfloat16


def test_finfo_matches_torch():
    for name in ["bfloat16", "float16", "float32", "float64"]:
        a, b = px.finfo(getattr(px, name)), torch.finfo(getattr(torch, name))
        assert (a.bits, a.eps, a.max, a.min, a.tiny, a.smallest_normal, a.resolution) == \
            (b.bits, b.eps, b.max, b.min, b.tiny, b.smallest_normal, b.resolution)
    assert px.iinfo(px.int32).max == torch.iinfo(torch.int32).max
    with pytest.raises(TypeError):
        px.finfo(px.int64)


@pytest.mark.parametrize("values", [[1.5, 2.25, 3.1], [1.0, 2.0], [1e9, 3.0], []])
def test_printing_as_torch(values):
    ours = repr(px.tensor(values, dtype=px.bfloat16))
    theirs = repr(torch.tensor(values, dtype=torch.bfloat16))
    assert ours == theirs.replace("torch.", "phalanx.")


UNARY = ["exp", "log", "tanh", "sigmoid", "sqrt", "neg", "abs", "relu", "sin", "square",
         "reciprocal", "rsqrt", "log1p", "expm1"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_ops_round_each_result_like_torch(op):
    x = np.random.default_rng(0).uniform(0.1, 3.0, size=(4, 5)).astype(np.float32)
    ours = getattr(px.tensor(x).bfloat16(), op)()
    theirs = getattr(torch.tensor(x).bfloat16(), op)()
    assert ours.dtype is px.bfloat16
    # one op: both compute in float32 and round once, so they agree to an ulp
    np.testing.assert_allclose(_np(ours), _np(theirs), rtol=2 ** -7, atol=0)


def test_reductions_matmul_softmax_accumulate_in_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    px_x, t_x = px.tensor(x).bfloat16(), torch.tensor(x).bfloat16()
    px_w, t_w = px.tensor(w).bfloat16(), torch.tensor(w).bfloat16()
    cases = [(px_x.sum(), t_x.sum()), (px_x.mean(1), t_x.mean(1)),
             (px_x @ px_w, t_x @ t_w), (px_x.softmax(-1), t_x.softmax(-1)),
             (px.einsum("ij,jk->ik", px_x, px_w), torch.einsum("ij,jk->ik", t_x, t_w)),
             (px_x.amax(0), t_x.amax(0)), (px_x.var(1), t_x.var(1))]
    for ours, theirs in cases:
        assert ours.dtype is px.bfloat16, ours.dtype
        np.testing.assert_allclose(_np(ours), _np(theirs), rtol=2 ** -6, atol=1e-2)


def test_gradients_flow_in_bfloat16():
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    px_x = px.tensor(x, dtype=px.bfloat16, requires_grad=True)
    t_x = torch.tensor(x, dtype=torch.bfloat16, requires_grad=True)
    (px_x.tanh() * px_x).sum().backward()
    (t_x.tanh() * t_x).sum().backward()
    assert px_x.grad.dtype is px.bfloat16
    np.testing.assert_allclose(_np(px_x.grad), _np(t_x.grad), rtol=2 ** -6, atol=1e-2)


def test_inplace_and_setitem_keep_bfloat16():
    a = px.zeros(4, dtype=px.bfloat16)
    a[1] = 2.5
    a.add_(1)
    assert a.dtype is px.bfloat16
    np.testing.assert_array_equal(_np(a), [1, 3.5, 1, 1])
    v = a.view(2, 2)               # views stay views
    v.mul_(2)
    np.testing.assert_array_equal(_np(a), [2, 7, 2, 2])


def test_safetensors_round_trip_keeps_bfloat16(tmp_path):
    from safetensors.torch import load_file, save_file
    x = torch.randn(3, 5).bfloat16()
    save_file({"w": x}, tmp_path / "t.safetensors")
    loaded = px.load(tmp_path / "t.safetensors")
    assert loaded["w"].dtype is px.bfloat16
    np.testing.assert_array_equal(_np(loaded["w"]), x.float().numpy())
    up = px.load(tmp_path / "t.safetensors", upcast_bfloat16=True)
    assert up["w"].dtype is px.float32
    px.save({"w": loaded["w"]}, tmp_path / "o.safetensors")
    back, = load_file(tmp_path / "o.safetensors").values()   # written as BF16
    assert back.dtype == torch.bfloat16 and torch.equal(back, x)
    assert px.load(tmp_path / "o.safetensors")["w"].dtype is px.bfloat16


def test_torch_save_zip_with_bfloat16(tmp_path):
    x = torch.randn(2, 3).bfloat16()
    torch.save({"w": x, "f": torch.ones(2)}, tmp_path / "c.pt")
    loaded = px.load(tmp_path / "c.pt")
    assert loaded["w"].dtype is px.bfloat16
    np.testing.assert_array_equal(_np(loaded["w"]), x.float().numpy())


def test_bfloat16_on_a_gpu_is_refused_with_the_reason():
    """Checked without a GPU: the conversion's arguments are judged before any device call."""
    from phalanx.tensor import backend, bf16_compute
    x = px.ones(2, dtype=px.bfloat16)
    cuda = backend.Device("cuda", 0)
    with pytest.raises(NotImplementedError, match="CuPy has no bfloat16 arrays"):
        bf16_compute._refuse_bfloat16_on_gpu(x, None, cuda)
    with pytest.raises(NotImplementedError, match="x.float\\(\\)"):
        bf16_compute._refuse_bfloat16_on_gpu(px.ones(2), px.bfloat16.np, cuda)
    bf16_compute._refuse_bfloat16_on_gpu(x, np.dtype(np.float32), cuda)   # float32 may go
    bf16_compute._refuse_bfloat16_on_gpu(x, None, None)                   # CPU stays fine


def test_a_bfloat16_model_trains_like_torchs():
    px.manual_seed(0)
    ours = px.nn.Linear(6, 3).to(px.bfloat16)
    theirs = torch.nn.Linear(6, 3).to(torch.bfloat16)
    theirs.load_state_dict({k: torch.tensor(v.float().numpy()).bfloat16()
                            for k, v in ours.state_dict().items()})
    opt = px.optim.SGD(ours.parameters(), lr=0.1)
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    x = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
    for _ in range(3):
        for model, o, lib in ((ours, opt, px), (theirs, t_opt, torch)):
            o.zero_grad()
            loss = model(lib.tensor(x).bfloat16()).float().square().mean()
            loss.backward()
            o.step()
    for (k, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        assert p.dtype is px.bfloat16 and p.grad.dtype is px.bfloat16
        np.testing.assert_allclose(_np(p), _np(tp), rtol=2 ** -6, atol=2e-2, err_msg=k)


@pytest.mark.parametrize("make", [px.tensor, px.from_numpy, px.as_tensor])
def test_tensors_from_bfloat16_arrays_compute_in_bfloat16(make):
    import ml_dtypes
    t = make(np.array([0.5, 1.5], dtype=ml_dtypes.bfloat16))
    out = t.exp()        # before anything asks for a dtype (that too would turn compute on)
    assert out.dtype is px.bfloat16 and t.dtype is px.bfloat16
