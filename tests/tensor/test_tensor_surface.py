"""Tensor surface that ported PyTorch scripts use: format(), type(), narrow, addcmul/addcdiv
(with gradients and in place), is_cuda/is_xpu/is_mps, every randint overload, the dtype of
tensors built from NumPy scalars, and a bare integer device meaning cuda:N."""
import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("value, spec", [(0.123456, ".2f"), (3.0, ""), (2.5, "8.3e"),
                                         (7, "d"), (7, "03d"), (True, "")])
def test_format_of_0d_tensors_is_the_numbers(value, spec):
    t, tt = px.tensor(value), torch.tensor(value)
    assert format(t, spec) == format(tt, spec)
    assert ("{:" + spec + "}").format(t) == ("{:" + spec + "}").format(tt)


def test_format_of_other_tensors_is_str_and_rejects_specs():
    t = px.tensor([1.5, 2.0])
    assert "{}".format(t) == str(t) and f"{t}" == repr(t)
    with pytest.raises(TypeError):
        "{:.2f}".format(t)


@pytest.mark.parametrize("dtype, name", [
    (px.float32, "FloatTensor"), (px.float64, "DoubleTensor"), (px.float16, "HalfTensor"),
    (px.int64, "LongTensor"), (px.int32, "IntTensor"), (px.int16, "ShortTensor"),
    (px.int8, "CharTensor"), (px.uint8, "ByteTensor"), (px.bool, "BoolTensor")])
def test_type_names_and_casts(dtype, name):
    t = px.zeros(2, dtype=dtype)
    tt = torch.zeros(2, dtype=getattr(torch, dtype.name))
    assert t.type() == "phalanx." + name and tt.type() == "torch." + name
    src = px.tensor([1.7, -2.2])
    for arg in ("torch." + name, "phalanx." + name, dtype):
        cast = src.type(arg)
        assert cast.dtype is dtype
        np.testing.assert_array_equal(
            cast.numpy(), torch.tensor([1.7, -2.2]).type(tt.type()).numpy())


def test_type_rejects_unknown_names():
    with pytest.raises(ValueError, match="invalid type"):
        px.ones(1).type("torch.ComplexHalfTensor")


def test_narrow_matches_torch_and_is_a_view():
    a = RNG.standard_normal((4, 6))
    for dim, start, length in [(0, 1, 2), (1, -3, 3), (-1, 0, 6), (1, px.tensor(2), 1)]:
        tstart = torch.tensor(int(start)) if isinstance(start, px.Tensor) else start
        np.testing.assert_array_equal(px.tensor(a).narrow(dim, start, length).numpy(),
                                      torch.tensor(a).narrow(dim, tstart, length).numpy())
    t = px.zeros(3, 4)
    px.narrow(t, 1, 1, 2).fill_(5.0)
    assert t.sum().item() == 30.0
    x = px.tensor(a, requires_grad=True)
    x.narrow(1, 2, 3).sum().backward()
    assert x.grad.numpy()[:, 2:5].min() == 1.0 and x.grad.numpy().sum() == 12.0
    with pytest.raises(RuntimeError, match="exceeds dimension size"):
        px.zeros(4).narrow(0, 2, 3)
    with pytest.raises(IndexError, match="start out of range"):
        px.zeros(4).narrow(0, 5, 0)


