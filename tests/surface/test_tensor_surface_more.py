"""Legacy constructors (Tensor(2, 3), FloatTensor, t.new), the rarer Tensor methods and fills,
asarray/range/logspace, process settings and compile, against PyTorch where it has an
answer."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(5)
LEGACY = ["FloatTensor", "DoubleTensor", "HalfTensor", "ByteTensor", "CharTensor",
          "ShortTensor", "IntTensor", "LongTensor", "BoolTensor"]


@pytest.mark.parametrize("name", ["Tensor"] + LEGACY)
def test_legacy_constructors_match_torch(name):
    P, T = getattr(px, name), getattr(torch, name)
    assert tuple(P(2, 3).shape) == tuple(T(2, 3).shape) == (2, 3)
    assert tuple(P(px.Size([4])).shape) == tuple(T(torch.Size([4])).shape)
    assert tuple(P().shape) == tuple(T().shape) == (0,)
    for data in ([1.7, 2.0, 0.0], [[1, 0], [3, 4]], np.arange(3)):
        p, t = P(data), T(data)
        assert p.dtype.name == str(t.dtype).split(".")[1], (name, data)
        np.testing.assert_array_equal(p.numpy(), t.numpy())


def test_legacy_types_check_and_cast():
    assert isinstance(px.zeros(2), px.FloatTensor) and not isinstance(px.zeros(2), px.LongTensor)
    assert isinstance(px.zeros(2, dtype=px.int64), px.LongTensor)
    assert not isinstance(np.zeros(2), px.FloatTensor)
    y = px.tensor([1.7, -2.5]).type(px.LongTensor)
    np.testing.assert_array_equal(y.numpy(), torch.tensor([1.7, -2.5]).type(torch.LongTensor))
    assert px.FloatTensor.dtype is px.float32 and px.typename(px.ones(1)) == "phalanx.FloatTensor"


def test_legacy_constructor_of_a_tensor_is_an_alias_in_the_graph():
    a = px.zeros(3, requires_grad=True)
    for b in (px.FloatTensor(a), px.Tensor(a)):
        assert b.requires_grad and b.grad_fn is not None and b.data_ptr() == a.data_ptr()
    (px.Tensor(a) * 3).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3, 3, 3])
    with pytest.raises(TypeError, match="convert it"):
        px.FloatTensor(px.zeros(2, dtype=px.int64))
    with pytest.raises(TypeError, match="neither a size nor data"):
        px.Tensor(2.5)


def test_new_keeps_dtype_and_device():
    base = px.zeros(2, dtype=px.int32)
    assert base.new(3, 4).shape == (3, 4) and base.new(3, 4).dtype is px.int32
    np.testing.assert_array_equal(base.new([1.5, 2.5]).numpy(),
                                  torch.zeros(2, dtype=torch.int32).new([1.5, 2.5]).numpy())
    assert base.new().shape == (0,)


def test_parameter_from_a_legacy_tensor():
    w = px.nn.Parameter(px.Tensor(5, 3))
    assert w.shape == (5, 3) and w.dtype is px.float32 and w.requires_grad


@pytest.mark.parametrize("lambd", [0.0, 0.5, 1.2])
def test_hardshrink_method(lambd):
    a = np.concatenate([RNG.standard_normal(20), [0.5, -0.5]])
    p, t = px.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    p.hardshrink(lambd).sum().backward()
    t.hardshrink(lambd).sum().backward()
    np.testing.assert_array_equal(p.hardshrink(lambd).detach().numpy(),
                                  t.hardshrink(lambd).detach().numpy())
    np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("shape, wshape", [((2, 3, 4), (3,)), ((2, 3), (1,)), ((5,), (1,)),
                                           ((2, 3, 2, 2), (3,))])
def test_prelu_method(shape, wshape):
    a, w = RNG.standard_normal(shape), RNG.standard_normal(wshape)
    p, pw = px.tensor(a, requires_grad=True), px.tensor(w, requires_grad=True)
    t, tw = torch.tensor(a, requires_grad=True), torch.tensor(w, requires_grad=True)
    cot = RNG.standard_normal(shape)
    (p.prelu(pw) * px.tensor(cot)).sum().backward()
    (t.prelu(tw) * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(p.prelu(pw).detach().numpy(), t.prelu(tw).detach().numpy())
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy())
    np.testing.assert_allclose(pw.grad.numpy(), tw.grad.numpy())


def test_random_fills_follow_their_distributions():
    px.manual_seed(0)
    t = px.empty(20000)
    t.cauchy_(1.0, 2.0)
    q1, q2, q3 = np.quantile(t.numpy(), [0.25, 0.5, 0.75])
    assert abs(q2 - 1.0) < 0.1 and abs((q3 - q1) / 2 - 2.0) < 0.15
    t.log_normal_(0.5, 0.3)
    logs = np.log(t.numpy())
    assert abs(logs.mean() - 0.5) < 0.02 and abs(logs.std() - 0.3) < 0.02
    t.geometric_(0.25)
    v = t.numpy()
    assert v.min() == 1 and (v == np.round(v)).all() and abs(v.mean() - 4.0) < 0.15
    px.manual_seed(3)
    a = px.empty(5).cauchy_().numpy()
    px.manual_seed(3)
    np.testing.assert_array_equal(a, px.empty(5).cauchy_().numpy())
    with pytest.raises(RuntimeError, match="p to be in"):
        t.geometric_(1.5)


def test_resize_like_torch():
    p, t = px.arange(6.0), torch.arange(6.0)
    assert p.resize_(2, 2) is p
    t.resize_(2, 2)
    np.testing.assert_array_equal(p.numpy(), t.tolist())
    p.resize_(3, 3)
    t.resize_(3, 3)
    assert p.shape == t.shape
    np.testing.assert_array_equal(p.numpy().reshape(-1)[:4], t.reshape(-1)[:4].tolist())
    q = px.zeros(4)
    q.resize_as_(px.zeros(2, 2))
    assert q.shape == (2, 2)
    with pytest.raises(RuntimeError, match="require grad"):
        px.zeros(2, requires_grad=True).resize_(4)


def test_layout_flags_and_dim_order():
    p, t = px.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    assert repr(p.layout) == "phalanx.strided" and p.layout is px.strided
    for fn in (lambda x: x, lambda x: x.permute(2, 0, 1), lambda x: x.transpose(0, 1)):
        assert fn(p).dim_order() == fn(t).dim_order()
    assert p.to_dense() is p
    for name in ("is_nested", "is_mkldnn", "is_vulkan", "is_xla", "is_ipu", "is_mtia",
                 "is_maia", "is_sparse_csr"):
        assert getattr(p, name) is False and getattr(t, name) is False


def test_asarray_like_torch():
    n = np.zeros(3)
    c = px.asarray(n)
    n[0] = 5.0
    assert c[0].item() == 5.0 and c.dtype is px.float64
    a = px.zeros(2, requires_grad=True)
    assert px.asarray(a) is a
    assert px.asarray(a, dtype=px.float64).grad_fn is not None
    assert px.asarray(a, copy=True).data_ptr() != a.data_ptr()
    assert not px.asarray(a, requires_grad=False).requires_grad
    assert px.asarray([1.5, 2]).dtype is px.float32 and px.asarray([1, 2]).dtype is px.int64
    with pytest.raises(ValueError):
        px.asarray([1, 2], copy=False)
    with pytest.raises(ValueError):
        px.asarray(np.zeros(2), dtype=px.float32, copy=False)


def test_range_and_logspace_like_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for args, kw in [((1, 4), {}), ((0, 1, 0.3), {}), ((1, 4), {"dtype": "int64"}),
                         ((5,), {})]:
            pkw = {k: getattr(px, v) for k, v in kw.items()}
            tkw = {k: getattr(torch, v) for k, v in kw.items()}
            if args == (5,):   # torch.range needs an end; ours reads one number as the end
                continue
            np.testing.assert_allclose(px.range(*args, **pkw).numpy(),
                                       torch.range(*args, **tkw).numpy(), rtol=1e-6)
    with pytest.warns(UserWarning, match="deprecated"):
        px.range(0, 2)
    for args, kw in [((0, 2, 3), {}), ((0, 3, 4), {"base": 2, "dtype": "int64"}),
                     ((-1, 1, 5), {"base": 3.0})]:
        pkw = {k: getattr(px, v) if k == "dtype" else v for k, v in kw.items()}
        tkw = {k: getattr(torch, v) if k == "dtype" else v for k, v in kw.items()}
        np.testing.assert_allclose(px.logspace(*args, **pkw).numpy(),
                                   torch.logspace(*args, **tkw).numpy(), rtol=1e-6)


def test_settings():
    assert px.get_default_device() == px.device("cpu")
    px.set_default_device("cpu")
    px.set_default_device(None)
    with pytest.raises(NotImplementedError, match="the CPU and 'meta'"):
        px.set_default_device("cuda")
    assert px.get_float32_matmul_precision() == "highest"
    px.set_float32_matmul_precision("high")
    assert px.get_float32_matmul_precision() == "high"
    px.set_float32_matmul_precision("highest")
    with pytest.raises(RuntimeError, match="Invalid precision"):
        px.set_float32_matmul_precision("low")
    assert px.set_flush_denormal(False) is True and px.set_flush_denormal(True) is False
    assert px.is_vulkan_available() is False and px.is_storage(px.zeros(1)) is False
    assert px.typename(3) == torch.typename(3) == "int"
    assert px.typename(np.zeros(1)) == torch.typename(np.zeros(1))
    assert px.typename(px.nn.Linear) == "phalanx.nn.modules.linear.Linear"


def test_compile_returns_the_eager_program():
    model = px.nn.Linear(3, 2)
    assert px.compile(model) is model
    assert px.compile(model, mode="max-autotune", dynamic=True, fullgraph=True) is model

    @px.compile(backend="eager")
    def double(x):
        return 2 * x
    assert double(px.ones(2)).sum().item() == 4.0
    with pytest.raises(NotImplementedError, match="custom backend"):
        px.compile(model, backend=lambda gm, inputs: gm)
    with pytest.raises(RuntimeError, match="mode"):
        px.compile(model, mode="fastest")
    assert px.GradScaler is px.amp.GradScaler


@pytest.fixture
def print_options():
    yield
    px.set_printoptions(profile="default")
    torch.set_printoptions(profile="default")


@pytest.mark.parametrize("options", [
    {}, {"precision": 2}, {"sci_mode": False}, {"sci_mode": True}, {"profile": "short"},
    {"profile": "full"}, {"precision": 6, "sci_mode": False}, {"threshold": 3, "edgeitems": 1}])
def test_set_printoptions_prints_like_torch(options, print_options):
    px.set_printoptions(**options)
    torch.set_printoptions(**options)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((2, 3)) * [1, 10, 1e3], np.array([1.0, 2.0, 3.0]),
              np.array([1e9, 1.0]), np.array([1e-7, 1.0, -np.inf]), np.array([0.5, 2.25]),
              np.array([-100.0, 5.0, 0.0]), rng.standard_normal(3) * 1e-6]
    for a in arrays:
        p, t = repr(px.tensor(a, dtype=px.float32)), repr(torch.tensor(a, dtype=torch.float32))
        if options.get("threshold") and a.size > 3:
            continue   # PyTorch pads '...' to the column width; NumPy's summary does not
        assert p.replace("phalanx", "torch") == t, (options, p, t)


def test_printoptions_profiles_reset_and_validate(print_options):
    px.set_printoptions(precision=7, threshold=5)
    px.set_printoptions(profile="default")
    assert px.tensor([0.5]).__repr__() == "tensor([0.5000])"
    assert "..." in repr(px.zeros(2000)) and "..." not in repr(px.zeros(20))
    px.set_printoptions(profile="full")
    assert "..." not in repr(px.zeros(2000))
    with pytest.raises(ValueError, match="profile"):
        px.set_printoptions(profile="long")


def test_default_tensor_type_and_determinism():
    with pytest.warns(UserWarning, match="deprecated"):
        px.set_default_tensor_type("torch.DoubleTensor")
    try:
        assert px.get_default_dtype() is px.float64 and px.Tensor([1]).dtype is px.float64
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            px.set_default_tensor_type(px.FloatTensor)
    assert px.get_default_dtype() is px.float32
    with pytest.raises(NotImplementedError, match="CUDA"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        px.set_default_tensor_type("torch.cuda.FloatTensor")
    if not px.cuda.is_available():   # every CPU op is deterministic: the mode holds
        px.use_deterministic_algorithms(True)
        assert px.are_deterministic_algorithms_enabled()
        assert px.get_deterministic_debug_mode() == 2
        px.set_deterministic_debug_mode("warn")
        assert px.is_deterministic_algorithms_warn_only_enabled()
        px.set_deterministic_debug_mode(0)
    assert not px.are_deterministic_algorithms_enabled()
    assert px.get_device(px.zeros(1)) == torch.get_device(torch.zeros(1)) == -1
    assert px.is_inference(px.zeros(1)) is False


def test_variable_is_a_detached_leaf_like_torch():
    from phalanx.autograd import Variable
    from phalanx.autograd.variable import Variable as FromModule
    assert FromModule is Variable
    a = px.ones(3, requires_grad=True) * 2
    v = Variable(a)
    assert not v.requires_grad and v.grad_fn is None and v.data_ptr() == a.data_ptr()
    w = Variable(px.ones(2), requires_grad=True)
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3, 3])
    assert isinstance(px.zeros(1), Variable) and not isinstance(np.zeros(1), Variable)
    with pytest.warns(UserWarning, match="volatile"):
        assert not Variable(px.ones(1), volatile=True).requires_grad
    with pytest.raises(TypeError, match="has to be a tensor"):
        Variable([1, 2])


@pytest.mark.filterwarnings("ignore:index_reduce.. is in beta")
@pytest.mark.parametrize("reduce", ["prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("dim", [0, -1])
def test_index_reduce_matches_torch(reduce, include_self, dim):
    x = RNG.standard_normal((4, 5, 3))
    d = dim % 3
    src_shape = list(x.shape)
    src_shape[d] = 6
    src, idx = RNG.standard_normal(src_shape), RNG.integers(0, x.shape[d], 6)
    P = [px.tensor(x, requires_grad=True), px.tensor(src, requires_grad=True)]
    T = [torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)]
    po = P[0].index_reduce(dim, px.tensor(idx), P[1], reduce, include_self=include_self)
    to = T[0].index_reduce(dim, torch.tensor(idx), T[1], reduce, include_self=include_self)
    cot = RNG.standard_normal(x.shape)
    (po * px.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-12)
    for p, t in zip(P, T):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-14)
    a, b = px.tensor(x), torch.tensor(x)
    assert a.index_reduce_(dim, px.tensor(idx), px.tensor(src), reduce) is a
    b.index_reduce_(dim, torch.tensor(idx), torch.tensor(src), reduce)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        px.index_reduce(px.tensor(x), dim, px.tensor(idx), px.tensor(src), reduce).numpy(),
        torch.index_reduce(torch.tensor(x), dim, torch.tensor(idx), torch.tensor(src),
                           reduce).numpy(), rtol=1e-12)


def test_vmap_matches_torch():
    x, w = RNG.standard_normal((5, 3)), RNG.standard_normal((3, 4))
    np.testing.assert_allclose(
        px.vmap(lambda a, b: a @ b, in_dims=(0, None))(px.tensor(x), px.tensor(w)).numpy(),
        torch.vmap(lambda a, b: a @ b, in_dims=(0, None))(torch.tensor(x),
                                                           torch.tensor(w)).numpy())
    p_out = px.vmap(lambda a: (a.sum(), a * 2), in_dims=1, out_dims=(0, 1))(px.tensor(x))
    t_out = torch.vmap(lambda a: (a.sum(), a * 2), in_dims=1, out_dims=(0, 1))(torch.tensor(x))
    for p, t in zip(p_out, t_out):
        np.testing.assert_allclose(p.numpy(), t.numpy())
    nested = px.vmap(px.vmap(lambda a, b: a * b))(px.tensor(x), px.tensor(x))
    np.testing.assert_allclose(nested.numpy(), x * x)
    tree = px.vmap(lambda d: d["a"] + d["b"], in_dims=({"a": 0, "b": None},))(
        {"a": px.tensor(x), "b": px.ones(3, dtype=px.float64)})
    np.testing.assert_allclose(tree.numpy(), x + 1)
    p, t = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    px.vmap(lambda a: (a ** 3).sum())(p).sum().backward()
    torch.vmap(lambda a: (a ** 3).sum())(t).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy())


def test_vmap_randomness_modes_and_errors():
    x = px.zeros(4, 3)
    with pytest.raises(RuntimeError, match="randomness error mode"):
        px.vmap(lambda a: a + px.randn(3))(x)
    same = px.vmap(lambda a: a + px.randn(3), randomness="same")(x).numpy()
    assert np.allclose(same, same[:1])
    different = px.vmap(lambda a: a + px.randn(3), randomness="different")(x).numpy()
    assert not np.allclose(different, different[:1])
    with pytest.raises(ValueError, match="same size"):
        px.vmap(lambda a, b: a + b)(px.zeros(2, 3), px.zeros(3, 3))
    with pytest.raises(ValueError, match="at least one input"):
        px.vmap(lambda a: a, in_dims=None)(px.zeros(2))
    assert px.vmap(lambda a: a * 2, chunk_size=2)(px.ones(5)).sum().item() == 10.0


def test_cuda_legacy_types():
    assert repr(px.cuda.FloatTensor) == "<class 'phalanx.cuda.FloatTensor'>"
    assert px.cuda.LongTensor.dtype is px.int64 and px.cuda.LongTensor.is_cuda
    assert not isinstance(px.zeros(1), px.cuda.FloatTensor)
    if px.cuda.is_available():
        t = px.cuda.FloatTensor([1, 2])
        assert t.is_cuda and isinstance(t, px.cuda.FloatTensor)
        assert px.zeros(2).type(px.cuda.LongTensor).is_cuda
    else:
        with pytest.raises(RuntimeError, match="no usable GPU"):
            px.cuda.FloatTensor(2)
        with pytest.raises(RuntimeError, match="no usable GPU"):
            px.zeros(2).type(px.cuda.FloatTensor)


@pytest.mark.parametrize("kw", [
    {}, {"dim": 1}, {"dim": [0, 2], "spacing": [2.0, 0.5]}, {"spacing": 3.0, "edge_order": 2},
    {"dim": (1,), "coords": 6, "edge_order": 2}, {"dim": 0, "coords": 5}])
def test_gradient_matches_torch(kw):
    f = RNG.standard_normal((5, 6, 4))
    kw = dict(kw)
    pk, tk = dict(kw), dict(kw)
    if "coords" in kw:
        x = np.sort(RNG.uniform(0, 5, kw["coords"]))
        del pk["coords"], tk["coords"]
        pk["spacing"], tk["spacing"] = [px.tensor(x)], [torch.tensor(x)]
    p, t = px.tensor(f, requires_grad=True), torch.tensor(f, requires_grad=True)
    po, to = px.gradient(p, **pk), torch.gradient(t, **tk)
    assert len(po) == len(to)
    for a, b in zip(po, to):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    sum((x ** 2).sum() for x in po).backward()
    sum((x ** 2).sum() for x in to).backward()
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_gradient_edges_and_errors():
    assert px.gradient(px.tensor([1, 4, 9, 16]))[0].dtype is px.float32
    np.testing.assert_allclose(px.gradient(px.tensor([1.0, 4.0]))[0].numpy(), [3.0, 3.0])
    with pytest.raises(RuntimeError, match="at least"):
        px.gradient(px.tensor([1.0, 2.0]), edge_order=2)
    with pytest.raises(RuntimeError, match="spacing"):
        px.gradient(px.zeros(3, 3), spacing=[1.0])


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_anomaly_switches():
    assert px.is_anomaly_enabled() is False
    px.set_anomaly_enabled(True)
    try:
        assert px.is_anomaly_enabled() and px.is_anomaly_check_nan_enabled()
        x = px.tensor([-1.0], requires_grad=True)
        with pytest.raises(RuntimeError):
            x.sqrt().sum().backward()    # NaN gradient: anomaly mode names the op
    finally:
        px.set_anomaly_enabled(False)
    assert not px.autograd.is_anomaly_enabled()


def test_memory_formats_row_major_accepted_channels_last_refused():
    x = px.randn(2, 3, 4, 5)
    assert x.contiguous(memory_format=px.contiguous_format) is x
    for out in (x.clone(memory_format=px.preserve_format), x.to(memory_format=px.contiguous_format),
                px.empty_like(x, memory_format=px.preserve_format),
                px.zeros_like(x, memory_format=px.contiguous_format),
                px.full_like(x, 2.0, memory_format=px.preserve_format),
                px.rand_like(x, memory_format=px.preserve_format),
                px.randint_like(x, 5, memory_format=px.preserve_format)):
        assert out.shape == x.shape and out.is_contiguous()
    px.nn.Linear(2, 2).to(memory_format=px.contiguous_format)
    for call in (lambda: x.contiguous(memory_format=px.channels_last),
                 lambda: x.clone(memory_format=px.channels_last),
                 lambda: x.to(memory_format=px.channels_last_3d),
                 lambda: px.empty_like(x, memory_format=px.channels_last),
                 lambda: px.nn.Conv2d(1, 1, 1).to(memory_format=px.channels_last)):
        with pytest.raises(NotImplementedError, match="channels-last"):
            call()
    with pytest.raises(RuntimeError, match="preserve memory format"):
        x.contiguous(memory_format=px.preserve_format)
    assert repr(px.channels_last) == "phalanx.channels_last"


def test_is_contiguous_per_memory_format_like_torch():
    p, t = px.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    views = [lambda a: a, lambda a: a.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
             lambda a: a[:, :1], lambda a: a.transpose(2, 3)]
    for view in views:
        for pf, tf in ((px.contiguous_format, torch.contiguous_format),
                       (px.channels_last, torch.channels_last)):
            assert view(p).is_contiguous(memory_format=pf) == \
                view(t).is_contiguous(memory_format=tf)
    q, u = px.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4, 5, 6)
    q3 = q.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    u3 = u.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    assert q3.is_contiguous(memory_format=px.channels_last_3d) == \
        u3.is_contiguous(memory_format=torch.channels_last_3d) is True


def test_retains_grad_and_storage_offset_like_torch():
    for lib in (px, torch):
        a = lib.zeros(2, 3, requires_grad=True)
        b = a * 2
        assert not a.retains_grad and not b.retains_grad
        b.retain_grad()
        b.retain_grad()                       # twice: still one gradient, as in PyTorch
        assert b.retains_grad
        b.sum().backward()
        np.testing.assert_array_equal(b.grad.numpy(), np.ones((2, 3)))
    p, t = px.arange(12.0).reshape(3, 4), torch.arange(12.0).reshape(3, 4)
    for view in (lambda z: z, lambda z: z[1], lambda z: z[1:, 2:], lambda z: z[:, 1],
                 lambda z: z.t()[2]):
        assert view(p).storage_offset() == view(t).storage_offset()


def test_frombuffer_and_empty_strided_like_torch():
    raw = bytearray(b"\x01\x00\x02\x00\x03\x00")
    for kw in ({}, {"count": 2, "offset": 2}):
        np.testing.assert_array_equal(
            px.frombuffer(raw, dtype=px.int16, **kw).numpy(),
            torch.frombuffer(bytearray(raw), dtype=torch.int16, **kw).numpy())
    shared = px.frombuffer(raw, dtype=px.uint8)
    shared[0] = 9
    assert raw[0] == 9                                 # the tensor is the buffer's memory
    with pytest.warns(UserWarning, match="not writable"):
        px.frombuffer(b"\x01\x02", dtype=px.uint8)
    with pytest.raises(ValueError, match="multiple of element size"):
        px.frombuffer(bytearray(3), dtype=px.int16)
    for size, stride in (((2, 3), (1, 2)), ((2, 3), (3, 1)), ((4,), (2,)), ((0, 3), (3, 1))):
        p, t = px.empty_strided(size, stride), torch.empty_strided(size, stride)
        assert tuple(p.shape) == tuple(t.shape) and p.stride() == t.stride()
        assert p.is_contiguous() == t.is_contiguous()


def test_view_as_another_dtype_reinterprets_the_bytes_as_pytorch():
    """x.view(dtype): the same memory read as another dtype (bit tricks, quantization code);
    PyTorch's shapes, sharing, errors, and no gradient."""
    import torch
    seen = []
    for lib in (px, torch):
        x = lib.ones(2, 4, requires_grad=True) * 1
        row = [tuple(x.view(d).shape) for d in (lib.int32, lib.float16, lib.float64,
                                                lib.uint8)]
        bits = x.view(lib.int32)
        row += [bits.requires_grad, bits[0, 0].item()]
        b = lib.zeros(4)
        b.view(lib.int32)[0] = 1065353216          # the bits of 1.0f, written through
        row.append(b.tolist())
        for bad in (lambda: lib.ones(2, 3).view(lib.float64),
                    lambda: lib.ones(3, 2).t().view(lib.float16),
                    lambda: lib.tensor(1.0).view(lib.float16)):
            with pytest.raises(RuntimeError) as e:
                bad()
            row.append(str(e.value))
        seen.append(row)
    assert seen[0] == seen[1]
