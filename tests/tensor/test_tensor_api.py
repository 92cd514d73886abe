"""The Tensor object: metadata, conversion, repr, DLPack, memory sharing, devices, errors."""
import sys

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.tensor import backend


def test_metadata():
    x = px.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.size() == (2, 3, 4) and x.size(-1) == 4
    assert repr(x.shape) == "phalanx.Size([2, 3, 4])"
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.dtype is px.float32 and x.device == "cpu" and str(x.device) == "cpu"
    assert x.device == px.device("cpu") and repr(x.device) == "device(type='cpu')"
    assert not x.requires_grad and x.grad is None and x.grad_fn is None and x.is_leaf
    assert x.is_contiguous() and not x.transpose(0, 1).is_contiguous()
    assert x.stride() == (12, 4, 1) and x.element_size() == 4
    assert x.is_floating_point() and not px.zeros(2, dtype=px.int64).is_floating_point()


def test_grad_metadata():
    x = px.ones(2, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf and y.requires_grad
    assert y.grad_fn.name() == "MulBackward0" and \
        y.grad_fn.next_functions[0][0].variable is x
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0] and x.grad.grad_fn is None


def test_numpy_item_tolist():
    x = px.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert x[1, 0].item() == 3.0 and isinstance(x[1, 0].item(), float)
    assert isinstance(px.tensor(3).item(), int) and float(px.tensor(2.5)) == 2.5
    assert int(px.tensor([7])) == 7 and bool(px.tensor(True))
    assert [1, 2, 3][px.tensor(1)] == 2  # __index__
    with pytest.raises(RuntimeError, match="4 elements cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(RuntimeError, match=r"detach\(\).numpy\(\)"):
        px.ones(1, requires_grad=True).numpy()
    with pytest.raises(TypeError, match="0-d"):
        len(px.tensor(1.0))


def test_to_detach_clone_contiguous():
    x = px.tensor([1.0, 2.0], requires_grad=True)
    assert x.to(px.float32) is x and x.to("cpu") is x
    y = x.to(px.float64)
    assert y.dtype is px.float64 and y.grad_fn is not None
    assert x.to("cpu", px.int64).dtype is px.int64
    assert x.to(px.zeros(1, dtype=px.float16)).dtype is px.float16
    assert x.to(dtype=px.float64, copy=True).dtype is px.float64
    assert x.double().dtype is px.float64 and x.long().dtype is px.int64
    assert x.half().dtype is px.float16 and x.int().dtype is px.int32
    assert x.bool().dtype is px.bool and x.float().dtype is px.float32
    (y * y).sum().backward()
    assert x.grad.dtype is px.float32 and x.grad.tolist() == [2.0, 4.0]
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.numpy(),
                                                                         x._data)
    c = x.clone()
    assert c.grad_fn is not None and not np.shares_memory(c._data, x._data)
    t = px.zeros(2, 3).T
    assert not t.is_contiguous() and t.contiguous().is_contiguous()
    assert x.detach().contiguous() is not None


def test_detach_shares_the_version_counter():
    x = px.ones(3, requires_grad=True)
    y = x.exp()
    d = y.detach()
    d.zero_()  # modifies y, which exp saved for backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


REPRS = [
    ([1.0, 2.0], {}), ([1.5, -2.25], {}), (3.0, {}), ([1, 2], {}), ([True, False], {}),
    ([], {}), ([[1.0, 2.0], [3.0, 4.0]], {}), ([1.0, 2.0], {"dtype": "float64"}),
    ([1, 2], {"dtype": "int32"}), ([1.0], {"requires_grad": True}), ([1e-5, 1.0], {}),
    ([1e9, 1.0], {}), ([], {"dtype": "int64"}), (0.1, {"dtype": "float64"}),
    ([float("nan"), float("inf"), 1.0], {}),
]


@pytest.mark.parametrize("data,kw", REPRS)
def test_repr_like_torch(data, kw):
    pkw = {k: getattr(px, v) if k == "dtype" else v for k, v in kw.items()}
    tkw = {k: getattr(torch, v) if k == "dtype" else v for k, v in kw.items()}
    assert repr(px.tensor(data, **pkw)) == repr(torch.tensor(data, **tkw)).replace(
        "torch.", "phalanx.")


def test_repr_shows_grad_fn():
    y = px.ones(2, requires_grad=True) * 2
    assert repr(y) == "tensor([2., 2.], grad_fn=<MulBackward0>)"


# ---- memory sharing and DLPack --------------------------------------------------------------
def test_from_numpy_shares_memory():
    a = np.arange(4, dtype=np.float64)
    t = px.from_numpy(a)
    a[0] = 10
    assert t[0].item() == 10 and t.dtype is px.float64
    t.add_(1)
    assert a[0] == 11
    with pytest.raises(TypeError, match="np.ndarray"):
        px.from_numpy([1, 2])
    with pytest.raises(TypeError, match="unsupported"):
        px.from_numpy(np.zeros(2, dtype=np.uint32))


