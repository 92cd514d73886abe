"""Gradient homes: a backward-start hook offers arrays where leaves' gradients should land (how
DDP gets gradients computed straight into its buckets); the engine passes them to the node that
computes the gradient (`ctx.gradient_buffer`) only where that is safe."""
import numpy as np
import pytest

import phalanx as px
import phalanx.nn.functional as F


@pytest.fixture
def offer():
    """offer(homes): make every following backward offer {leaf: array}."""
    handles = []

    def start(homes):
        handles.append(px.autograd.register_backward_start_hook(lambda leaves: homes))
    yield start
    for h in handles:
        h.remove()


def layer(seed=0):
    rng = np.random.default_rng(seed)
    x = px.tensor(rng.standard_normal((5, 4)))
    w = px.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = px.tensor(rng.standard_normal(3), requires_grad=True)
    return x, w, b


def reference_grads(loss_fn):
    x, w, b = layer()
    loss_fn(x, w, b).backward()
    return w.grad.numpy(), b.grad.numpy()


class Home(np.ndarray):
    """A gradient home that counts the copies into it (a node writing there is not one)."""
    copies = 0

    def __setitem__(self, key, value):
        Home.copies += 1
        super().__setitem__(key, value)


def homes_for(*leaves):
    Home.copies = 0
    return {t: np.full(t.shape, np.nan).view(Home) for t in leaves}


def linear_loss(x, w, b):
    return (F.linear(x, w, b) ** 2).sum()


def test_linear_computes_its_gradients_in_their_homes(offer):
    x, w, b = layer()
    homes = homes_for(w, b)
    offer(homes)
    linear_loss(x, w, b).backward()
    assert w.grad._data is homes[w] and b.grad._data is homes[b]
    assert Home.copies == 0
    for got, want in zip((w.grad, b.grad), reference_grads(linear_loss)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


@pytest.mark.parametrize("case", ["used twice", "has a gradient", "tensor hook",
                                  "create_graph", "wrong shape"])
def test_homes_are_not_used_where_unsafe(offer, case):
    """Where the node cannot simply write the one gradient of the leaf, the home stays
    untouched and the gradient is what it would be without an offer."""
    x, w, b = layer()
    homes = homes_for(w, b)
    if case == "wrong shape":
        homes = {w: np.full((4, 3), np.nan), b: np.full((1, 3), np.nan)}
    offer(homes)
    loss_fn = linear_loss
    if case == "used twice":
        def loss_fn(x, w, b):
            return linear_loss(x, w, b) + linear_loss(2 * x, w, b)
    if case == "has a gradient":
        w.grad, b.grad = px.ones(3, 4, dtype=px.float64), px.ones(3, dtype=px.float64)
    if case == "tensor hook":
        w.register_hook(lambda g: g * 2)
        b.register_hook(lambda g: g * 2)
    loss_fn(x, w, b).backward(create_graph=case == "create_graph")
    assert np.all(np.isnan(homes[w])) and np.all(np.isnan(homes[b]))
    want_w, want_b = reference_grads(loss_fn)
    if case == "has a gradient":
        want_w, want_b = want_w + 1, want_b + 1
    if case == "tensor hook":
        want_w, want_b = 2 * want_w, 2 * want_b
    np.testing.assert_allclose(w.grad.detach().numpy(), want_w, rtol=1e-14)
    np.testing.assert_allclose(b.grad.detach().numpy(), want_b, rtol=1e-14)


def test_a_gradient_computed_elsewhere_is_moved_into_its_home(offer):
    x, w, b = layer()
    homes = homes_for(w, b)
    offer(homes)

    def composite(x, w, b):      # matmul, transpose and add: nodes that ignore the offer
        return ((x @ w.T + b) ** 2).sum()
    composite(x, w, b).backward()
    assert w.grad._data is homes[w] and b.grad._data is homes[b]
    assert Home.copies == 2
    for got, want in zip((w.grad, b.grad), reference_grads(linear_loss)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


def test_a_retained_graph_runs_again_without_the_homes(offer):
    x, w, b = layer()
    homes = homes_for(w, b)
    handle = px.autograd.register_backward_start_hook(lambda leaves: homes)
    loss = linear_loss(x, w, b)
    loss.backward(retain_graph=True)
    handle.remove()
    first = homes[w].copy()
    w.grad = b.grad = None
    loss.backward()
    assert w.grad._data is not homes[w]
    np.testing.assert_array_equal(homes[w], first)
    np.testing.assert_allclose(w.grad.numpy(), first, rtol=1e-14)
