"""Hooks on saved tensors (`autograd.graph.saved_tensors_hooks`, `save_on_cpu`,
`disable_saved_tensors_hooks`, `grad_fn._saved_*` / `_raw_saved_*`), against PyTorch."""
import threading

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F


def _packed_values(lib, op, *shapes):
    """The values `op` hands to the pack hook, in order, and the gradients it then gives."""
    rng = np.random.default_rng(0)
    inputs = [lib.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    packed, unpacked = [], []

    def pack(t):
        packed.append(t.detach().numpy().copy())
        return t

    def unpack(t):
        unpacked.append(1)
        return t

    with lib.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = op(lib, *inputs)
    out.sum().backward()
    assert len(unpacked) == len(packed)
    return packed, [t.grad.numpy() for t in inputs]


@pytest.mark.parametrize("op,shapes", [
    (lambda lib, a, b: a * b, [(3,), (3,)]),
    (lambda lib, a: lib.exp(a), [(4,)]),
    (lambda lib, a: lib.pow(a, 2), [(4,)]),
    (lambda lib, a: lib.relu(a), [(5,)]),
    (lambda lib, a: lib.tanh(a), [(5,)]),
    (lambda lib, a, b: a / b, [(3,), (3,)]),
], ids=["mul", "exp", "pow_scalar", "relu", "tanh", "div"])
def test_the_pack_hook_sees_what_pytorch_saves(op, shapes):
    got, grads = _packed_values(px, op, *shapes)
    want, want_grads = _packed_values(torch, op, *shapes)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def _model():
    px.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(),
                         nn.LayerNorm(5), nn.Linear(5, 2)).double()


