"""axis= and keepdims= wherever PyTorch takes dim= and keepdim= (functions and methods), and
not where it does not (nn.functional, which is Python in PyTorch too)."""
import numpy as np
import pytest
import torch

import phalanx as px

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 5

CALLS = [
    lambda L, x: x.sum(axis=1), lambda L, x: L.sum(x, axis=1, keepdims=True),
    lambda L, x: x.mean(axis=(0, 1)), lambda L, x: x.softmax(axis=0),
    lambda L, x: L.cat([x, x], axis=0), lambda L, x: L.stack([x, x], axis=1),
    lambda L, x: x.max(axis=1).values, lambda L, x: L.argmax(x, axis=1),
    lambda L, x: x.std(axis=0), lambda L, x: L.var(x, axis=1, keepdims=True),
    lambda L, x: x.unsqueeze(axis=0), lambda L, x: x.cumsum(axis=1),
    lambda L, x: L.logsumexp(x, axis=1), lambda L, x: x.prod(axis=0, keepdims=True),
    lambda L, x: L.all(x > 0.5, axis=1), lambda L, x: x.amax(axis=0),
]


@pytest.mark.parametrize("i", range(len(CALLS)))
def test_numpy_spellings_as_pytorch(i):
    ours = CALLS[i](px, px.tensor(X))
    theirs = CALLS[i](torch, torch.tensor(X))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_both_spellings_at_once_and_python_functions():
    for lib in (px, torch):
        x = lib.tensor(X)
        with pytest.raises(TypeError):
            x.sum(dim=0, axis=1)
        with pytest.raises(TypeError):
            lib.nn.functional.softmax(x, axis=1)
