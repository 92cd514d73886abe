"""Every CuPy API the engine calls exists in the installed CuPy and accepts the arguments it is
given (no GPU needed: CuPy imports without one, only device calls fail).

The checker (`cupy_api_checker.py`) reads the source of every area where arrays may be
CuPy's and follows the names the code gives CuPy (`xp`, `array_module(...)`, `cupy()`, ...;
its docstring lists the conventions). A finding the code means to keep is listed in ALLOWED
with the reason. The NCCL communicator is checked against the signatures compiled into
CuPy's NCCL module (read from the binary when the NCCL library is not installed).
"""
import functools
import importlib.util
import inspect
import pathlib
import warnings

import numpy as np
import pytest

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import cupy  # noqa: F401
except ImportError as e:
    pytest.skip(f"CuPy is not installed ({e}); pip install cupy-cuda12x to check the engine's "
                f"CuPy calls (no GPU needed)", allow_module_level=True)



def _load(name, path):
    """A helper module of the tests, by path: this folder is no package."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_checker = _load("_cupy_api_checker", pathlib.Path(__file__).with_name("cupy_api_checker.py"))
Surface, check_source, signature = _checker.Surface, _checker.check_source, _checker.signature

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(120)]

ROOT = pathlib.Path(__file__).resolve().parents[2]
AREAS = ["tensor", "autograd", "nn", "optim", "distributed", "amp", "data", "cuda_api",
         "accelerator.py"]

# (file, finding key) -> why the code is right as it is
ALLOWED = {
    ("tensor/methods.py", "cupy.ndarray.__array_interface__"):
        "`getattr(d, '__cuda_array_interface__', None) or d.__array_interface__`: the second "
        "branch runs only for NumPy arrays",
    ("tensor/methods.py", "np.broadcast_to"):
        "map_ raises for CUDA tensors first: it is CPU-only, as in PyTorch",
    ("distributed/nccl_backend.py", "getattr(nccl, name)"):
        "NCCL datatypes looked up under `if hasattr(nccl, name)` (bfloat16 is optional)",
    ("distributed/nccl_backend.py", "cupy.cuda.nccl.NcclCommunicator(commId: tuple)"):
        "CuPy 13's form of the unique id, taken only after CuPy refuses bytes (CuPy 14's)",
}


@functools.lru_cache(maxsize=None)
def surface():
    return Surface()


@functools.lru_cache(maxsize=None)
def findings():
    found = []
    for area in AREAS:
        path = ROOT / area
        for f in [path] if path.is_file() else sorted(path.rglob("*.py")):
            rel = f.relative_to(ROOT).as_posix()
            found += check_source(surface(), f.read_text(), rel)
    return found


def _unexplained(kind):
    return [f for f in findings() if f.kind == kind and (f.rel, f.key) not in ALLOWED]


def _report(found, fix):
    return f"{len(found)} call(s) CuPy would refuse ({fix}):\n" + \
        "\n".join(f"  {f}" for f in found)


def test_every_cupy_name_the_engine_uses_exists():
    found = _unexplained("missing")
    assert not found, _report(found, "use an API CuPy has, or list the line in ALLOWED "
                                     "with the reason it never runs on CuPy arrays")


def test_every_call_passes_arguments_cupy_accepts():
    found = _unexplained("call")
    assert not found, _report(found, "pass only what CuPy's signature takes")


def test_every_dynamic_lookup_is_followed():
    found = _unexplained("dynamic")
    assert not found, _report(found, "name the attribute with a constant, a table of "
                                     "constants, or constants at every call site")


def test_no_numpy_function_is_given_a_device_array():
    found = _unexplained("numpy")
    assert not found, _report(found, "use xp = array_module(arr)")


def test_every_call_into_cupy_has_a_readable_signature():
    found = _unexplained("unchecked")
    assert not found, _report(found, "teach the checker this signature or list it in "
                                     "ALLOWED with why it is right")


def test_every_cupy_module_the_engine_uses_loads_here():
    """Modules that need a CUDA library missing here (cupyx.scipy.linalg needs cuBLAS) are
    not checked; wrappers of CUDA libraries (nccl, curand) are read from their binaries."""
    findings()
    missing = surface().unavailable
    if missing:
        pytest.skip("not checked, a CUDA library is missing (pip install "
                    "'cupy-cuda12x[ctk]'): " + "; ".join(f"{m} ({why})"
                                                          for m, why in missing.items()))


def test_allowed_entries_are_still_needed():
    seen = {(f.rel, f.key) for f in findings()}
    stale = [k for k in ALLOWED if k not in seen]
    assert not stale, f"ALLOWED entries that no longer match anything; delete them: {stale}"


# ---- the checker itself -------------------------------------------------------------------
PLANTED = '''
import numpy as np
from ..tensor.backend import array_module
_UFUNC = {"prod": "multiply", "sum": "add"}

def scatter(x, idx, m):
    d = x._data
    xp = array_module(d)
    grids = xp.indices(idx.shape, sparse=True)
    xp.nonexistent_fn()
    if not d.flags.writeable:
        pass
    first = d.item(0)
    y = xp.exp(d, where=m)
    z = array_module(d).linalg.nonexistent(d)
    ev = xp.cuda.Event(enable_timing=True)
    w = xp.zeros((3,), xp.float32).sum(initial=0)
    h = np.exp(d[0] * 2)
    getattr(xp, _UFUNC[x.op]).at(d, idx, 1)
    return getattr(xp, x.name)(d)
'''


def _keys(found):
    return {(f.kind, f.key) for f in found}


def test_checker_catches_planted_mistakes():
    keys = _keys(check_source(surface(), PLANTED, "tensor/planted.py"))
    assert ("call", "cupy.indices(sparse=)/1") in keys
    assert ("missing", "cupy.nonexistent_fn") in keys
    assert ("missing", "cupy._core.flags.Flags.writeable") in keys
    assert ("call", "cupy.ndarray.item()/1") in keys
    assert ("call", "cupy.exp(where=)") in keys
    assert ("missing", "cupy.linalg.nonexistent") in keys
    assert ("call", "cupy.cuda.Event(enable_timing=)/0") in keys
    assert ("call", "cupy.ndarray.sum(initial=)/0") in keys
    assert ("dynamic", "getattr(xp, x.name)") in keys
    assert ("numpy", "np.exp") in keys
    assert ("call", "cupy.multiply.at") in keys
    assert len(keys) == 11, keys


CORRECT = '''
import cupyx
from ..tensor import backend

class Kernels:
    def __init__(self, cupy):
        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def run(self, x, name):
        cp = self.cupy
        y = cp.ascontiguousarray(x, dtype=cp.float32).reshape(-1)
        host = cupyx.empty_pinned(y.shape, y.dtype)
        y.get(out=host, stream=self.stream)
        self.stream.wait_event(cp.cuda.Event(disable_timing=True))
        return self.stream.ptr, getattr(cp, name)(y), y.astype(cp.float64, copy=False)

def use(k, t):
    xp, place = backend.placed_on(t.device)
    with place:
        return k.run(xp.arange(3), "exp"), k.run(xp.ones(2), "log1p"), xp.add.at
'''


def test_checker_accepts_correct_calls_and_follows_the_names():
    found = check_source(surface(), CORRECT, "nn/correct.py")
    assert not found, found
    wrong = CORRECT.replace('"log1p"', '"logp1"').replace("disable_timing", "timing")
    keys = _keys(check_source(surface(), wrong, "nn/correct.py"))
    assert keys == {("missing", "cupy.logp1"), ("call", "cupy.cuda.Event(timing=)/0")}, keys


def test_nccl_calls_are_checked_against_cupys_signatures():
    source = '''
def go(comm, nccl, flat, s):
    comm.allReduce(flat, flat, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM)
    comm.reduceScatter(flat, flat, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, s)
    nccl.NcclCommunicator(2, tuple(nccl.get_unique_id()), 0)
    nccl.groupStart(), nccl.NCCL_NOSUCH
'''
    keys = _keys(check_source(surface(), source, "distributed/nccl_backend.py"))
    assert keys == {("call", "cupy.cuda.nccl.NcclCommunicator.allReduce()/5"),
                    ("call", "cupy.cuda.nccl.NcclCommunicator(commId: tuple)"),
                    ("missing", "cupy.cuda.nccl.NCCL_NOSUCH")}, keys


# ---- the NCCL test double speaks CuPy's API ------------------------------------------------
def _double():
    return _load("_nccl_double_for_api", ROOT / "tests" / "distributed" / "nccl_double.py")


def _cupy_nccl(name):
    s = surface()
    if s.nccl is None:
        obj = s.root(f"cupy.cuda.nccl.{name}")
    else:
        owner, _, attr = name.rpartition(".")
        obj = s.nccl.attr(owner or None, attr)
    sig, drop = signature(obj, bound="." in name)
    params = list(sig.parameters)
    return params[1:] if drop else params


def _role(param):
    """What an NCCL argument is, whatever its spelling (`buf`, `sendbuff`, `recvcount`)."""
    for role in ("stream", "datatype", "count", "root", "peer", "op"):
        if role in param.lower():
            return role
    return "buffer"


def test_the_nccl_double_has_cupys_signatures():
    """tests/distributed runs the nccl backend on the double: the argument order it checks
    there is CuPy's only if every method of the double takes CuPy's parameters in order."""
    double = _double().make_nccl()
    comm_methods = ["allReduce", "reduce", "broadcast", "allGather", "reduceScatter", "send",
                    "recv", "check_async_error", "abort", "destroy"]
    for name in comm_methods:
        mine = list(inspect.signature(getattr(double.NcclCommunicator, name)).parameters)[1:]
        theirs = _cupy_nccl(f"NcclCommunicator.{name}")
        assert len(mine) == len(theirs), (name, mine, theirs)
        assert [_role(p) for p in mine] == [_role(p) for p in theirs], (name, mine, theirs)
    assert list(inspect.signature(double.NcclCommunicator).parameters) == \
        _cupy_nccl("NcclCommunicator")[:3]
    for name in ["get_unique_id", "get_version", "groupStart", "groupEnd"]:
        assert len(inspect.signature(getattr(double, name)).parameters) == \
            len(_cupy_nccl(name)), name
    constants = [n for n in vars(double) if n.startswith("NCCL_")]
    s = surface()
    for n in constants:
        has = hasattr(s.cupy.cuda.nccl, n) if s.nccl is None else n in s.nccl.constants
        assert has, n


def test_the_cuda_double_has_cupys_stream_and_event():
    double = _double().make_cuda([])
    for cls_name in ["Stream", "Event"]:
        theirs = getattr(surface().cupy.cuda, cls_name)
        mine = getattr(double, cls_name)
        assert set(inspect.signature(mine).parameters) <= \
            set(inspect.signature(theirs).parameters), cls_name
        for name, member in vars(mine).items():
            if name.startswith("_"):
                continue
            assert hasattr(theirs, name), f"cupy.cuda.{cls_name} has no {name}"
            if callable(member):
                theirs_sig, drop = signature(getattr(theirs, name), bound=True)
                assert len(inspect.signature(member).parameters) == \
                    len(theirs_sig.parameters), (cls_name, name)


@pytest.mark.parametrize("id_type", [bytes, tuple], ids=["cupy14-bytes", "cupy13-tuple"])
def test_the_unique_id_reaches_every_rank_in_the_form_cupy_takes(id_type):
    """CuPy 14 makes and takes the id as bytes, CuPy 13 as a tuple of signed chars; through
    the store, MPI (pickled as is) or a split (msgpack lists) the communicator is made."""
    import threading

    from phalanx.distributed import nccl_backend
    module = _double()
    nccl = module.make_nccl(id_type=id_type)
    store = module.FakeStore()
    comms, errors = [None, None], []
    uids = [nccl_backend._share_through_store(store, "t", r, nccl) for r in (0, 1)]
    assert type(uids[0]) is id_type and type(uids[1]) is bytes

    def rank(r):
        try:
            comms[r] = nccl_backend._communicator(nccl, 2, uids[r], r)
            a = np.array([r + 1.0], np.float32)
            comms[r].allReduce(a.ctypes.data, a.ctypes.data, 1, nccl.NCCL_FLOAT32,
                               nccl.NCCL_SUM, 0)
            assert a[0] == 3.0
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    listed = list(nccl.get_unique_id())          # what split() broadcasts
    assert nccl_backend._communicator(nccl, 1, listed, 0) is not None