def test_dlpack_with_numpy():
    t = px.arange(6, dtype=px.float32).reshape(2, 3)
    a = np.from_dlpack(t)
    assert a.shape == (2, 3) and np.shares_memory(a, t._data)
    back = px.from_dlpack(a)
    assert np.shares_memory(back._data, a) and back.tolist() == t.tolist()


def test_dlpack_with_torch():
    t = px.arange(6, dtype=px.float64)
    tt = torch.from_dlpack(t)
    tt[0] = 42
    assert t[0].item() == 42
    src = torch.arange(4, dtype=torch.int32)
    p = px.from_dlpack(src)
    src[1] = 9
    assert p.dtype is px.int32 and p.tolist() == [0, 9, 2, 3]
    g = px.ones(2, requires_grad=True)
    assert torch.from_dlpack(g).tolist() == [1.0, 1.0]  # exports the data, not the graph


def test_pickle_and_deepcopy():
    import copy
    import pickle
    x = px.tensor([1.0, 2.0], requires_grad=True)
    y = pickle.loads(pickle.dumps(x))
    assert y.tolist() == [1.0, 2.0] and y.requires_grad
    z = copy.deepcopy(x)
    assert z.requires_grad and not np.shares_memory(z._data, x._data)


# ---- devices --------------------------------------------------------------------------------
def test_cuda_without_cupy_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setattr(backend, "_cupy", None)
    for make in (lambda: px.zeros(2, device="cuda"), lambda: px.ones(2).to("cuda"),
                 lambda: px.ones(2).cuda(), lambda: px.tensor([1.0], device="cuda:0"),
                 lambda: px.randn(2, device="cuda")):
        with pytest.raises(RuntimeError, match=r"CuPy is not installed.*pip install "
                                               r"'phalanx\[cuda12\]'"):
            make()


def test_bad_device_string():
    for lib in (px, torch):
        with pytest.raises(RuntimeError, match="Expected one of cpu, cuda.* device type at "
                                               "start of device string: tpu"):
            lib.zeros(2, device="tpu")


def test_a_device_is_a_default_device_context():
    for lib in (px, torch):
        with lib.device("cpu") as d:
            assert d == lib.device("cpu") and lib.get_default_device() == lib.device("cpu")
            assert lib.nn.Linear(2, 2).weight.device == lib.device("cpu")
    with pytest.raises(NotImplementedError, match="the CPU and 'meta' can be"):
        with px.device("cuda:0"):
            pass
    assert px.get_default_device() == px.device("cpu")


# ---- errors ---------------------------------------------------------------------------------
ERRORS = [
    (lambda: px.ones(2, 3) + px.ones(4), RuntimeError, r"\[2, 3\] and \[4\] cannot be broadcast"),
    (lambda: px.ones(2, 3) @ px.ones(2, 3), RuntimeError, r"2x3 and 2x3"),
    (lambda: px.ones(2, 3).reshape(4, 2), RuntimeError, r"shape '\[4, 2\]' is invalid"),
    (lambda: px.ones(2, 3).T.view(6), RuntimeError, r"view size is not compatible"),
    (lambda: px.ones(2, 3).sum(dim=2), IndexError, r"Dimension out of range"),
    (lambda: px.ones(2, 3).permute(0), RuntimeError, r"number of dims don't match"),
    (lambda: px.ones(2, 3).expand(4, 3), RuntimeError, r"expanded size"),
    (lambda: px.cat([px.ones(2, 3), px.ones(2, 4)]), RuntimeError, r"Sizes of tensors"),
    (lambda: px.cat([px.tensor(1.0)]), RuntimeError, r"zero-dimensional"),
    (lambda: px.stack([px.ones(2), px.ones(3)]), RuntimeError, r"equal size"),
    (lambda: px.ones(5).split([2, 2]), RuntimeError, r"sum exactly to 5"),
    (lambda: px.ones(3)[5], IndexError, r"out of bounds|shape \[3\]"),
    (lambda: px.ones(3)[px.tensor([0.5])], IndexError, r"long, int, byte or bool"),
    (lambda: px.ones(2, 3).gather(1, px.tensor([[0.0]])), RuntimeError, r"int64 for index"),
    (lambda: px.ones(2, 3).gather(1, px.tensor([[3]])), IndexError, r"out of bounds"),
    (lambda: px.ones(2, 3).gather(1, px.tensor([0])), RuntimeError, r"same number of dim"),
    (lambda: px.ones(3).index_select(0, px.tensor([[0]])), IndexError, r"vector"),
    (lambda: px.ones(2).masked_fill(px.tensor([True, False]), px.ones(2)), RuntimeError,
     r"0-dimensional value"),
    (lambda: px.where(px.ones(2), px.ones(2), px.zeros(2)), RuntimeError, r"boolean"),
    (lambda: px.ones(2).clamp(), RuntimeError, r"min.*max"),
    (lambda: px.tensor([1, 2]).mean(), RuntimeError, r"floating point.*x.float\(\)"),
    (lambda: px.tensor([1, 2]) ** -1, RuntimeError, r"negative integer powers"),
    (lambda: px.ones(2, dtype=px.int64, requires_grad=True), RuntimeError,
     r"floating point.*x.float\(\)"),
    (lambda: px.ones(3).tril(), RuntimeError, r"at least 2 dimensions"),
    (lambda: px.ones(2).flatten(1, 0), IndexError, r"Dimension out of range"),
    (lambda: px.ones(2, 3).flatten(1, 0), RuntimeError, r"start_dim cannot come after"),
    (lambda: px.ones(2, 2).repeat(2), RuntimeError, r"repeat dims"),
    (lambda: px.ones(2) + px.ones(3), RuntimeError, r"\[2\] and \[3\] cannot be broadcast"),
    (lambda: px.ones(0).max(), IndexError, r"numel\(\) == 0"),
    (lambda: px.einsum("ij,jk->ik", px.ones(2, 3), px.ones(3, 2, dtype=px.float64)),
     RuntimeError, r"same dtype"),
    (lambda: _pad(px.ones(2), (1,)), RuntimeError, r"even"),
    (lambda: _pad(px.ones(2, 2), (1, 1), mode="bogus"), ValueError, r"unknown mode"),
    (lambda: px.gelu(px.ones(2), approximate="fast"), ValueError, r"'none' or 'tanh'"),
    (lambda: px.ones(2)[None].squeeze(0).matmul(px.tensor(1.0)), RuntimeError, r"1D"),
    (lambda: px.ones(2).to("cpu").new_zeros(2, 2).mm(px.ones(2)), RuntimeError,
     r"2-D tensors"),
]


