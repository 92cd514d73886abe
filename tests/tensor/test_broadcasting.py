"""Property tests: broadcasting binary ops agree with PyTorch on random shapes (values and
gradients, which exercises `unbroadcast`)."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import phalanx as px

OPS = {
    "add": lambda m, x, y: x + y,
    "sub": lambda m, x, y: x - y,
    "mul": lambda m, x, y: x * y,
    "div": lambda m, x, y: x / (y * y + 1),
    "maximum": lambda m, x, y: m.maximum(x, y),
    "where": lambda m, x, y: m.where(x > y, x, y * 2),
    "pow": lambda m, x, y: (x * x + 1) ** y,
    "matmul_rows": lambda m, x, y: (x.unsqueeze(-1) * y.unsqueeze(-1)).sum(-1),
}

SHAPES = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0,
                                       max_side=3)


@settings(max_examples=60, deadline=None)
@given(shapes=SHAPES, op=st.sampled_from(sorted(OPS)), seed=st.integers(0, 2 ** 16))
def test_broadcasting_binary_ops_match_torch(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes.input_shapes)
    px_in = [px.tensor(v, requires_grad=True) for v in (a, b)]
    th_in = [torch.tensor(v, requires_grad=True) for v in (a, b)]
    p, t = OPS[op](px, *px_in), OPS[op](torch, *th_in)
    assert tuple(p.shape) == tuple(t.shape) == shapes.result_shape
    np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(shapes.result_shape)
    p.backward(px.tensor(w))
    t.backward(torch.tensor(w))
    for pi, ti in zip(px_in, th_in):
        assert tuple(pi.grad.shape) == tuple(ti.shape)
        np.testing.assert_allclose(pi.grad.numpy(), ti.grad.numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
def test_broadcast_to_and_tensors(shapes):
    xs = [px.ones(s) for s in shapes.input_shapes]
    outs = px.broadcast_tensors(*xs)
    assert all(tuple(o.shape) == shapes.result_shape for o in outs)
    assert tuple(px.broadcast_to(xs[0], shapes.result_shape).shape) == shapes.result_shape