@pytest.mark.parametrize("op", ["addcmul", "addcdiv"])
def test_addcmul_addcdiv_match_torch_with_gradients(op):
    arrays = [RNG.standard_normal((3, 1)), RNG.standard_normal((1, 4)),
              RNG.uniform(0.5, 2, (3, 4))]
    px_in = [px.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = getattr(px, op)(*px_in, value=0.3)
    tout = getattr(torch, op)(*t_in, value=0.3)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    tout.sum().backward()
    for p, t in zip(px_in, t_in):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    fn = lambda a, b, c: getattr(a, op)(b, c, value=-2.0)  # noqa: E731
    fresh = [px.tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(fn, fresh) and gradgradcheck(fn, fresh)


@pytest.mark.parametrize("op", ["addcmul_", "addcdiv_"])
def test_inplace_addcmul_addcdiv(op):
    a, b, c = RNG.standard_normal(5), RNG.standard_normal(5), RNG.uniform(0.5, 2, 5)
    t = px.tensor(a)
    assert getattr(t, op)(px.tensor(b), px.tensor(c), value=2) is t
    expected = getattr(torch.tensor(a), op)(torch.tensor(b), torch.tensor(c), value=2)
    np.testing.assert_allclose(t.numpy(), expected.numpy(), rtol=1e-12)
    # in the graph: the gradient reaches the factors through the in-place op
    base = px.tensor(a, requires_grad=True) * 1.0
    f1 = px.tensor(b, requires_grad=True)
    getattr(base, op)(f1, px.tensor(c)).sum().backward()
    expected = c if op == "addcmul_" else 1 / c
    np.testing.assert_allclose(f1.grad.numpy(), expected, rtol=1e-12)


def test_addcdiv_of_integers_is_refused_like_torch():
    with pytest.raises(RuntimeError, match="integer division"):
        px.addcdiv(px.ones(2), px.tensor([1, 2]), px.tensor([2, 2]))
    with pytest.raises(RuntimeError):
        torch.addcdiv(torch.ones(2), torch.tensor([1, 2]), torch.tensor([2, 2]))


def test_device_flags():
    t, tt = px.ones(2), torch.ones(2)
    for flag in ("is_cuda", "is_xpu", "is_mps", "is_cpu", "is_meta", "is_sparse",
                 "is_quantized"):
        assert getattr(t, flag) == getattr(tt, flag), flag


@pytest.mark.parametrize("call", [
    lambda m: m.randint(5, (3,)), lambda m: m.randint(2, 5, (3,)),
    lambda m: m.randint(3, 10, size=(2, 2)), lambda m: m.randint(high=5, size=(3,)),
    lambda m: m.randint(low=2, high=5, size=(4,)), lambda m: m.randint(2, high=5, size=(4,)),
    lambda m: m.randint(5, size=[2, 2]), lambda m: m.randint(-3, 0, (6,)),
    lambda m: m.randint(5, (2,), dtype=m.float32), lambda m: m.randint(0, 2, ()),
])
def test_randint_overloads_match_torch(call):
    ours, theirs = call(px), call(torch)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.dtype.name == str(theirs.dtype).split(".")[1]


def test_randint_values_and_errors():
    px.manual_seed(0)
    v = px.randint(-2, 3, (5000,)).numpy()
    assert set(v.tolist()) == {-2, -1, 0, 1, 2}
    for bad, exc in [(lambda m: m.randint(5, 3), TypeError),          # size must be a tuple
                     (lambda m: m.randint(5.5, (2,)), TypeError),
                     (lambda m: m.randint(5, 3, 2), TypeError),
                     (lambda m: m.randint(3, 3, (2,)), RuntimeError),
                     (lambda m: m.randint(5, (2,), requires_grad=True), RuntimeError)]:
        with pytest.raises(exc):
            bad(torch)
        with pytest.raises(exc):
            bad(px)
    g = px.Generator().manual_seed(4)
    a = px.randint(100, (4,), generator=g).tolist()
    assert a == px.randint(100, (4,), generator=px.Generator().manual_seed(4)).tolist()
    like = px.randint_like(px.zeros(3, 2), 4)
    assert tuple(like.shape) == (3, 2) and like.dtype is px.float32 and like.max() < 4
    assert px.randint_like(px.zeros(50), 3, 5).min() >= 3


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list")
@pytest.mark.parametrize("data", [
    [np.float64(0.5)], np.float64(0.5), [np.float32(0.5), 1.0], [np.float64(0.5), np.float32(1)],
    [np.int32(1)], [1, np.float64(0.5)], [np.float16(1)], [np.bool_(True)],
    [[np.float64(1)], [2.0]], [1.0, 2], [[1, 2], [3, 4]], [np.int32(1), 2],
    [np.int32(1), 2.0], [np.int8(1), np.uint8(2)], [np.array([1, 2], np.int16), [3, 4]],
    [True, False], [np.float32(2.5), np.int64(3)],
])
def test_dtype_inferred_like_torch(data):
    assert px.tensor(data).dtype.name == str(torch.tensor(data).dtype).split(".")[1]


def test_dtype_inference_of_tensors_in_lists_and_default_dtype():
    assert px.tensor([px.tensor(1.0, dtype=px.float64), 1.0]).dtype is px.float64
    px.set_default_dtype(px.float64)
    try:
        assert px.tensor([1.0, np.float32(2)]).dtype is px.float64
        assert px.tensor([np.float32(2)]).dtype is px.float32
    finally:
        px.set_default_dtype(px.float32)


def test_integer_device_means_cuda():
    from phalanx.tensor.tensor import as_device
    if px.cuda.is_available():
        assert as_device(0) == "cuda:0" and px.ones(1).to(0).device == "cuda:0"
    else:
        with pytest.raises(RuntimeError, match="cuda:1"):
            as_device(1)
    assert as_device("cpu") == "cpu" and as_device(None) is None
    with pytest.raises(RuntimeError, match="negative"):
        px.ones(1).to(-1)