def _pad(x, p, **kw):
    from phalanx.tensor.ops.shape import pad
    return pad(x, p, **kw)


@pytest.mark.parametrize("fn,exc,match", ERRORS)
def test_errors_are_clear(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_broadcast_mismatch_names_the_op_and_both_shapes():
    with pytest.raises(RuntimeError, match=r"Add: the shapes \[3, 4\] and \[5\] cannot be "
                                           r"broadcast"):
        px.ones(3, 4) + px.ones(5)


def test_swap_tensors_exchanges_everything():
    for lib in (px, torch):
        a = lib.nn.Parameter(lib.ones(2))
        a.tag = "weight"                      # tensors take attributes, as in PyTorch
        b = lib.zeros(3)
        b.note = 1
        lib.utils.swap_tensors(a, b)
        assert type(a) is lib.Tensor and a.tolist() == [0.0, 0.0, 0.0] and not a.requires_grad
        assert type(b) is lib.nn.Parameter and b.tolist() == [1.0, 1.0] and b.requires_grad
        assert (b.tag, a.note) == ("weight", 1) and not hasattr(a, "tag")
        b.sum().backward()
        assert b.grad.tolist() == [1.0, 1.0]


def test_sizes_built_from_sizes_stay_sizes():
    for lib in (px, torch):
        s = lib.Size([2, 3])
        for made in (s + (4,), (1,) + s, s[1:], s * 2, 2 * s):
            assert type(made) is lib.Size
        assert s[0] == 2 and type(s[0]) is int and (s + (4,)) == (2, 3, 4)


def test_clamp_gives_no_gradient_where_it_clamps_even_an_infinite_one():
    for lib in (px, torch):
        x = lib.tensor([0.8, 2.0], requires_grad=True)
        (1 / (x.clamp(min=1) - 1)).sum().backward()
        assert x.grad.tolist() == [0.0, -1.0]


def test_the_types_print_as_the_packages_own():
    assert repr(type(px.ones(1))) == "<class 'phalanx.Tensor'>"
    assert repr(type(px.ones(1).shape)) == "<class 'phalanx.Size'>"
    assert repr(type(torch.ones(1))) == "<class 'torch.Tensor'>"


def test_storages_tell_which_tensors_share_memory():
    import warnings
    for lib in (px, torch):
        x = lib.arange(6.0)
        y = x[2:].view(2, 2)
        s = y.untyped_storage()
        assert (s.nbytes(), s.size(), len(s), s.element_size()) == (24, 24, 24, 1)
        assert s.data_ptr() == x.untyped_storage().data_ptr() == x.data_ptr()
        assert x.clone().untyped_storage().data_ptr() != s.data_ptr()
        assert y.storage_offset() == 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = y.storage()
        assert "TypedStorage is deprecated" in str(caught[0].message)
        assert (t.size(), len(t), t[3], t.tolist()) == (6, 6, 3.0, [0.0, 1.0, 2.0, 3.0, 4.0,
                                                                      5.0])
        assert t.dtype == lib.float32 and t.data_ptr() == x.data_ptr()
        assert repr(lib.arange(2.0).untyped_storage()).endswith(
            "UntypedStorage(device=cpu) of size 8]")


def test_cross_without_dim_warns_as_pytorch():
    import warnings
    for lib in (px, torch):
        a = lib.ones(3, 3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib.cross(a, a)
            lib.cross(a, a, dim=0)
            lib.linalg.cross(a, a)
        assert len(caught) == 1 and "without specifying the dim arg is deprecated" in \
            str(caught[0].message) and caught[0].filename == __file__
