"""Sparse COO tensors against PyTorch: construction and its errors, coalescing, conversions,
products with dense and sparse matrices (values and gradients, both operands), addition and
multiplication, sums, softmax, the zero-preserving functions, printing; float64 gradient
checks; and dense ops refusing a sparse tensor by name."""
import re

import numpy as np
import pytest
import torch

import phalanx as px

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks",
                                        "ignore:Sparse CSR tensor support")

RNG = np.random.default_rng(0)


def pair(indices, values, size=None, **kw):
    """The same sparse tensor in both frameworks."""
    size = () if size is None else (size,)
    return (px.sparse_coo_tensor(px.tensor(indices), px.tensor(values), *size, **kw),
            torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), *size, **kw))


def random_pattern(shape, nnz, dense=(), duplicates=True, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, nnz) for n in shape])
    if duplicates:
        idx[:, -2:] = idx[:, :2]        # at least two repeated entries
    return idx, rng.standard_normal((nnz,) + dense)


def same(a, t, rtol=1e-12):
    """A Phalanx tensor (sparse or dense) equals a PyTorch one."""
    assert a.is_sparse == t.is_sparse and tuple(a.shape) == tuple(t.shape)
    if t.is_sparse:
        a, t = a.coalesce(), t.coalesce()
        np.testing.assert_array_equal(a.indices().numpy(), t.indices().numpy())
        a, t = a.values(), t.values()
    assert str(a.dtype).split(".")[1] == str(t.dtype).split(".")[1]
    np.testing.assert_allclose(a.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=1e-12)


# ---- construction -----------------------------------------------------------------------------
def test_construction_matches_pytorch():
    idx, vals = random_pattern((4, 5), 7)
    s, t = pair(idx, vals, (4, 5))
    assert s.layout is px.sparse_coo and s.is_sparse and not px.ones(1).is_sparse
    assert (s.sparse_dim(), s.dense_dim(), s._nnz()) == (t.sparse_dim(), t.dense_dim(), t._nnz())
    assert s.is_coalesced() == t.is_coalesced() is False
    np.testing.assert_array_equal(s._indices().numpy(), t._indices().numpy())
    same(s, t)
    # the size inferred from the indices; lists in; an explicit dtype; float indices cast
    s, t = pair([[0, 2], [1, 0]], [1, 2])
    assert tuple(s.shape) == tuple(t.shape) == (3, 2) and s.dtype == px.int64
    s = px.sparse_coo_tensor(px.tensor(idx), px.tensor(vals), (4, 5), dtype=px.float32)
    t = torch.sparse_coo_tensor(torch.tensor(idx), torch.tensor(vals), (4, 5),
                                dtype=torch.float32)
    same(s, t)
    same(s.to(px.float64), t.double())
    assert px.sparse_coo_tensor(px.tensor(idx, dtype=px.float32), px.tensor(vals))._indices() \
        .dtype == px.int64
    # hybrid: values with dense dims
    idx, vals = random_pattern((4,), 5, dense=(3,))
    s, t = pair(idx, vals, (4, 3))
    assert (s.sparse_dim(), s.dense_dim()) == (1, 1)
    same(s, t)


@pytest.mark.parametrize("indices, values, size, message", [
    ([[0, 1], [1, 0]], [1.0, 2.0, 3.0], (2, 2), "same nnz"),
    ([[0, 1], [1, 0]], [1.0, 2.0], (2,), "len(size) == sparse_dim + dense_dim"),
    ([[0, 2], [1, 0]], [1.0, 2.0], (2, 2), "size is inconsistent with indices: for dim 0, "
                                           "size is 2 but found index 2"),
    ([[0, -1], [1, 0]], [1.0, 2.0], (2, 2), "found negative index -1 for dim 0"),
    ([0, 1], [1.0, 2.0], (2,), "indices must be sparse_dim x nnz"),
])
def test_bad_construction_is_refused_as_pytorch_does(indices, values, size, message):
    with pytest.raises(RuntimeError, match=re.escape(message)):
        px.sparse_coo_tensor(px.tensor(indices), px.tensor(values), size)
    if "indices must be" not in message:         # PyTorch's own words for these
        with pytest.raises(RuntimeError):
            torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), size,
                                    check_invariants=True)


