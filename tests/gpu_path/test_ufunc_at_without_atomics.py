"""`backend.ufunc_at`: `xp.<op>.at` with repeated indices combined, on every dtype and op.

CuPy's `ufunc.at` runs on atomics that exist for some ops and dtypes only (CuPy 14: no
`multiply.at`; `maximum.at`/`minimum.at` not on float16; `add.at` not on 8/16-bit integers,
bool or complex), so scatter_reduce(prod), amax/amin on float16 and index_add on int8 would
fail on a GPU. The others go through `scan_at`, written with array operations only: here it
runs on NumPy arrays and must equal NumPy's unbuffered `ufunc.at` exactly (small integers, so
the order of the combination does not round), and `ufunc_at` must take it whenever the
module's `ufunc.at` refuses (a stand-in module whose `.at` raises as CuPy's does).
"""
import types

import numpy as np
import pytest

import phalanx as px
from phalanx.tensor import backend

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(60)]

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.uint8, np.int32,
          np.int64, np.bool_, np.complex64]


def _cases():
    for name in ["add", "multiply", "maximum", "minimum"]:
        for dtype in DTYPES:
            if np.dtype(dtype).kind == "c" and name in ("maximum", "minimum"):
                continue                     # complex numbers have no order
            yield name, dtype


@pytest.mark.parametrize("name, dtype", list(_cases()),
                         ids=[f"{n}-{np.dtype(d).name}" for n, d in _cases()])
def test_scan_at_equals_numpys_unbuffered_at(name, dtype):
    rng = np.random.default_rng(0)
    for _ in range(4):
        target = rng.integers(-3, 4, (5, 4)).astype(dtype)
        index = (rng.integers(0, 5, 23), rng.integers(0, 4, 23))   # many repeats
        values = rng.integers(-3, 4, 23).astype(dtype)
        want, got = target.copy(), target.copy()
        getattr(np, name).at(want, index, values)
        backend.scan_at(np, getattr(np, name), got, index, values)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("index, values", [
    (np.array([0, 2, 2, 5, 0, 2]), 1.5),                        # scalar value, 1-d index
    ((np.array([0, 0, 3]), slice(None)), np.arange(12.0).reshape(3, 4)),   # rows with a slice
    (np.array([], dtype=np.int64), 2.0),                        # nothing to do
    (np.array([[1, 1], [4, 1]]), np.arange(16.0).reshape(2, 2, 4)),       # a 2-d index
])
def test_scan_at_takes_numpys_index_forms_and_views(index, values):
    base = np.arange(48.0).reshape(6, 8)
    want, got = base[:, ::2].copy(), base.copy()[:, ::2]        # `got`: a strided view
    np.multiply.at(want, index, values)
    backend.scan_at(np, np.multiply, got, index, values)
    np.testing.assert_array_equal(got, want)


def _refusing_module(refuse):
    """NumPy, except that `<name>.at` raises for the names in `refuse` (as CuPy's does)."""
    def ufunc(name):
        real = getattr(np, name)
        if name not in refuse:
            return real

        def call(*args, **kwargs):
            return real(*args, **kwargs)

        def at(*args):
            raise refuse[name]
        call.at = at
        return call
    return types.SimpleNamespace(**{n: ufunc(n) for n in
                                    ["add", "multiply", "maximum", "minimum"]},
                                 arange=np.arange, asarray=np.asarray, argsort=np.argsort,
                                 broadcast_to=np.broadcast_to, where=np.where, ones=np.ones,
                                 unravel_index=np.unravel_index)


def test_ufunc_at_falls_back_when_the_module_refuses():
    xp = _refusing_module({"multiply": NotImplementedError("`cupy_multiply.at` is not "
                                                           "supported yet"),
                           "maximum": TypeError("cupy.maximum.at only supports int32, ...")})
    index = np.array([1, 1, 3, 1])
    for name, values in [("multiply", np.array([2.0, 3.0, 5.0, -1.0])),
                         ("maximum", np.array([7.0, -2.0, 9.0, 8.0])),
                         ("add", np.array([1.0, 1.0, 1.0, 1.0]))]:
        want, got = np.arange(5.0), np.arange(5.0)
        getattr(np, name).at(want, index, values)
        backend.ufunc_at(xp, name, got, index, values)
        np.testing.assert_array_equal(got, want)


def test_scatter_reduce_prod_and_amax_still_match_pytorch():
    torch = pytest.importorskip("torch")
    src = np.array([[2.0, -1.0, 3.0, 0.5], [4.0, 2.0, -2.0, 1.5]], np.float32)
    index = np.array([[0, 1, 0, 1], [2, 0, 2, 0]])
    for reduce in ["prod", "amax", "amin", "mean", "sum"]:
        mine = px.ones(3, 4).scatter_reduce(1, px.tensor(index), px.tensor(src), reduce)
        theirs = torch.ones(3, 4).scatter_reduce(1, torch.tensor(index), torch.tensor(src),
                                                 reduce)
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=[np.dtype(d).name for d in DTYPES])
def test_add_at_on_whole_rows_equals_numpys(dtype):
    """On NumPy, `add_at` adds whole rows (embedding's backward) at flat positions: the same
    result as NumPy's own add.at for every row index form, and its IndexError out of range."""
    rng = np.random.default_rng(1)
    for index, values in [((rng.integers(0, 6, 17), Ellipsis), rng.integers(-3, 4, (17, 3, 2))),
                          (rng.integers(0, 6, (4, 5)), rng.integers(-3, 4, (4, 5, 3, 2))),
                          ((rng.integers(0, 6, 9).astype(np.uint8),), rng.integers(-3, 4, (3, 2))),
                          ((np.zeros(0, np.int64), Ellipsis), np.zeros((0, 3, 2)))]:
        ours, numpys = np.zeros((6, 3, 2), dtype), np.zeros((6, 3, 2), dtype)
        backend.add_at(np, ours, index, values.astype(dtype))
        np.add.at(numpys, index, values.astype(dtype))
        np.testing.assert_array_equal(ours, numpys)
    assert backend._flat_positions(ours, (np.array([0, 5]), Ellipsis)) is not None
    for outside in ([6], [-1]):          # NumPy's own path: -1 counts from the end, 6 raises
        assert backend._flat_positions(ours, (np.array(outside), Ellipsis)) is None
    with pytest.raises(IndexError):
        backend.add_at(np, ours, (np.array([6]), Ellipsis), np.ones((1, 3, 2), dtype))
