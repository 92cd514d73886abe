"""`backend.add_at` (the scatter-add under every index backward, index_add, scatter_add,
embedding and fold) takes fast flat-position paths for the common index forms: each must add
exactly what NumPy's own `np.add.at` adds, repeated indices included."""
import numpy as np
import pytest

from phalanx.tensor.backend import add_at

rng = np.random.default_rng(0)

FORMS = {
    "rows": ((5, 6), lambda: rng.integers(0, 5, (3, 4))),
    "(rows,)": ((5, 6), lambda: (rng.integers(0, 5, 7),)),
    "(rows, ...)": ((3, 4, 5), lambda: (rng.integers(0, 3, 6), Ellipsis)),
    "(:, rows)": ((5, 6), lambda: (slice(None), rng.integers(0, 6, (3, 4)))),
    "(:, :, rows, ...)": ((3, 4, 5), lambda: (slice(None), slice(None), rng.integers(0, 5, 9),
                                              Ellipsis)),
    "(rows, :)": ((3, 4, 5), lambda: (rng.integers(0, 3, 5), slice(None))),
    "an array per dim": ((3, 4, 5), lambda: tuple(rng.integers(0, n, (6, 2)) for n in (3, 4, 5))),
    "negative (NumPy's path)": ((4, 4), lambda: (slice(None), np.array([-1, 2, -1]))),
    "a partial slice (NumPy's path)": ((3, 4, 5), lambda: (slice(1, 3), rng.integers(0, 4, 3))),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_add_at_adds_what_numpy_adds(form):
    shape, make_index = FORMS[form]
    index = make_index()
    mine, numpys = np.zeros(shape), np.zeros(shape)
    values = rng.standard_normal(mine[index].shape)
    add_at(np, mine, index, values)
    np.add.at(numpys, index, values)
    np.testing.assert_allclose(mine, numpys, rtol=1e-15)
