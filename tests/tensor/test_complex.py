"""Complex tensors against PyTorch: dtypes and promotion, creation, parts and views, printing,
arithmetic with gradients in PyTorch's convention (real inputs get real gradients), and the
errors of ops that need an order."""
import numpy as np
import pytest
import torch

import phalanx as px


def _name(dtype):
    return str(dtype).split(".")[-1]


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# ---- dtypes, promotion, creation --------------------------------------------------------------
def test_dtype_objects_match_torch():
    for name in ("complex64", "complex128", "cfloat", "cdouble"):
        d, t = getattr(px, name), getattr(torch, name)
        assert _name(d) == _name(t)
        assert (d.is_complex, d.is_floating_point, d.is_signed, d.itemsize) == \
            (t.is_complex, t.is_floating_point, t.is_signed, t.itemsize)
        assert _name(d.to_real()) == _name(t.to_real())
    assert px.float64.to_complex() is px.complex128 and px.float32.to_complex() is px.complex64
    assert not px.float32.is_complex and px.complex64.to_complex() is px.complex64
    assert repr(px.cfloat) == "phalanx.complex64"
    for d, t in ((px.complex64, torch.complex64), (px.complex128, torch.complex128)):
        assert px.finfo(d).eps == torch.finfo(t).eps and px.finfo(d).dtype == torch.finfo(t).dtype
    with pytest.raises(NotImplementedError, match="complex32"):
        px.float16.to_complex()


@pytest.mark.parametrize("a,b", [("float32", "complex64"), ("float64", "complex64"),
                                 ("int64", "complex64"), ("bfloat16", "complex64"),
                                 ("float16", "complex64"), ("complex64", "complex128"),
                                 ("bool", "complex128"), ("uint8", "complex64")])
def test_promote_types(a, b):
    for x, y in ((a, b), (b, a)):
        assert _name(px.promote_types(getattr(px, x), getattr(px, y))) == \
            _name(torch.promote_types(getattr(torch, x), getattr(torch, y)))


OPERANDS = [  # (description, builder(lib)) of operands of a binary op
    ("f32 tensor", lambda m: m.ones(2)),
    ("f64 tensor", lambda m: m.ones(2, dtype=m.float64)),
    ("i64 tensor", lambda m: m.ones(2, dtype=m.int64)),
    ("c64 tensor", lambda m: m.ones(2, dtype=m.complex64)),
    ("c128 tensor", lambda m: m.ones(2, dtype=m.complex128)),
    ("f64 0-d", lambda m: m.tensor(1.0, dtype=m.float64)),
    ("c64 0-d", lambda m: m.tensor(1j)),
    ("c128 0-d", lambda m: m.tensor(1j, dtype=m.complex128)),
    ("python complex", lambda m: 2j),
    ("python float", lambda m: 2.5),
]


@pytest.mark.parametrize("left", [o for o in OPERANDS if "python" not in o[0]],
                         ids=lambda o: o[0])
@pytest.mark.parametrize("right", OPERANDS, ids=lambda o: o[0])
def test_result_dtype_of_mixed_arithmetic(left, right):
    results = []
    for m in (px, torch):
        x, y = left[1](m), right[1](m)
        results.append(tuple(_name(r.dtype) for r in (x + y, x * y, x / y, y - x)))
    assert results[0] == results[1]


def test_tensor_from_python_and_numpy_complex():
    for data in ([1 + 2j, 3], 1j, [[1, 2.5j], [3, 4]], [np.complex128(1j), 1.0],
                 np.array([1j, 2], dtype=np.complex64), np.array([1j], dtype=np.complex128)):
        p, t = px.tensor(data), torch.tensor(data)
        assert _name(p.dtype) == _name(t.dtype)
        np.testing.assert_array_equal(p.numpy(), t.numpy())
    assert px.tensor([1, 2], dtype=px.cdouble).dtype is px.complex128
    assert px.ones(2).to(px.complex64).dtype is px.complex64 and px.ones(2).cdouble().is_complex()
    z = px.tensor([1j])
    assert z.is_complex() and px.is_complex(z) and not z.is_floating_point()
    assert z.is_signed() and z.element_size() == 8
    px.set_default_dtype(px.float64)
    try:
        assert px.tensor([1j]).dtype is px.complex128 and (px.ones(2) * 1j).dtype is \
            px.complex128
    finally:
        px.set_default_dtype(px.float32)


