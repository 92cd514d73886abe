"""`as_strided` / `as_strided_scatter` against PyTorch: values, gradients (overlapping windows
add up), a float64 gradient check, and the cases Phalanx refuses."""
import numpy as np
import pytest
import torch

import phalanx as px


@pytest.mark.parametrize("shape, size, stride, offset", [
    ((3, 4), (3, 3), (4, 1), 1),              # a sub-block
    ((10,), (4, 3), (2, 1), None),            # overlapping sliding windows
    ((2, 3, 4), (2, 2, 2, 2), (12, 4, 4, 1), 0),   # repeated rows (stride 4 twice)
    ((6,), (2, 3), (1, 2), 0),                # a transposed read
    ((5,), (0,), (1,), None),                 # empty
])
def test_as_strided_matches_pytorch(shape, size, stride, offset):
    data = np.random.default_rng(0).standard_normal(shape)
    x, t = px.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    kw = {} if offset is None else {"storage_offset": offset}
    y, ty = x.as_strided(size, stride, **kw), t.as_strided(size, stride, **kw)
    np.testing.assert_array_equal(y.detach().numpy(), ty.detach().numpy())
    w = np.random.default_rng(1).standard_normal(size)
    (y * px.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    assert px.autograd.gradcheck(lambda a: px.as_strided(a, size, stride, *(
        () if offset is None else (offset,))), (px.tensor(data, requires_grad=True),))


def test_a_contiguous_view_counts_from_its_storage_offset():
    base = np.arange(10.0)
    x, t = px.tensor(base)[2:], torch.tensor(base)[2:]
    np.testing.assert_array_equal(x.as_strided((3,), (2,)).numpy(),
                                  t.as_strided((3,), (2,)).numpy())
    np.testing.assert_array_equal(x.as_strided((2,), (1,), 4).numpy(),
                                  t.as_strided((2,), (1,), 4).numpy())


def test_as_strided_scatter_matches_pytorch():
    src = np.random.default_rng(2).standard_normal((2, 2))
    for size, stride, offset in [((2, 2), (3, 1), 0), ((2, 2), (1, 4), 1)]:
        ours = px.as_strided_scatter(px.zeros(8, dtype=px.float64), px.tensor(src), size,
                                     stride, offset)
        theirs = torch.as_strided_scatter(torch.zeros(8, dtype=torch.float64),
                                          torch.tensor(src), size, stride, offset)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_refusals_name_the_problem():
    x = px.arange(12.0).reshape(3, 4)
    with pytest.raises(RuntimeError, match="outside the tensor's 12 elements"):
        x.as_strided((3, 4), (4, 2))
    with pytest.raises(RuntimeError, match="mismatch in length"):
        x.as_strided((3, 4), (4,))
    with pytest.raises(NotImplementedError, match="contiguous"):
        x.t().as_strided((2,), (1,))
    with pytest.raises(RuntimeError, match="src to have a size equal"):
        px.as_strided_scatter(px.zeros(6), px.ones(3), (2, 2), (3, 1))