def test_check_invariants_switch():
    assert not px.sparse.check_sparse_tensor_invariants.is_enabled()
    with px.sparse.check_sparse_tensor_invariants():
        assert px.sparse.check_sparse_tensor_invariants.is_enabled()
    assert not px.sparse.check_sparse_tensor_invariants.is_enabled()


def test_coalesce_sums_duplicates_in_pytorchs_order():
    for shape, dense in (((5, 6), ()), ((3, 4, 2), ()), ((6,), (2, 3))):
        idx, vals = random_pattern(shape, 12, dense)
        s, t = pair(idx, vals, shape + dense)
        c, tc = s.coalesce(), t.coalesce()
        assert c.is_coalesced() and c.coalesce() is c
        np.testing.assert_array_equal(c.indices().numpy(), tc.indices().numpy())
        np.testing.assert_allclose(c.values().numpy(), tc.values().numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError, match="uncoalesced tensor, please call .coalesce"):
        s.indices()


def test_to_dense_and_to_sparse_match_pytorch():
    idx, vals = random_pattern((4, 5), 8)
    s, t = pair(idx, vals, (4, 5))
    same(s.to_dense(), t.to_dense())
    dense = RNG.standard_normal((4, 3, 2)) * (RNG.random((4, 3, 2)) < 0.4)
    dense[1] = 0
    for sparse_dim in (None, 1, 2, 3):
        a = px.tensor(dense).to_sparse(*(() if sparse_dim is None else (sparse_dim,)))
        b = torch.tensor(dense).to_sparse(*(() if sparse_dim is None else (sparse_dim,)))
        assert a.is_coalesced() and a.sparse_dim() == b.sparse_dim()
        same(a, b)
        np.testing.assert_array_equal(a.to_dense().numpy(), dense)
    assert px.tensor(dense).to_sparse_coo().is_sparse
    x = px.tensor(dense)
    assert (x.sparse_dim(), x.dense_dim()) == (0, 3)
    with pytest.raises(RuntimeError, match="expected sparse coordinate tensor layout"):
        x.coalesce()
    full = RNG.standard_normal((4, 5))
    same(px.tensor(full).sparse_mask(s), torch.tensor(full).sparse_mask(t.coalesce()))


def test_conversions_keep_the_pattern():
    idx, vals = random_pattern((3, 4), 5)
    s, t = pair(idx, vals, (3, 4))
    same(s.float(), t.float())
    same(s.to(px.float32), t.to(torch.float32))
    assert s.to("cpu") is s and s.cpu() is s and s.to_sparse() is s
    c = s.clone()
    assert c._values() is not s._values()
    same(c, t.clone())
    with pytest.raises(TypeError, match="Use Tensor.to_dense"):
        s.numpy()


# ---- products ---------------------------------------------------------------------------------
def _leaf_pair(shape, nnz, seed):
    idx, vals = random_pattern(shape, nnz, duplicates=False, seed=seed)
    lin = np.ravel_multi_index(tuple(idx), shape)
    _, keep = np.unique(lin, return_index=True)
    idx, vals = idx[:, np.sort(keep)], vals[np.sort(keep)]
    s = px.sparse_coo_tensor(px.tensor(idx), px.tensor(vals), shape).coalesce()
    t = torch.sparse_coo_tensor(torch.tensor(idx), torch.tensor(vals), shape).coalesce()
    return s.requires_grad_(), t.requires_grad_()