# ---- printing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[1 + 2j, 3 - 1j], [1.5 + 2j, -3.25 - 0.5j, 1e-5j],
                                    [0.1 + 0.2j, 1.123456 + 3j], [1e10 + 1j],
                                    [[1 + 1j, 2], [3, 4.5j]], 1 + 2j])
def test_printing_matches_torch(values):
    assert repr(px.tensor(values)) == repr(torch.tensor(values)).replace("torch.", "phalanx.")
    expected = repr(torch.tensor(values, dtype=torch.complex128))
    if len(expected.splitlines()[0]) < 70:  # PyTorch moves a long line's dtype= to its own
        # line, which Phalanx does for no dtype
        assert repr(px.tensor(values, dtype=px.complex128)) == \
            expected.replace("torch.", "phalanx.")


def test_printing_shows_requires_grad_and_empty():
    assert repr(px.tensor([1j], requires_grad=True)) == "tensor([0.+1.j], requires_grad=True)"
    assert repr(px.zeros(0, dtype=px.complex64)) == "tensor([], dtype=phalanx.complex64)"


# ---- parts and views --------------------------------------------------------------------------
def test_real_and_imag_share_memory_and_pass_gradients():
    z = px.tensor([1 + 2j, 3 - 4j])
    re, im = z.real, z.imag
    re[0] = 10.0
    im[1] = 7.0
    assert z.tolist() == [10 + 2j, 3 + 7j]
    x = px.ones(3)
    assert x.real is x and px.real(x) is x
    with pytest.raises(RuntimeError, match="non-complex"):
        x.imag

    rng = np.random.default_rng(0)
    values = _complex(rng, (3, 2))
    grads = []
    for m in (px, torch):
        z = m.tensor(values, requires_grad=True)
        (z.real * 3 + z.imag ** 2).sum().backward()
        grads.append(z.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_view_as_real_and_complex():
    rng = np.random.default_rng(1)
    values = _complex(rng, (4, 3))
    z = px.tensor(values)
    r = px.view_as_real(z)
    assert tuple(r.shape) == (4, 3, 2)
    r[0, 0, 1] = 9.0  # a view: writes reach z
    assert z[0, 0].item().imag == 9.0
    zt = px.view_as_real(z.T)  # any strides
    np.testing.assert_array_equal(zt.numpy(), torch.view_as_real(torch.tensor(z.numpy()).T))
    back = px.view_as_complex(r)
    back[1, 1] = 5j
    assert z[1, 1].item() == 5j
    with pytest.raises(RuntimeError, match="last dimension of size 2"):
        px.view_as_complex(px.ones(3, 3))
    with pytest.raises(RuntimeError, match="stride 1"):
        px.view_as_complex(px.ones(2, 3).T)
    with pytest.raises(RuntimeError, match="complex tensors"):
        px.view_as_real(px.ones(2))

    pairs = rng.standard_normal((4, 3, 2))
    grads = []
    for m in (px, torch):
        z = m.tensor(values, requires_grad=True)
        x = m.tensor(pairs, requires_grad=True)
        w = m.tensor(np.arange(24.0).reshape(4, 3, 2))
        ((m.view_as_real(z) * w).sum() + (m.view_as_complex(x) * (1 + 2j)).abs().sum()
         ).backward()
        grads.append((z.grad.numpy(), x.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_in_place_writes_through_part_views_are_differentiated():
    grads = []
    for m in (px, torch):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        z = m.zeros(2, dtype=m.complex64)
        z.real.copy_(x * 3)
        z.imag.add_(x)
        zz = z * (1 + 1j)
        m.view_as_real(zz)[0, 1] = 5.0
        (zz.abs() ** 2).sum().backward()
        grads.append((zz.detach().numpy(), x.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    leaf = px.tensor([1 + 1j], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.real.mul_(2)


def test_complex_and_polar_forward_and_gradients():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    out = []
    for m in (px, torch):
        re, im = m.tensor(a, requires_grad=True), m.tensor(b, requires_grad=True)
        z = m.complex(re, im)
        p = m.polar(re.abs() + 0.1, im)
        ((z * (2 - 1j)).abs().sum() + (p * (1 + 1j)).real.sum()).backward()
        out.append((z.detach().numpy(), p.detach().numpy(), re.grad.numpy(), im.grad.numpy()))
    for x, y in zip(*out):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="same dtype"):
        px.complex(px.ones(2), px.ones(2, dtype=px.float64))


# ---- arithmetic and gradients -----------------------------------------------------------------
UNARY = {
    "abs": lambda m, z: z.abs(),
    "abs_sq": lambda m, z: z.abs() ** 2,
    "angle": lambda m, z: z.angle(),
    "conj": lambda m, z: z.conj() * (1 + 3j),
    "sgn": lambda m, z: z.sgn(),
    "exp": lambda m, z: z.exp(),
    "log": lambda m, z: z.log(),
    "sqrt": lambda m, z: z.sqrt(),
    "sin_cos": lambda m, z: z.sin() * z.cos(),
    "tanh": lambda m, z: z.tanh(),
    "reciprocal": lambda m, z: z.reciprocal(),
    "square": lambda m, z: z * z,
    "pow": lambda m, z: z ** 3,
    "neg": lambda m, z: -z,
    "sum": lambda m, z: z.sum(0),
    "mean": lambda m, z: z.mean(),
    "mH": lambda m, z: z.mH,
    "reshape_index": lambda m, z: z.reshape(-1)[1:4].flip(0),
    "to_complex128": lambda m, z: z.to(m.complex128),
    "sigmoid": lambda m, z: z.sigmoid(),
    "var": lambda m, z: z.var(1),
    "std": lambda m, z: z.std(),
    "norm": lambda m, z: z.norm(),
    "vector_norm": lambda m, z: m.linalg.vector_norm(z, 3, dim=0),
    "prod": lambda m, z: z.prod(1),
    "cumsum": lambda m, z: z.cumsum(1),
    "cat_stack": lambda m, z: m.stack([z, m.cat([z[1:], z[:1]])]),
}


def _real_loss(out, rng, m, shape_seed):
    """A real loss that sees every real and imaginary part of `out`."""
    w = np.random.default_rng(shape_seed).standard_normal(tuple(out.shape) + (2,))
    if out.is_complex():
        return (out.real * m.tensor(w[..., 0], dtype=out.real.dtype)).sum() + \
            (out.imag * m.tensor(w[..., 1], dtype=out.real.dtype)).sum()
    return (out * m.tensor(w[..., 0], dtype=out.dtype)).sum()


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_ops_and_gradients_match_torch(op):
    rng = np.random.default_rng(3)
    values = _complex(rng, (3, 4))
    res = []
    for m in (px, torch):
        z = m.tensor(values, requires_grad=True)
        out = UNARY[op](m, z)
        _real_loss(out, rng, m, 11).backward()
        res.append((out.detach().resolve_conj().numpy() if m is torch else out.detach().numpy(),
                    z.grad.resolve_conj().numpy() if m is torch else z.grad.numpy(),
                    _name(out.dtype)))
    assert res[0][2] == res[1][2]
    np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-10, atol=1e-12)


BINARY = {
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "rsub": lambda m, a, b: 2j - a * b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "add_alpha": lambda m, a, b: m.add(a, b, alpha=2),
    "scalar_mul": lambda m, a, b: a * (2 - 3j) + b * 1j,
    "scalar_div": lambda m, a, b: (1 + 1j) / a + b / (2 + 1j),
    "matmul": lambda m, a, b: a @ b.T,
    "matmul_vec": lambda m, a, b: a @ b[0],
    "pow": lambda m, a, b: a ** b,
    "where": lambda m, a, b: m.where(m.tensor([True, False, True, False]), a, b),
    "broadcast": lambda m, a, b: a * b[:1],
    "einsum": lambda m, a, b: m.einsum("ij,kj->ik", a, b),
    "vdot": lambda m, a, b: m.vdot(a[0], b[1]),
    "bmm": lambda m, a, b: m.bmm(a.unsqueeze(0), b.T.unsqueeze(0)),
}


# PyTorch refuses mixed dtypes in matmul (and in where's backward): test_mixed_matmul_and_where
# checks Phalanx's promotion against PyTorch on promoted inputs
_SAME_DTYPE_ONLY = ("matmul", "matmul_vec", "where", "einsum", "vdot", "bmm")


@pytest.mark.parametrize("op,kinds", [(op, kinds) for op in sorted(BINARY)
                                      for kinds in ("cc", "cr", "rc")
                                      if kinds == "cc" or op not in _SAME_DTYPE_ONLY])
def test_binary_ops_and_gradients_match_torch(op, kinds):
    """Complex with complex, and mixed: the real input's gradient is real (its real part)."""
    rng = np.random.default_rng(4)
    vals = [_complex(rng, (3, 4)) if k == "c" else rng.standard_normal((3, 4)) + 2
            for k in kinds]
    res = []
    for m in (px, torch):
        a, b = (m.tensor(v, requires_grad=True) for v in vals)
        out = BINARY[op](m, a, b)
        _real_loss(out, rng, m, 12).backward()
        res.append((out.detach().numpy(), a.grad.numpy(), b.grad.numpy()))
    for x, y in zip(*res):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ["matmul", "matmul_vec", "where"])
def test_mixed_matmul_and_where(op):
    """Phalanx promotes a real operand; its gradient is the real part of the gradient that
    the promoted (complex) operand gets in PyTorch."""
    rng = np.random.default_rng(5)
    zv, xv = _complex(rng, (3, 4)), rng.standard_normal((3, 4))
    z, x = px.tensor(zv, requires_grad=True), px.tensor(xv, requires_grad=True)
    zt, xt = torch.tensor(zv, requires_grad=True), torch.tensor(xv + 0j, requires_grad=True)
    for args, targs in (((z, x), (zt, xt)), ((x, z), (xt, zt))):
        out, tout = BINARY[op](px, *args), BINARY[op](torch, *targs)
        _real_loss(out, rng, px, 13).backward()
        _real_loss(tout, rng, torch, 13).backward()
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12)
    assert x.grad.dtype is px.float64
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.real.numpy(), rtol=1e-10)
    np.testing.assert_allclose(z.grad.numpy(), zt.grad.numpy(), rtol=1e-10)


def test_randn_legacy_type_names_and_item():
    px.manual_seed(0)
    z = px.randn(20000, dtype=px.complex64)
    assert z.dtype is px.complex64
    # real and imaginary parts independent, each of variance 1/2 (as PyTorch's)
    assert abs(z.real.var().item() - 0.5) < 0.03 and abs(z.imag.var().item() - 0.5) < 0.03
    assert abs(z.var().item() - 1) < 0.05
    assert px.tensor([1j]).type() == "phalanx.ComplexFloatTensor"
    assert px.tensor([1j]).type("torch.ComplexDoubleTensor").dtype is px.complex128
    assert px.tensor(1 + 2j).item() == 1 + 2j and px.tensor([1j]).tolist() == [1j]
    assert complex(px.tensor([1 + 2j])) == 1 + 2j


def test_abs_squared_gradient_is_twice_z():
    z = px.tensor([1 + 2j, -3 + 0.5j, 0j], requires_grad=True)
    (z.abs() ** 2).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), 2 * z.detach().numpy())


