"""phalanx.testing.assert_close and make_tensor: the same verdicts as torch.testing on the
same pairs, and PyTorch's default tolerances per dtype."""
import numpy as np
import pytest
import torch

import phalanx as px

CASES = [
    (lambda L: (L.tensor([1.0, 2.0]), L.tensor([1.0, 2.0 + 1e-7])), {}),
    (lambda L: (L.tensor([1.0, 2.0]), L.tensor([1.0, 2.1])), {}),
    (lambda L: (L.tensor([1.0, 2.0]), L.tensor([1.0, 2.1])), {"rtol": 0.1, "atol": 0}),
    (lambda L: (L.tensor([1, 2]), L.tensor([1.0, 2.0])), {}),
    (lambda L: (L.tensor([1, 2]), L.tensor([1.0, 2.0])), {"check_dtype": False}),
    (lambda L: (L.tensor([1.0]), L.tensor([1.0, 2.0])), {}),
    (lambda L: (L.tensor([float("nan")]), L.tensor([float("nan")])), {}),
    (lambda L: (L.tensor([float("nan")]), L.tensor([float("nan")])), {"equal_nan": True}),
    (lambda L: ({"a": [L.tensor(1.0)]}, {"a": [L.tensor(1.0)]}), {}),
    (lambda L: ({"a": [L.tensor(1.0)]}, {"b": [L.tensor(1.0)]}), {}),
    (lambda L: ((1, 2.0), (1, 2.0)), {}),
    (lambda L: (L.tensor([1.0], dtype=L.float32), L.tensor([1.00001], dtype=L.float32)), {}),
    (lambda L: (L.tensor([1.0], dtype=L.float32), L.tensor([1.0001], dtype=L.float32)), {}),
    (lambda L: (L.tensor([1.0], dtype=L.float16), L.tensor([1.001], dtype=L.float16)), {}),
    (lambda L: (L.tensor([3, 4]), L.tensor([3, 5])), {}),
]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_same_verdict_as_torch(index):
    make, kwargs = CASES[index]
    verdicts = []
    for lib, testing in ((torch, torch.testing), (px, px.testing)):
        actual, expected = make(lib)
        try:
            testing.assert_close(actual, expected, **kwargs)
            verdicts.append("close")
        except AssertionError:
            verdicts.append("not close")
    assert verdicts[0] == verdicts[1]


def test_messages_and_argument_checks():
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 2 \(50.0%\)"):
        px.testing.assert_close(px.tensor([1.0, 2.0]), px.tensor([1.0, 3.0]))
    with pytest.raises(AssertionError, match="custom"):
        px.testing.assert_close(px.tensor([1.0]), px.tensor([2.0]), msg="custom")
    with pytest.raises(ValueError, match="rtol"):
        px.testing.assert_close(px.tensor([1.0]), px.tensor([1.0]), rtol=1e-3)


def test_make_tensor():
    t = px.testing.make_tensor(3, 4, dtype=px.float32, low=-1, high=1)
    assert t.shape == (3, 4) and t.dtype is px.float32
    assert float(t.abs().max().item()) <= 1
    i = px.testing.make_tensor((50,), dtype=px.int64, exclude_zero=True)
    assert (i.numpy() != 0).all() and i.numpy().min() >= -9 and i.numpy().max() < 10
    assert px.testing.make_tensor(2, dtype=px.float64, requires_grad=True).requires_grad
    with pytest.raises(NotImplementedError, match="noncontiguous"):
        px.testing.make_tensor(2, dtype=px.float32, noncontiguous=True)
    assert np.isin(px.testing.make_tensor(20, dtype=px.bool).numpy(), [True, False]).all()
