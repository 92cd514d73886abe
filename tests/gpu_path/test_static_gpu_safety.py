"""A read of the source for calls that break, or wait, when the arrays are CuPy's.

No GPU is needed: each rule names a pattern that fails on a CuPy array (or reads it back to the
host behind the backend's back) and the fix. Code that is deliberately host-only is listed in
ALLOWED with the reason.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# where arrays of a tensor may be CuPy's: the tensor library, autograd, layers, optimizers,
# distributed training and mixed precision
AREAS = ["tensor", "autograd", "nn", "optim", "distributed", "amp", "data"]

_DATA = r"\._data(?!\.(?:size|shape|ndim|dtype|itemsize|nbytes)\b)"
RULES = [
    ("flags.writeable", re.compile(r"\.flags\.writeable"),
     "CuPy arrays have no writeable flag: use tensor.backend.writeable(arr)"),
    ("indices(sparse=)", re.compile(r"\.indices\([^)]*sparse\s*="),
     "CuPy's indices() has no sparse=: build the open grids with xp.arange(...).reshape"),
    ("np.lib.stride_tricks", re.compile(r"\bnp\.lib\.stride_tricks"),
     "NumPy's stride tricks refuse CuPy arrays: use xp.lib.stride_tricks"),
    ("np.ufunc.at on tensor data", re.compile(r"\bnp\.\w+\.at\([^)]*" + _DATA),
     "NumPy's unbuffered ufunc.at does not take CuPy arrays: use tensor.backend.add_at"),
    ("np.<function>(tensor._data)", re.compile(
        r"\bnp\.(?!dtype|result_type|promote_types|can_cast|shape|ndim|broadcast_shapes|iinfo|"
        r"finfo|isscalar|errstate)\w+\((?![^)]*(?:to_device|to_host|_host)\()[^)]*" + _DATA),
     "a NumPy function on a tensor's array fails for CuPy (implicit conversion): use the "
     "array's module (xp = array_module(arr)) or move it with backend.to_host on purpose"),
    ("cupy.asnumpy / .get() of tensor data", re.compile(r"asnumpy\(|" + _DATA + r"\.get\(\)"),
     "device-to-host copies go through tensor.backend.to_host, which counts them"),
]

ALLOWED = {
    # map_ raises for CUDA tensors first: it is CPU-only, as in PyTorch
    ("tensor/methods.py", "np.<function>(tensor._data)"),
}


def _sources():
    for area in AREAS:
        for path in sorted((ROOT / area).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


@pytest.mark.parametrize("name, pattern, fix", RULES, ids=[r[0] for r in RULES])
def test_no_cupy_breaking_call(name, pattern, fix):
    found = []
    for rel, text in _sources():
        if rel == "tensor/backend.py" or (rel, name) in ALLOWED:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                found.append(f"  {rel}:{n}: {line.strip()}")
    assert not found, f"{name}: {fix}\n" + "\n".join(found)


def test_the_rules_match_what_they_name():
    samples = {"flags.writeable": "if not d.flags.writeable:",
               "indices(sparse=)": "g = xp.indices(idx.shape, sparse=True)",
               "np.lib.stride_tricks": "w = np.lib.stride_tricks.as_strided(p, s, st)",
               "np.ufunc.at on tensor data": "np.add.at(out._data, idx, v)",
               "np.<function>(tensor._data)": "y = np.exp(x._data)",
               "cupy.asnumpy / .get() of tensor data": "h = t._data.get()"}
    for name, pattern, _ in RULES:
        assert pattern.search(samples[name]), name
    host = dict((r[0], r[1]) for r in RULES)["np.<function>(tensor._data)"]
    assert not host.search("np.zeros((o._data.size, 0))")
    assert not host.search('h = np.asarray(backend.to_host(t._data))')