def test_real_leaf_keeps_the_real_part_of_its_gradient():
    x = px.tensor([1.0, -2.0], requires_grad=True)
    w = px.tensor([1.0, 3.0], requires_grad=True)
    h = (x * w).exp()  # a real graph feeding a complex one
    (h * (1 + 2j)).abs().sum().backward()
    xt = torch.tensor([1.0, -2.0], requires_grad=True)
    wt = torch.tensor([1.0, 3.0], requires_grad=True)
    ((xt * wt).exp() * (1 + 2j)).abs().sum().backward()
    assert x.grad.dtype is px.float32
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-6)


def test_gradient_descent_on_a_complex_parameter():
    # z.grad points uphill for a real loss: a few SGD steps approach the target
    target = px.tensor([2 - 1j, -0.5 + 3j])
    z = px.zeros(2, dtype=px.complex64, requires_grad=True)
    for _ in range(50):
        loss = ((z - target).abs() ** 2).sum()
        z.grad = None
        loss.backward()
        with px.no_grad():
            z -= 0.1 * z.grad
    np.testing.assert_allclose(z.detach().numpy(), target.numpy(), atol=1e-4)


# ---- what complex numbers do not support -----------------------------------------------------
@pytest.mark.parametrize("op", [lambda z: z < z, lambda z: z >= 1, lambda z: z.max(),
                                lambda z: z.min(0), lambda z: z.amax(), lambda z: z.argmax(),
                                lambda z: px.relu(z), lambda z: z.clamp(0), lambda z: z.sign(),
                                lambda z: px.maximum(z, z), lambda z: z.sort(),
                                lambda z: z.topk(1), lambda z: z.floor(), lambda z: z.median(),
                                lambda z: z.cummax(0)])
