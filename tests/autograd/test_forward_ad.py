"""Forward-mode AD (`autograd.forward_ad`, `func.jvp`) against PyTorch's on the same inputs."""
import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as tfw
import torch.func as tfunc

import phalanx as px
import phalanx.autograd.forward_ad as fw
import phalanx.func as func
import phalanx.nn.functional as F

RNG = np.random.default_rng(0)
X, V = RNG.standard_normal((2, 3, 6, 6)), RNG.standard_normal((2, 3, 6, 6))
W = RNG.standard_normal((4, 3, 3, 3))

FUNCTIONS = {   # name -> f(lib, functional, x): the same program in both libraries
    "elementwise": lambda lib, Fn, x: (x.sin() * x.exp() + x ** 3).tanh(),
    "conv, relu, pool": lambda lib, Fn, x: Fn.max_pool2d(Fn.relu(Fn.conv2d(x, lib.tensor(W))), 2),
    "softmax over a product": lambda lib, Fn, x: Fn.softmax(x.reshape(2, -1) @
                                                          x.reshape(2, -1).T, -1),
    "layer norm": lambda lib, Fn, x: Fn.layer_norm(x, (6, 6)),
    "cross entropy": lambda lib, Fn, x: Fn.cross_entropy(x.reshape(6, 36),
                                                         lib.tensor([0, 5, 3, 7, 1, 2])),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_dual_tensors_carry_pytorchs_tangents(name):
    f = FUNCTIONS[name]
    with fw.dual_level():
        out = f(px, F, fw.make_dual(px.tensor(X), px.tensor(V)))
        primal, tangent = fw.unpack_dual(out)
    with tfw.dual_level():
        t_out = f(torch, torch.nn.functional, tfw.make_dual(torch.tensor(X), torch.tensor(V)))
        t_primal, t_tangent = tfw.unpack_dual(t_out)
    np.testing.assert_allclose(primal.detach().numpy(), t_primal.numpy(), rtol=1e-10)
    np.testing.assert_allclose(tangent.detach().numpy(), t_tangent.numpy(), rtol=1e-8,
                               atol=1e-10)


def test_two_duals_an_independent_output_and_the_dual_itself():
    a, b = px.tensor([1.0, 2.0]), px.tensor([3.0, -1.0])
    with fw.dual_level():
        da = fw.make_dual(a, px.tensor([1.0, 0.0]))
        db = fw.make_dual(b, px.tensor([0.0, 2.0]))
        assert fw.unpack_dual(da).tangent.numpy().tolist() == [1.0, 0.0]
        assert fw.unpack_dual(da * db).tangent.numpy().tolist() == [3.0, 4.0]  # tb a + ta b
        assert fw.unpack_dual(px.ones(2) * 2).tangent is None
    with pytest.raises(RuntimeError, match="dual level"):
        fw.make_dual(a, a)
    # once the level has closed, a result has no tangent any more (PyTorch's answer)
    with fw.dual_level():
        out = fw.make_dual(a, px.ones(2)) * 2
    assert fw.unpack_dual(out).tangent is None and fw.unpack_dual(out).primal is out
    with fw.dual_level():
        with pytest.raises(RuntimeError, match="different size"):
            fw.make_dual(a, px.ones(3))
        with pytest.raises(ValueError, match="floating point"):
            fw.make_dual(px.tensor([1, 2]), px.ones(2))


def test_func_jvp_matches_torch_func():
    x, y = RNG.standard_normal(5), RNG.standard_normal(5)
    tx, ty = RNG.standard_normal(5), RNG.standard_normal(5)

    def f(lib):
        return lambda a, b: ((a * b).sin(), {"norm": (a ** 2).sum()})
    ours = func.jvp(f(px), (px.tensor(x), px.tensor(y)), (px.tensor(tx), px.tensor(ty)))
    theirs = tfunc.jvp(f(torch), (torch.tensor(x), torch.tensor(y)),
                       (torch.tensor(tx), torch.tensor(ty)))
    for o, t in zip(func._leaves(ours), func._leaves(theirs)):
        np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-10)
    value, pushed, aux = func.jvp(lambda a: (a.exp(), "aux"), (px.tensor(x),),
                                  (px.tensor(tx),), has_aux=True)
    assert aux == "aux" and np.allclose(pushed.numpy(), np.exp(x) * tx)
    assert func.jvp(lambda a: px.ones(2), (px.tensor(x),), (px.tensor(tx),))[1].numpy() \
        .tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="independent of the inputs"):
        func.jvp(lambda a: px.ones(2), (px.tensor(x),), (px.tensor(tx),), strict=True)
    with pytest.raises(RuntimeError, match="Expected primals to be a tuple"):
        func.jvp(lambda a: a, px.tensor(x), (px.tensor(tx),))


def test_jvp_of_grad_is_a_hessian_vector_product():
    x, v = RNG.standard_normal(4), RNG.standard_normal(4)

    def f(a):
        return (a.sin() * a.sum()).sum()
    _, hvp = func.jvp(func.grad(f), (px.tensor(x),), (px.tensor(v),))
    _, t_hvp = tfunc.jvp(tfunc.grad(f), (torch.tensor(x),), (torch.tensor(v),))
    np.testing.assert_allclose(hvp.numpy(), t_hvp.numpy(), rtol=1e-10)


def test_multithreading_switch_applies_at_once_and_restores():
    """`autograd.set_multithreading_enabled`: backward runs on the calling thread either way
    (the same gradients); the mode reads back as set, and a block restores it."""
    from phalanx.autograd import is_multithreading_enabled, set_multithreading_enabled
    x = px.tensor([1.0, 2.0], requires_grad=True)
    with set_multithreading_enabled(False):
        assert not is_multithreading_enabled()
        (x ** 2).sum().backward()
    assert is_multithreading_enabled() and x.grad.numpy().tolist() == [2.0, 4.0]
