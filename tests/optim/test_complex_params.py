"""Optimizers on complex parameters step the real and imaginary parts as two real numbers, as
PyTorch's do (its `view_as_real` inside each algorithm): compared step by step with PyTorch."""
import numpy as np
import pytest
import torch

import phalanx as px

CASES = [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {}), ("AdamW", {"weight_decay": 0.1}),
         ("Adam", {"amsgrad": True}), ("RMSprop", {"momentum": 0.9, "centered": True}),
         ("Adagrad", {}), ("Adamax", {}), ("NAdam", {}), ("RAdam", {}), ("Adadelta", {}),
         ("ASGD", {}), ("Rprop", {})]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}{o}" for n, o in CASES])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_parameter_trajectory_matches_pytorch(name, options, dtype):
    rng = np.random.default_rng(0)
    start = (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(dtype)
    ours, theirs = px.tensor(start, requires_grad=True), torch.tensor(start, requires_grad=True)
    opts = (getattr(px.optim, name)([ours], **options),
            getattr(torch.optim, name)([theirs], **options))
    for _ in range(6):
        for p, opt in zip((ours, theirs), opts):
            opt.zero_grad()
            ((p * p.conj()).real.sum() + (p ** 3).abs().sum()).backward()
            opt.step()
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=tol,
                               atol=tol)
    assert ours.dtype.is_complex and ours.grad.dtype.is_complex     # nothing left as pairs
    for key, value in opts[0].state[ours].items():
        if isinstance(value, px.Tensor) and value.ndim:
            assert value.shape == ours.shape, key


def test_complex_linear_layer_gradients_match_pytorch():
    """nn.Linear with complex weights (through the composed, conjugating path)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 3)) + 1j * rng.standard_normal((5, 3))).astype(np.complex128)
    w = (rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))).astype(np.complex128)
    b = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex128)
    grads = []
    for lib in (px, torch):
        xs, ws, bs = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
        out = lib.nn.functional.linear(xs, ws, bs)
        (out * out.conj()).real.sum().backward()
        grads.append([t.grad.detach().numpy() for t in (xs, ws, bs)] + [out.detach().numpy()])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