def _grads(model, x, hooks=None):
    model.zero_grad()
    if hooks is None:
        loss = F.cross_entropy(model(x), px.tensor([0, 1]))
    else:
        with hooks:
            loss = F.cross_entropy(model(x), px.tensor([0, 1]))
    loss.backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def test_hooks_that_change_the_stored_form_give_the_same_gradients():
    model, x = _model(), px.randn(2, 2, 8, 8, dtype=px.float64)
    plain = _grads(model, x)
    calls = {"pack": 0, "unpack": 0}
    dtypes = set()

    def pack(t):
        calls["pack"] += 1
        assert isinstance(t, px.Tensor)
        dtypes.add(t.dtype)
        return ("scaled", t.detach() * 4) if t.is_floating_point() else ("kept", t)

    def unpack(packed):
        calls["unpack"] += 1
        return packed[1] / 4 if packed[0] == "scaled" else packed[1]

    hooked = _grads(model, x, px.autograd.graph.saved_tensors_hooks(pack, unpack))
    for a, b in zip(plain, hooked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert calls["unpack"] == calls["pack"] >= 9
    # the max-pool's window indices, kept by the op as an array, reach the hooks as a tensor
    assert any(not d.is_floating_point for d in dtypes), dtypes
    before = dict(calls)
    _grads(model, x)                  # outside the context nothing is packed
    assert calls == before


def test_saving_to_disk_as_the_tutorial_does(tmp_path):
    """The tutorial's pack hook writes each saved tensor to a file and unpacks by loading it:
    every saved tensor (the max-pool indices and batch-norm statistics included) takes the
    trip and the gradients are unchanged."""
    model, x = _model(), px.randn(2, 2, 8, 8, dtype=px.float64)
    plain = _grads(model, x)
    files = []

    def pack(t):
        name = tmp_path / f"{len(files)}.pt"
        px.save(t.detach(), name)
        files.append(name)
        return name

    def unpack(name):
        return px.load(name)

    hooked = _grads(model, x, px.autograd.graph.saved_tensors_hooks(pack, unpack))
    for a, b in zip(plain, hooked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert len(files) >= 9


def test_save_on_cpu_keeps_gradients():
    model, x = _model(), px.randn(2, 2, 8, 8, dtype=px.float64)
    plain = _grads(model, x)
    for pin in (False, True):
        hooked = _grads(model, x, px.autograd.graph.save_on_cpu(pin_memory=pin))
        for a, b in zip(plain, hooked):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_nothing_is_packed_when_no_gradient_is_recorded():
    packed = []
    with px.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        px.exp(px.randn(3))                          # no input requires grad
        with px.no_grad():
            px.exp(px.randn(3, requires_grad=True))
    assert packed == []


def test_custom_functions_are_packed_too():
    class Square(px.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * x * g

    log = []
    x = px.tensor([1.0, 2.0], requires_grad=True)
    with px.autograd.graph.saved_tensors_hooks(lambda t: log.append("pack") or t * 4,
                                               lambda t: log.append("unpack") or t / 4):
        y = Square.apply(x)
    y.sum().backward()
    assert log == ["pack", "unpack"] and x.grad.tolist() == [2.0, 4.0]


def test_saved_tensors_named_as_in_pytorch():
    for lib in (px, torch):
        a = lib.randn(5, requires_grad=True)
        b = lib.ones(5, requires_grad=True)
        y = a * b
        assert y.grad_fn._saved_self is a and y.grad_fn._saved_other is b
        y = lib.exp(a)
        assert y.grad_fn._saved_result.equal(y) and y.grad_fn._saved_result is not y
        y = a.tanh()
        assert y.grad_fn._saved_result.equal(y)
        with pytest.raises(AttributeError):
            y.grad_fn._saved_nothing_like_this


def test_reading_saved_tensors_after_backward_says_why():
    for lib in (px, torch):
        x = lib.randn(3, requires_grad=True)
        y = x.pow(2)
        y.sum().backward()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.grad_fn._saved_self
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            y = x.pow(2)
        y.sum().backward()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.sum().backward()


def test_register_hooks_on_one_saved_tensor():
    for lib in (px, torch):
        log = []
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x.pow(2)
        y.grad_fn._raw_saved_self.register_hooks(lambda t: log.append("pack") or t * 10,
                                                 lambda t: log.append("unpack") or t / 10)
        assert log == ["pack"]                            # packed at once
        with pytest.raises(RuntimeError, match="already been set"):
            y.grad_fn._raw_saved_self.register_hooks(lambda t: t, lambda t: t)
        y.sum().backward()
        assert log == ["pack", "unpack"] and x.grad.tolist() == [2.0, 4.0, 6.0]


def test_a_packed_copy_is_the_hooks_business():
    """Without hooks an in-place change of a saved tensor is caught; with hooks the saved
    value is whatever pack made of it (here a copy, which keeps the value at save time), and
    PyTorch checks nothing."""
    for lib in (px, torch):
        a = lib.tensor([0.5, 1.0, 2.0], requires_grad=True)
        b = a * 1
        c = b.sin()                        # saves its input
        b.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            c.sum().backward()
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
            b = a * 1
            c = b.sin()
        b.add_(1)
        c.sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), np.cos([0.5, 1.0, 2.0]), rtol=1e-6)


def test_pack_hooks_may_not_change_their_input():
    for lib in (px, torch):
        a = lib.randn(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="(?i)pack hook is modifying its input in place"):
            with lib.autograd.graph.saved_tensors_hooks(lambda t: t.mul_(2) if not t.is_leaf
                                                        else t.detach().mul_(2), lambda t: t):
                (a * 1).exp()


def test_unpack_must_return_a_tensor():
    for lib in (px, torch):
        a = lib.randn(3, requires_grad=True)
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t.tolist()):
            y = a.exp()
        with pytest.raises(TypeError, match="expected to be a Tensor"):
            y.sum().backward()


def test_disable_saved_tensors_hooks():
    for lib in (px, torch):
        graph = lib.autograd.graph
        with graph.disable_saved_tensors_hooks("no hooks in this region"):
            with pytest.raises(RuntimeError, match="no hooks in this region"):
                with graph.saved_tensors_hooks(lambda t: t, lambda t: t):
                    pass
            with pytest.raises(RuntimeError, match="no hooks in this region"):
                with graph.save_on_cpu():
                    pass
        with graph.saved_tensors_hooks(lambda t: t, lambda t: t):   # allowed again after
            pass


def test_hooks_belong_to_the_thread_that_set_them():
    packed = []
    errors = []
    x = px.randn(3, requires_grad=True)

    def other_thread():
        try:
            px.exp(x).sum().backward()
        except Exception as e:        # pragma: no cover - reported below
            errors.append(e)

    with px.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert packed == []
        px.exp(x)
        assert len(packed) == 1
    assert errors == []