def test_ordering_ops_refuse_complex(op):
    with pytest.raises(NotImplementedError, match="sgn|complex"):
        op(px.tensor([1 + 1j, 2]))


def test_implicit_backward_needs_a_real_scalar():
    z = px.tensor([1 + 1j], requires_grad=True)
    with pytest.raises(RuntimeError, match="real scalar outputs"):
        (z * 2).sum().backward()


def test_convention_matches_finite_differences_through_real_pairs():
    """z = view_as_complex(x): a real loss's gradient w.r.t. the pairs x is view_as_real of
    z.grad = dL/dRe + i dL/dIm, so a float64 finite-difference check of x tests it."""
    rng = np.random.default_rng(6)
    x = px.tensor(rng.standard_normal((3, 4, 2)), requires_grad=True)
    w = px.tensor(_complex(rng, (4, 4)) * 0.3)

    def loss(x):
        z = px.view_as_complex(x)
        y = (z @ w).exp() / (z.conj() + 3) + z.abs() * z.angle().cos() + z.sgn()
        return (y.real * y.imag).sum() + (y.abs() ** 2).mean() + z.var()
    assert px.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    z64 = px.tensor([[1 + 1j, 2], [3j, -4]])
    z128 = px.tensor([1j, 2 - 1j], dtype=px.complex128, requires_grad=True)
    path = tmp_path / "complex.pt"
    px.save({"a": z64, "b": z128, "view": z64.T}, path)
    back = px.load(path)
    assert back["a"].dtype is px.complex64 and back["b"].dtype is px.complex128
    assert back["b"].requires_grad
    np.testing.assert_array_equal(back["a"].numpy(), z64.numpy())
    np.testing.assert_array_equal(back["b"].detach().numpy(), z128.detach().numpy())
    np.testing.assert_array_equal(back["view"].numpy(), z64.T.numpy())


def test_autocast_leaves_complex_tensors_alone():
    z = px.tensor([[1 + 1j, 2]])
    with px.autocast("cpu", dtype=px.bfloat16):
        assert (z @ z.T).dtype is px.complex64
        assert (px.ones(2, 2) @ px.ones(2, 2)).dtype is px.bfloat16
