"""In-place ops: version counter errors, leaves, views, and gradients through in-place writes."""
import numpy as np
import pytest
import torch

import phalanx as px


def _both(shape=(2, 3), seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return px.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


@pytest.mark.parametrize("modify", [
    lambda y: y.add_(1), lambda y: y.mul_(2), lambda y: y.zero_(), lambda y: y.fill_(1.0),
    lambda y: y.copy_(y.detach() * 2), lambda y: y.clamp_(0, 1),
    lambda y: y.__setitem__(0, 5.0), lambda y: y[0].mul_(3),
    lambda y: y.view(-1).add_(1), lambda y: y.data.add_(1),
])
def test_modifying_a_saved_tensor_raises(modify):
    x = px.randn(2, 3, requires_grad=True)
    y = x * 2
    z = y * y  # saves y
    with px.no_grad():
        modify(y)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*version"):
        z.sum().backward()


def test_modifying_an_unsaved_tensor_is_fine():
    x = px.ones(3, requires_grad=True)
    y = x * 2
    z = y + 1  # Add saves nothing
    y.add_(1)
    z.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_inplace_on_leaf_requiring_grad_raises():
    x = px.ones(3, requires_grad=True)
    for op in (lambda: x.add_(1), lambda: x.__setitem__(0, 1.0), lambda: x[0].mul_(2)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad.*no_grad"):
            op()
    with px.no_grad():
        x.add_(1)  # weight updates
    assert x.tolist() == [2.0, 2.0, 2.0] and x.is_leaf


def test_inplace_on_expanded_tensor_raises():
    with pytest.raises(RuntimeError, match="single memory location.*clone"):
        px.ones(3).expand(2, 3).add_(1)


def test_inplace_dtype_rules():
    x = px.zeros(2, dtype=px.int64)
    with pytest.raises(RuntimeError, match="can't be cast"):
        x.add_(1.5)
    with pytest.raises(RuntimeError, match="broadcast shape"):
        px.zeros(3).add_(px.ones(2, 3))


def _chain(lib, x):
    """Views and in-place writes mixed, differentiated through."""
    y = x * 1
    y[0] = y[1] * 2          # setitem through a view source
    y[:, 1:] += 1            # getitem view, in-place on it, setitem
    y.view(-1)[0].mul_(3)    # in-place through a reshape view of a view
    y.t()[2].add_(x[0])       # through a permute view
    y.masked_fill_(y > 5, 0.0)
    y.clamp_(max=4.0)
    z = y.sigmoid_()          # in-place op that saves its output
    return (z * x).sum()


def test_views_and_inplace_gradients_match_torch():
    p, t = _both((3, 3), seed=1)
    lp, lt = _chain(px, p), _chain(torch, t)
    np.testing.assert_allclose(lp.item(), lt.item(), rtol=1e-10)
    lp.backward()
    lt.backward()
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_inplace_into_a_buffer_that_needs_no_grad():
    w = px.tensor([1.0, 2.0], requires_grad=True)
    buf = px.zeros(4)
    buf[1:3].copy_(w * 3)
    buf.sum().backward()
    assert buf.requires_grad and w.grad.tolist() == [3.0, 3.0]


def test_view_sees_inplace_writes_and_version_is_shared():
    x = px.zeros(2, 3)
    v = x[0]
    x.add_(1)
    assert v.tolist() == [1.0, 1.0, 1.0] and v._version[0] == x._version[0] == 1
    r = x.reshape(6)
    r[0] = 7
    assert x[0, 0].item() == 7


def test_iteration_and_unbind_give_views_as_in_pytorch():
    """Rows from iterating or unbinding share memory with the tensor, 0-d ones of a 1-D tensor
    included: an in-place op on one shows in the tensor, as in PyTorch."""
    import torch
    for lib in (px, torch):
        t = lib.tensor([1.0, 2.0, 3.0])
        list(t)[0].add_(5)
        t.unbind(0)[2].mul_(10)
        m = lib.tensor([[1.0, 2.0], [3.0, 4.0]])
        m.unbind(1)[1].sub_(1)
        assert t.tolist() == [6.0, 2.0, 30.0] and m.tolist() == [[1.0, 1.0], [3.0, 3.0]]
    r = px.tensor([1.0, 2.0], requires_grad=True)
    sum(x * x for x in r).backward()
    assert r.grad.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("offset, dims", [(0, (0, 1)), (1, (0, 1)), (-1, (1, 0)),
                                          (0, (-2, -1)), (1, (0, 2))])
def test_diagonal_is_a_view_as_in_pytorch(offset, dims):
    """x.diagonal() shares x's memory: writes through it reach x (they used to land in a
    copy), and writes to x show in it; under autograd the gradient of a write through the
    view is PyTorch's."""
    seen = []
    for lib in (px, torch):
        shape = (3, 4) if dims[1] < 2 and dims != (-2, -1) else (2, 3, 4)
        base = lib.arange(float(np.prod(shape))).reshape(shape)
        x = (base * 1).requires_grad_()
        y = x * 2
        d = y.diagonal(offset, *dims)
        d.mul_(10).add_(1)                     # through the view, recorded
        weights = lib.arange(float(np.prod(shape))).reshape(shape)
        (y * weights).sum().backward()
        z = lib.zeros(shape)
        view = z.diagonal(offset, *dims)
        z.add_(1)                              # a write to the base shows in the view
        seen.append((y.tolist(), x.grad.tolist(), view.tolist(), view.shape))
    assert seen[0][:3] == seen[1][:3] and tuple(seen[0][3]) == tuple(seen[1][3])


def test_diagonal_of_a_leaf_that_requires_grad_is_refused_in_place():
    x = px.ones(3, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x.diagonal().fill_(0)
    with px.no_grad():
        x.diagonal().fill_(0)                  # as PyTorch: allowed without recording
    assert x.tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_diag_of_a_matrix_is_a_copy_as_in_pytorch():
    for lib in (px, torch):
        x = lib.zeros(3, 4)
        d = lib.diag(x, 1)
        d.fill_(1)
        assert x.sum().item() == 0 and d.tolist() == [1, 1, 1]
