"""`out=` on PyTorch's functions: the result lands in the given tensor (resized if needed, in
its dtype), the call returns that tensor, and autograd is refused, as in PyTorch."""
import inspect
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.tensor import out_param

A = np.arange(6, dtype=np.float32).reshape(2, 3) / 7 + 0.1
B = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)

CASES = {
    "add": lambda L: (L.tensor(A), L.tensor(B)),
    "sub": lambda L: (L.tensor(A), L.tensor(B)),
    "mul": lambda L: (L.tensor(A), L.tensor(B)),
    "div": lambda L: (L.tensor(A), L.tensor(B)),
    "pow": lambda L: (L.tensor(A), 2),
    "matmul": lambda L: (L.tensor(A), L.tensor(B).T),
    "mm": lambda L: (L.tensor(A), L.tensor(B).T),
    "exp": lambda L: (L.tensor(A),),
    "log": lambda L: (L.tensor(A),),
    "sqrt": lambda L: (L.tensor(A),),
    "tanh": lambda L: (L.tensor(B),),
    "sigmoid": lambda L: (L.tensor(B),),
    "clamp": lambda L: (L.tensor(B), -0.5, 0.5),
    "cat": lambda L: ([L.tensor(A), L.tensor(B)], 1),
    "stack": lambda L: ([L.tensor(A), L.tensor(B)],),
    "sum": lambda L: (L.tensor(A), 1),
    "mean": lambda L: (L.tensor(A), 0),
    "cumsum": lambda L: (L.tensor(A), 1),
    "maximum": lambda L: (L.tensor(A), L.tensor(B)),
    "where": lambda L: (L.tensor(B) > 0, L.tensor(A), L.tensor(B)),
    "tril": lambda L: (L.tensor(A),),
    "gather": lambda L: (L.tensor(A), 1, L.tensor([[0, 2], [1, 1]])),
    "index_select": lambda L: (L.tensor(A), 1, L.tensor([2, 0])),
    "zeros": lambda L: (2, 3),
    "ones": lambda L: (2, 3),
    "full": lambda L: ((2, 3), 1.5),
    "arange": lambda L: (0.0, 3.0, 0.5),
    "linspace": lambda L: (0.0, 1.0, 5),
    "eye": lambda L: (3,),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_result_lands_in_out_and_out_is_returned(name):
    results = []
    for lib in (px, torch):
        out = lib.empty(0)
        got = getattr(lib, name)(*CASES[name](lib), out=out)
        assert got is out
        results.append(out.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,args", [
    ("max", lambda L: (L.tensor(A), 1)), ("sort", lambda L: (L.tensor(B), 1)),
    ("topk", lambda L: (L.tensor(A), 2)), ("cummax", lambda L: (L.tensor(B), 1))])
def test_functions_with_two_results_fill_a_pair(name, args):
    results = []
    for lib in (px, torch):
        values, indices = lib.empty(0), lib.empty(0, dtype=lib.int64)
        got = getattr(lib, name)(*args(lib), out=(values, indices))
        assert got[0] is values and got[1] is indices and got.values is values
        results.append((values.numpy(), indices.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_out_keeps_its_dtype_and_is_resized_with_a_warning():
    for lib in (px, torch):
        ints = lib.zeros(0, dtype=lib.int64)
        lib.arange(3, out=ints)
        assert ints.dtype == lib.int64 and ints.tolist() == [0, 1, 2]     # empty: no warning
        doubles = lib.zeros(2, 3, dtype=lib.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lib.add(lib.tensor(A), 1.0, out=doubles)          # same shape: no warning
        assert doubles.dtype == lib.float64
        np.testing.assert_allclose(doubles.numpy(), A + 1.0, rtol=1e-6)
        full = lib.zeros(2, 3)
        with pytest.warns(UserWarning, match="was resized since it had shape \\[2, 3\\]"):
            lib.cat([lib.tensor(A), lib.tensor(A)], out=full)
        assert tuple(full.shape) == (4, 3)
        with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
            lib.exp(lib.tensor(A), out=lib.empty(2, 3, dtype=lib.int64))


def test_out_refuses_autograd():
    for lib in (px, torch):
        x = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match=r"exp\(\): functions with out=\.\.\. arguments "
                                               r"don't support automatic differentiation"):
            lib.exp(x, out=lib.empty(3))
        with lib.no_grad():
            out = lib.empty(3)
            lib.exp(x, out=out)
        assert not out.requires_grad and out.grad_fn is None


def test_every_listed_function_takes_out():
    listed = [name for name in out_param.NAMES if hasattr(px, name)]
    assert len(listed) > 200
    for name in listed:
        assert "out" in inspect.signature(getattr(px, name)).parameters, name
