"""repr() of tensors against PyTorch's, character for character: wrapping to the line width,
suffixes on their own line when they do not fit, summaries ('...') formatted from the values
shown, empty tensors with their size, complex, bool, int and scientific notation, and every
print option."""
import numpy as np
import pytest
import torch

import phalanx as px


def _cases():
    rng = np.random.default_rng(5)
    cases = [np.arange(30.), np.arange(10.) / 3 - 2.5, np.zeros((0, 3)), np.zeros(0),
             np.zeros((2, 0), np.int64), np.array(3.5), np.array(7),
             np.array([np.inf, -np.inf, np.nan, 1.0]), np.array([1e-8, 1.0]),
             np.array([[2.2959, -0.1576, 0.0227, -0.7878, -0.7270, 1.4646, -0.5732]]),
             np.array([1. + 2j, -3.5 - 0.25j]),
             rng.standard_normal((2, 784)).astype(np.float32) * 0.035,
             rng.standard_normal(2000).astype(np.float32),
             rng.standard_normal((40, 40)).astype(np.float32), rng.integers(0, 10, (50, 50)),
             np.array([True, False]), np.float32([0., 0., 0.]), np.float32([1e10, 1.]),
             np.float32([100., 1.]), np.float32([1000., 1.]), np.float32([12345.5, 1.])]
    for n in range(3, 60, 8):
        cases += [rng.standard_normal(n).astype(np.float32), rng.integers(-1000, 1000, n),
                  rng.standard_normal((2, n)).astype(np.float32) * 100,
                  rng.standard_normal(n) > 0, rng.standard_normal(n) * 1e-5,
                  rng.standard_normal((3, 2, n)).astype(np.float32),
                  (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)]
    return cases


CASES = _cases()


def _same(array, **kwargs):
    ours = repr(px.tensor(array, **kwargs))
    theirs = repr(torch.tensor(array, **kwargs)).replace("torch.", "phalanx.")
    assert ours == theirs


@pytest.mark.parametrize("i", range(len(CASES)))
def test_prints_as_pytorch(i):
    _same(CASES[i])
    if CASES[i].dtype.kind in "fc":
        _same(CASES[i], requires_grad=True)


@pytest.mark.parametrize("options", [dict(precision=2), dict(linewidth=60),
                                     dict(sci_mode=True), dict(sci_mode=False),
                                     dict(threshold=20, edgeitems=2), dict(profile="short"),
                                     dict(profile="full")])
def test_print_options_as_pytorchs(options):
    px.set_printoptions(**options)
    torch.set_printoptions(**options)
    try:
        for array in CASES:
            _same(array)
    finally:
        px.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")


@pytest.mark.parametrize("call", [
    lambda L, x: L.max(x, 1), lambda L, x: L.min(x, 0), lambda L, x: L.sort(x),
    lambda L, x: L.topk(x, 1), lambda L, x: L.cummax(x, 1), lambda L, x: L.aminmax(x),
    lambda L, x: L.median(x, 0), lambda L, x: L.kthvalue(x, 1), lambda L, x: L.svd(x),
    lambda L, x: L.linalg.svd(x), lambda L, x: L.linalg.eigh(x), lambda L, x: L.linalg.qr(x),
    lambda L, x: L.qr(x), lambda L, x: L.linalg.lu_factor(x), lambda L, x: L.linalg.eig(x)])
def test_results_with_several_tensors_print_as_pytorchs(call):
    x = np.array([[4.0, 1.0], [1.0, 3.0]])
    ours, theirs = call(px, px.tensor(x)), call(torch, torch.tensor(x))
    assert type(ours).__name__ == type(theirs).__name__
    assert repr(ours).replace("phalanx.", "torch.") == \
        repr(theirs).replace("phalanx.", "torch.").replace("-0.0000", " 0.0000")
    assert getattr(px.return_types, type(ours).__name__) is type(ours)