@pytest.mark.parametrize("spelling", ["sparse.mm", "mm", "matmul", "@", "spmm", "method"])
def test_sparse_times_dense_values_and_gradients(spelling):
    s, t = _leaf_pair((5, 4), 9, 1)
    d = RNG.standard_normal((4, 3))
    x, tx = px.tensor(d, requires_grad=True), torch.tensor(d, requires_grad=True)
    run = {"sparse.mm": lambda lib, a, b: lib.sparse.mm(a, b),
           "mm": lambda lib, a, b: lib.mm(a, b), "matmul": lambda lib, a, b: lib.matmul(a, b),
           "@": lambda lib, a, b: a @ b, "spmm": lambda lib, a, b: lib.spmm(a, b),
           "method": lambda lib, a, b: a.mm(b)}[spelling]
    y, ty = run(px, s, x), run(torch, t, tx)
    same(y, ty)
    w = RNG.standard_normal(y.shape)
    (y * px.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    assert s.grad.is_sparse
    # torch.sparse.mm keeps the pattern; torch.mm gives PyTorch a dense gradient, which on the
    # pattern is the same numbers
    expected = t.grad.to_dense().numpy() if t.grad.is_sparse else \
        (t.grad * (t.detach().to_dense() != 0)).numpy()
    np.testing.assert_allclose(s.grad.to_dense().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_dense_times_sparse_vectors_and_sparse_times_sparse():
    s, t = _leaf_pair((4, 5), 8, 2)
    d = RNG.standard_normal((3, 4))
    x, tx = px.tensor(d, requires_grad=True), torch.tensor(d, requires_grad=True)
    same(x @ s, tx @ t)
    same(px.mm(x, s), torch.mm(tx, t))
    (x @ s).sum().backward()
    (tx @ t).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    v = RNG.standard_normal(5)
    same(s @ px.tensor(v), t @ torch.tensor(v))
    u = RNG.standard_normal(4)
    same(px.tensor(u) @ s, torch.tensor(u) @ t)
    s2, t2 = _leaf_pair((5, 3), 6, 3)
    same(s @ s2, t @ t2)
    m = RNG.standard_normal((4, 2))
    dm = RNG.standard_normal((5, 2))
    same(px.addmm(px.tensor(m), s, px.tensor(dm), beta=0.5, alpha=2.0),
         torch.addmm(torch.tensor(m), t, torch.tensor(dm), beta=0.5, alpha=2.0))
    same(px.sparse.addmm(px.tensor(m), s, px.tensor(dm)),
         torch.sparse.addmm(torch.tensor(m), t, torch.tensor(dm)))


def test_products_refuse_what_does_not_fit():
    s, _ = _leaf_pair((4, 5), 6, 4)
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied \(4x5 and 4x2\)"):
        s @ px.ones(4, 2, dtype=px.float64)
    with pytest.raises(RuntimeError, match="same dtype.*float64 and phalanx.float32"):
        s @ px.ones(5, 2)
    with pytest.raises(NotImplementedError, match="reduce='mean'"):
        px.sparse.mm(s, px.ones(5, 2, dtype=px.float64), "mean")


def test_float64_gradient_checks():
    idx = np.array([[0, 1, 1, 3, 2], [2, 0, 3, 1, 1]])
    vals = px.tensor(RNG.standard_normal(5), requires_grad=True)
    d = px.tensor(RNG.standard_normal((4, 3)), requires_grad=True)

    def product(v, x):
        return px.sparse_coo_tensor(px.tensor(idx), v, (4, 4)) @ x

    def softmax(v):
        return px.sparse.softmax(px.sparse_coo_tensor(px.tensor(idx), v, (4, 4)), 1).to_dense()

    def through_dense(v, x):
        s = px.sparse_coo_tensor(px.tensor(idx), v, (4, 4))
        return (x.t() @ s).sum(0) + (s * x[:, 0]).to_dense().sum(1) + (px.eye(4) + s).sum(0)

    assert px.autograd.gradcheck(product, (vals, d))
    assert px.autograd.gradcheck(softmax, (vals,))
    assert px.autograd.gradcheck(through_dense, (vals, d))


# ---- arithmetic, reductions, softmax ----------------------------------------------------------
def test_addition_and_multiplication_match_pytorch():
    idx, vals = random_pattern((4, 5), 7)
    s, t = pair(idx, vals, (4, 5))
    idx2, vals2 = random_pattern((4, 5), 6, seed=5)
    s2, t2 = pair(idx2, vals2, (4, 5))
    d = RNG.standard_normal((4, 5))
    x, tx = px.tensor(d), torch.tensor(d)
    same(s + s2, t + t2)
    same(s - s2, t - t2)
    same(x + s, tx + t)
    same(x - s, tx - t)
    same(px.add(x, s, alpha=2), torch.add(tx, t, alpha=2))
    same(s * 2.5, t * 2.5)
    same(3 * s, 3 * t)
    same(s / 4, t / 4)
    same(-s, -t)
    same(s * x, t * tx)
    same(x * s, tx * t)
    same(s * px.tensor(d[0]), t * torch.tensor(d[0]))       # broadcast to the sparse shape
    # PyTorch also stores zeros where only one operand has an entry: compare the tensors
    assert (s * s2).is_sparse
    same((s * s2).to_dense(), (t * t2).to_dense())
    same(s.pow(2), t.pow(2))
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        s + x
    with pytest.raises(RuntimeError, match="does not currently support broadcasting"):
        px.ones(5) + s
    # an int64 adjacency plus a float identity, as graph scripts build it
    a, ta = pair([[0, 1], [1, 2]], [1, 1], (3, 3))
    same(px.eye(3) + a, torch.eye(3) + ta)


def test_gradients_flow_through_arithmetic_to_the_values():
    idx = np.array([[0, 1, 2, 2], [1, 0, 2, 0]])
    v = RNG.standard_normal(4)
    d = RNG.standard_normal((3, 3))
    pv, tv = px.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    px_, tx = px.tensor(d, requires_grad=True), torch.tensor(d, requires_grad=True)

    def run(lib, values, x):
        s = lib.sparse_coo_tensor(lib.tensor(idx), values, (3, 3))
        return ((x + s * 2) ** 2).sum() + (s * x).to_dense().sum() + lib.sparse.sum(s * s)

    run(px, pv, px_).backward()
    run(torch, tv, tx).backward()
    np.testing.assert_allclose(pv.grad.numpy(), tv.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(px_.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1), -1])
def test_sums_match_torch_sparse_sum(dim):
    idx, vals = random_pattern((4, 5), 9)
    s, t = pair(idx, vals, (4, 5))
    kw = {} if dim is None else {"dim": dim}
    same(px.sparse.sum(s, **kw), torch.sparse.sum(t, **kw))
    if dim is not None and not isinstance(dim, tuple):
        same(s.sum(dim), t.sum(dim))
        same(px.sum(s, dim), torch.sum(t, dim))
    idx, vals = random_pattern((4,), 6, dense=(3,))
    h, th = pair(idx, vals, (4, 3))
    for d in (0, 1, (0, 1)):
        same(px.sparse.sum(h, d), torch.sparse.sum(th, d))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape, dim", [((4, 5), 1), ((4, 5), 0), ((3, 4, 2), 2), ((3, 4, 2), 0)])
def test_softmax_over_the_specified_entries(shape, dim, log):
    idx, vals = random_pattern(shape, 10, seed=7)
    s, t = pair(idx, vals, shape)
    s.requires_grad_(), t.requires_grad_()
    fn = "log_softmax" if log else "softmax"
    y, ty = getattr(px.sparse, fn)(s, dim), getattr(torch.sparse, fn)(t, dim)
    same(y, ty)
    w = RNG.standard_normal(y.coalesce()._nnz())
    (y.coalesce().values() * px.tensor(w)).sum().backward()
    (ty.coalesce().values() * torch.tensor(w)).sum().backward()
    # the input is uncoalesced: compare its gradient summed onto the dense pattern
    np.testing.assert_allclose(s.grad.to_dense().numpy(), t.grad.to_dense().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_transpose_and_zero_preserving_functions():
    idx, vals = random_pattern((3, 4), 6)
    s, t = pair(idx, vals * 0.4, (3, 4))
    same(s.t(), t.t())
    same(s.T, t.T)
    same(px.transpose(s, 0, 1), torch.transpose(t, 0, 1))
    assert not s.coalesce().t().is_coalesced()
    from phalanx.tensor.sparse_coo import ZERO_PRESERVING
    for name in ZERO_PRESERVING:
        same(getattr(s, name)(), getattr(t, name)())
        same(getattr(px, name)(s), getattr(torch, name)(t))
    same(abs(s), abs(t))


def test_printing_matches_pytorch():
    s, t = pair([[0, 1, 1], [2, 0, 2]], [3.0, 4.0, 5.0], (2, 3))
    assert repr(s) == repr(t).replace("torch.", "phalanx.")
    s, t = pair([[0, 1, 1], [2, 0, 2]], np.array([3.0, 4.0, 5.0]), (2, 3), requires_grad=True)
    assert repr(s) == repr(t).replace("torch.", "phalanx.")


def test_dense_ops_refuse_a_sparse_tensor_by_name():
    s, _ = pair([[0, 1], [1, 0]], [1.0, 2.0], (2, 2))
    for op in (px.exp, lambda a: a.reshape(4), lambda a: a.exp(), lambda a: a[0],
               lambda a: px.softmax(a, 0)):
        with pytest.raises(NotImplementedError, match="not supported for sparse COO tensors.*"
                                                      r"\.to_dense\(\)"):
            op(s)


def test_a_sparse_leafs_gradient_keeps_its_pattern():
    s, t = _leaf_pair((3, 3), 5, 6)
    (s.to_dense() ** 2).sum().backward()
    (t.to_dense() ** 2).sum().backward()
    same(s.grad, t.grad)
    s.grad = None
    assert s.grad is None and s.is_leaf and s.requires_grad
    seen = []
    s.register_hook(lambda g: seen.append(g) or g * 2)
    (s.to_dense() * 3).sum().backward()
    assert seen[0].is_sparse and np.allclose(seen[0].coalesce().values().numpy(), 3)
    assert np.allclose(s.grad.values().numpy(), 6)
    d = s.detach()
    assert not d.requires_grad and d._indices() is not None


# ---- the dense fixes graph scripts needed ------------------------------------------------------
def test_diag_of_a_long_vector_is_not_cubic():
    v = px.ones(4000)
    d = px.diag(v)          # was a one-hot (n, n, n) product: 256 GB here
    assert tuple(d.shape) == (4000, 4000) and float(d.sum()) == 4000.0


def test_factories_take_size_by_keyword():
    for name in ("zeros", "ones", "empty", "rand", "randn"):
        assert tuple(getattr(px, name)(size=(2, 3)).shape) == \
            tuple(getattr(torch, name)(size=(2, 3)).shape)
    with pytest.raises(TypeError, match="both positionally and as size="):
        px.zeros(2, size=(3,))


def test_sparse_tensors_save_load_and_copy(tmp_path):
    s, t = _leaf_pair((4, 5), 6, 8)
    path = tmp_path / "graph.pt"
    px.save({"adjacency": s, "step": 3}, path)
    loaded = px.load(path)["adjacency"]
    assert loaded.is_sparse and loaded.is_coalesced() and loaded.requires_grad
    same(loaded, t)
    c = __import__("copy").deepcopy(s)
    assert c._values() is not s._values() and c.requires_grad
    same(c, t)
    assert s.contiguous() is s and s.is_contiguous()
    with pytest.raises(NotImplementedError, match="conversion to an array"):
        np.asarray(s._data)


def test_a_false_coalesced_claim_is_refused():
    with pytest.raises(RuntimeError, match="not sorted without repeats"):
        px.sparse_coo_tensor(px.tensor([[1, 0]]), px.tensor([1.0, 2.0]), (2,), is_coalesced=True)
    s = px.sparse_coo_tensor(px.tensor([[0, 1]]), px.tensor([1.0, 2.0]), (2,),
                             is_coalesced=True, check_invariants=False)
    assert s.is_coalesced()
