"""px.load of files written by real torch.save: state dicts, optimizer states, nested
containers, every dtype Phalanx has, views and shared storages load equal; anything a
weights-only load would refuse (code, arbitrary globals, whole modules) is refused before it
runs, with a clear error."""
import io
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import serialization_torch
from phalanx.tensor import dtypes


def _saved(tmp_path, obj, name="ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _same(p, t):
    """A Phalanx value equals the PyTorch value it was loaded from."""
    if isinstance(t, torch.Tensor):
        assert isinstance(p, px.Tensor), type(p)
        assert str(p.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        assert tuple(p.shape) == tuple(t.shape)
        assert p.requires_grad == t.requires_grad
        np.testing.assert_array_equal(p.detach().numpy(), t.detach().numpy())
        assert isinstance(p, px.nn.Parameter) == isinstance(t, torch.nn.Parameter)
    elif isinstance(t, dict):
        assert type(p) is type(t) and list(p) == list(t)
        for k in t:
            _same(p[k], t[k])
    elif isinstance(t, (list, tuple)):
        assert type(p) is type(t) and len(p) == len(t), (type(p), type(t))
        for a, b in zip(p, t):
            _same(a, b)
    else:
        assert p == t and type(p) is type(t), (p, t)


def test_model_state_dict_loads_into_phalanx_model(tmp_path):
    torch.manual_seed(0)
    tnet = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(2, 3, 3),
                                "lstm": torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True),
                                "fc": torch.nn.Linear(10, 2), "bn": torch.nn.BatchNorm1d(2)})
    tnet["bn"](torch.randn(4, 2))  # non-trivial running stats and num_batches_tracked
    sd = px.load(_saved(tmp_path, tnet.state_dict()))
    _same(sd, tnet.state_dict())
    assert sd._metadata == tnet.state_dict()._metadata
    pnet = px.nn.ModuleDict({"conv": px.nn.Conv2d(2, 3, 3),
                             "lstm": px.nn.LSTM(4, 5, num_layers=2, bidirectional=True),
                             "fc": px.nn.Linear(10, 2), "bn": px.nn.BatchNorm1d(2)})
    result = pnet.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(np.float32)
    out_t, _ = tnet["lstm"](torch.tensor(x))
    out_p, _ = pnet["lstm"](px.tensor(x))
    np.testing.assert_allclose(out_p.detach().numpy(), out_t.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_optimizer_state_dict(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    _same(px.load(_saved(tmp_path, opt.state_dict())), opt.state_dict())


def test_nested_containers_dtypes_and_plain_values(tmp_path):
    obj = {
        "epoch": 7, "loss": 0.25, "name": "run", "none": None, "flags": [True, False],
        "nested": {"a": (torch.arange(5), [torch.ones(2, dtype=torch.float16)]),
                   3: torch.tensor([True, False])},
        "ints": [torch.tensor(v, dtype=d) for v, d in
                 ((-3, torch.int8), (200, torch.uint8), (-300, torch.int16),
                  (7, torch.int32), (2 ** 40, torch.int64))],
        "f64": torch.randn(2, 3, dtype=torch.float64),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.randn(3)),
        "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False),
        "od": OrderedDict(b=1, a=2),
        "set": {1, 2},
    }
    loaded = px.load(_saved(tmp_path, obj))
    _same({k: v for k, v in loaded.items() if k != "set"},
          {k: v for k, v in obj.items() if k != "set"})
    assert loaded["set"] == {1, 2}


def test_size_dtype_and_device_values(tmp_path):
    loaded = px.load(_saved(tmp_path, {"size": torch.Size([2, 3]), "dtype": torch.float16,
                                       "device": torch.device("cpu")}))
    assert loaded["size"] == (2, 3) and isinstance(loaded["size"], px.Size)
    assert loaded["dtype"] is px.float16
    assert loaded["device"] == px.device("cpu")


def test_views_and_shared_storage_stay_shared(tmp_path):
    base = torch.arange(24.0).reshape(4, 6)
    obj = {"base": base, "col": base[:, 2], "t": base.t(), "block": base[1:3, ::2],
           "tied": [base, base]}
    loaded = px.load(_saved(tmp_path, obj))
    for key in ("base", "col", "t", "block"):
        _same(loaded[key], obj[key])
    assert loaded["tied"][0] is loaded["tied"][1]
    loaded["base"].add_(1.0)  # one storage in the file: one memory after loading, as in torch
    np.testing.assert_array_equal(loaded["col"].numpy(), obj["col"].numpy() + 1)
    np.testing.assert_array_equal(loaded["t"].numpy(), obj["t"].numpy() + 1)


def test_map_location_and_file_objects(tmp_path):
    path = _saved(tmp_path, {"w": torch.ones(2)})
    seen = []

    def where(t, saved):
        seen.append(saved)
        return t * 2
    assert px.load(path, map_location=where)["w"].tolist() == [2.0, 2.0]
    assert seen == ["cpu"]
    assert px.load(path, map_location={"cpu": "cpu"})["w"].device == px.device("cpu")
    buffer = io.BytesIO()
    torch.save([torch.tensor([1, 2])], buffer)
    buffer.seek(0)
    assert px.load(buffer)[0].tolist() == [1, 2]


def test_load_does_not_import_torch(tmp_path):
    import subprocess
    import sys
    path = _saved(tmp_path, {"w": torch.ones(2)})
    code = ("import sys, phalanx as px; sd = px.load(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(sd['w'].tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1.0, 1.0]"


# ---- refusals --------------------------------------------------------------------------------
def _zip_with_pickle(tmp_path, payload, name="evil.pt", storages=None,
                     compression=zipfile.ZIP_STORED, byteorder=b"little"):
    """A file laid out as torch.save writes it, with our own data.pkl (and storages)."""
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/byteorder", byteorder)
        z.writestr("evil/version", "3\n")
        for key, data in (storages or {}).items():
            z.writestr(f"evil/data/{key}", data)
    return path


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_code_in_the_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"w": _RunsCommand(f"touch {marker}")}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load the global "
                       r"(posix|os)\.system.*weights_only=True") as e:
        px.load(_zip_with_pickle(tmp_path, payload))
    assert str(tmp_path / "evil.pt") in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.",
    b"\x80\x02cnumpy\nones\nq\x00K\x02\x85q\x01Rq\x02.",
    b"\x80\x02ctorch.nn.modules.linear\nLinear\nq\x00)\x81q\x01.",
    b"\x80\x02csubprocess\nPopen\nq\x00.",
])
def test_arbitrary_globals_are_refused(tmp_path, payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load the global"):
        px.load(_zip_with_pickle(tmp_path, payload))


def test_whole_torch_module_is_refused_with_the_state_dict_hint(tmp_path):
    path = _saved(tmp_path, torch.nn.Linear(2, 3))
    with pytest.raises(pickle.UnpicklingError, match=r"torch\.nn\.modules\.linear\.Linear.*"
                       r"state_dict\(\)"):
        px.load(path)
    with pytest.raises(TypeError, match=r"px\.save\(obj\.state_dict\(\), path\)"):
        px.save(px.nn.Linear(2, 3), tmp_path / "model.safetensors")


def test_bfloat16_loads_as_bfloat16(tmp_path, bf16_scope):
    w = torch.randn(3, 2).to(torch.bfloat16).t()     # a strided view, too
    loaded = px.load(_saved(tmp_path, {"w": w}))["w"]
    assert loaded.dtype == px.bfloat16
    assert np.array_equal(loaded.float().numpy(), w.float().numpy())


def test_complex_loads_and_complex32_is_refused(tmp_path):
    z = torch.randn(3, 2, dtype=torch.complex128).t()  # a strided view, too
    loaded = px.load(_saved(tmp_path, {"z": z, "c": z.to(torch.complex64)}))
    assert loaded["z"].dtype is px.complex128 and loaded["c"].dtype is px.complex64
    np.testing.assert_array_equal(loaded["z"].numpy(), z.numpy())
    np.testing.assert_array_equal(loaded["c"].numpy(), z.to(torch.complex64).numpy())
    with pytest.raises(pickle.UnpicklingError, match="refusing|complex32"):
        px.load(_saved(tmp_path, {"w": torch.ones(2, dtype=torch.complex32)}))


def test_geometry_past_the_storage_is_refused(tmp_path):
    """A crafted stride must not read memory outside the storage."""
    path = _saved(tmp_path, {"w": torch.arange(6.0)})
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    # size (6,) stride (1,) -> size (6,) stride (100,): the pickled tuple (K\x06\x85 ... K\x01\x85)
    assert b"K\x06\x85" in entries[pkl] and b"K\x01\x85" in entries[pkl]
    entries[pkl] = entries[pkl].replace(b"K\x01\x85", b"Kd\x85", 1)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    with pytest.raises(ValueError, match="reaches past its storage of 6 elements"):
        px.load(path)


def test_not_a_torch_zip(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a torch.save checkpoint"):
        px.load(path)
    assert serialization_torch.is_torch_zip(path.read_bytes())


def test_tensors_saved_on_a_gpu(tmp_path):
    """A checkpoint written on cuda:0 (its storages say so) loads where map_location says;
    without a GPU and without map_location the error names the fix."""
    path = _saved(tmp_path, {"w": torch.arange(3.0)})
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    cpu, gpu = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    assert entries[pkl].count(cpu) == 1
    entries[pkl] = entries[pkl].replace(cpu, gpu)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    for location in ("cpu", {"cuda:0": "cpu"}, px.device("cpu")):
        w = px.load(path, map_location=location)["w"]
        assert w.device == px.device("cpu") and w.tolist() == [0.0, 1.0, 2.0]
    if px.cuda.is_available():
        assert px.load(path)["w"].device == px.device("cuda:0")
    else:
        with pytest.raises(RuntimeError, match="saved on cuda:0.*map_location='cpu'"):
            px.load(path)


@pytest.fixture
def bf16_scope():
    """Loading bfloat16 installs an interceptor for the process; take it out after the test."""
    from phalanx.tensor import bf16_compute
    yield
    bf16_compute.uninstall()


def test_weights_only_false_loads_the_other_objects_of_a_trusted_checkpoint(tmp_path):
    """torch.load's weights_only=False: a checkpoint with an argparse namespace and a NumPy
    array beside the state dict loads (the user vouches for the file); PyTorch's own classes
    still cannot be rebuilt, and without the flag nothing but weights is read."""
    import argparse
    state = torch.nn.Linear(2, 3).state_dict()
    path = _saved(tmp_path, {"model": state, "args": argparse.Namespace(lr=0.1),
                             "mean": np.arange(3.0), "epoch": 7})
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        px.load(path)
    loaded = px.load(path, weights_only=False, encoding="latin1")
    assert loaded["args"].lr == 0.1 and loaded["epoch"] == 7
    np.testing.assert_array_equal(loaded["mean"], np.arange(3.0))
    np.testing.assert_array_equal(loaded["model"]["weight"].numpy(), state["weight"].numpy())
    with pytest.raises(pickle.UnpicklingError, match="PyTorch's own classes"):
        px.load(_saved(tmp_path, torch.nn.Linear(2, 3), "module.pt"), weights_only=False)
    with pytest.raises(NotImplementedError, match="pickle_module"):
        px.load(path, pickle_module=type("dill", (), {}))
    assert px.load(path, pickle_module=pickle, weights_only=False)["epoch"] == 7


# ---- crafted pickles: a weights-only load builds only tensors and containers -----------------
# Hand-written data.pkl files (pickle opcodes), as an attacker would write them.
def _g(module, name):
    """GLOBAL module.name"""
    return b"c" + f"{module}\n{name}\n".encode()


def _v(value):
    """Opcodes pushing a plain value (ints, strings, tuples, dicts), as pickle writes it."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _pkl(*parts, proto=2):
    return bytes([0x80, proto]) + b"".join(parts) + b"."


def _tensor(size=(4,), stride=(1,), offset=0, numel=4):
    """Opcodes for torch._utils._rebuild_tensor_v2 over float storage '0' of `numel` items."""
    pid = (b"(" + _v("storage") + _g("torch", "FloatStorage") + _v("0") + _v("cpu")
           + _v(numel) + b"tQ")
    hooks = _g("collections", "OrderedDict") + b")R"
    return (_g("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _v(offset)
            + _v(tuple(size)) + _v(tuple(stride)) + _v(False) + hooks + b"tR")


FOUR_FLOATS = {"0": np.arange(4, dtype=np.float32).tobytes()}


def _process_state():
    """What a file must never change: the classes and dtype objects a load hands out (and the
    loader's own functions, which a BUILD could give attributes)."""
    classes = (px.Tensor, px.nn.Parameter, px.Size, OrderedDict,
               serialization_torch._Loader._rebuild_tensor_v2)
    return ([dict(vars(c)) for c in classes],
            [[getattr(d, slot) for slot in type(d).__slots__] for d in dtypes.ALL])


@pytest.mark.parametrize("payload, refused", [
    # a dtype rewritten for the whole process (px.float32 computing in float16)
    (_pkl(_g("torch", "float32"), b"N", _v({"np": "float16", "is_floating_point": False}),
          b"\x86b"), "state for a dtype"),
    # a method of a class replaced, through slot state (setattr) and through __dict__ state
    (_pkl(_g("torch", "Tensor"), b"N", _v({"__add__": 1}), b"\x86b"),
     "state for the class torch.Tensor"),
    (_pkl(_g("torch", "Tensor"), b"}", _v("__add__"), _g("builtins", "frozenset"), b"sb"),
     "state for the class torch.Tensor"),
    (_pkl(_g("torch.nn.parameter", "Parameter"), b"N", _v({"__init__": 1}), b"\x86b"),
     "state for the class torch.nn.parameter.Parameter"),
    (_pkl(_g("collections", "OrderedDict"), b"N", _v({"keys": 1}), b"\x86b"),
     "state for the class collections.OrderedDict"),
    (_pkl(_g("torch", "Size"), b"N", _v({"numel": 1}), b"\x86b"),
     "state for the class torch.Size"),
    # attributes for the loader's own rebuild function (a function's __dict__)
    (_pkl(_g("torch._utils", "_rebuild_tensor_v2"), _v({"x": 1}), b"b"),
     "state for torch._utils._rebuild_tensor_v2"),
    # an OrderedDict attribute that would shadow one of its methods
    (_pkl(_g("collections", "OrderedDict"), b")R", _v({"keys": 1}), b"b"),
     "the OrderedDict state"),
    # objects no BUILD may touch: a device, a storage type, a storage
    (_pkl(_g("torch", "device"), _v(("cpu",)), b"R", _v({"type": "cuda"}), b"b"),
     "state for a Device"),
    (_pkl(_g("torch", "FloatStorage"), b"N", _v({"np_dtype": 1}), b"\x86b"),
     "state for a _StorageType"),
])
def test_build_cannot_change_classes_dtypes_or_other_objects(tmp_path, payload, refused):
    """pickle's BUILD sets attributes of whatever is on the stack; as in PyTorch's
    weights-only unpickler only an OrderedDict or a tensor the file built may take state."""
    before = _process_state()
    with pytest.raises(serialization_torch.WeightsOnlyUnpicklingError,
                       match=rf"refusing to load {refused}.*\(pickle BUILD\)") as e:
        px.load(_zip_with_pickle(tmp_path, payload))
    assert str(tmp_path / "evil.pt") in str(e.value)
    assert _process_state() == before
    assert px.float32.np == np.float32 and px.float32.is_floating_point
    assert (px.ones(3) / 3).dtype is px.float32 and (px.ones(3) / 3).numpy().dtype == np.float32
    assert (px.zeros(2) + px.ones(2)).tolist() == [1.0, 1.0]


def test_build_on_a_loaded_tensor_takes_only_what_pytorch_allows(tmp_path):
    """Tensor.__setstate__'s (requires_grad, _, backward_hooks) applies to a tensor the file
    built; the legacy (storage, offset, size, stride) and hooks are refused."""
    t = px.load(_zip_with_pickle(tmp_path, _pkl(_tensor(), _v((True, None, None)), b"b"),
                                 storages=FOUR_FLOATS))
    assert t.requires_grad and t.tolist() == [0.0, 1.0, 2.0, 3.0]
    for state, refused in (((1, 2, 3, 4), "the tensor state"),
                           ((True, None, {"h": 1}), "a tensor with backward hooks"),
                           ({"grad": None}, "the tensor state")):
        with pytest.raises(serialization_torch.WeightsOnlyUnpicklingError, match=refused):
            px.load(_zip_with_pickle(tmp_path, _pkl(_tensor(), _v(state), b"b"),
                                     storages=FOUR_FLOATS))


@pytest.mark.parametrize("payload, refused", [
    # the legacy constructor: memory of a size the file picks, with no storage behind it
    (_pkl(_g("torch", "Tensor"), _v((2 ** 31,)), b"R"),
     r"a call of the class torch\.Tensor \(pickle REDUCE\)"),
    (_pkl(_g("torch", "Tensor"), _v((10 ** 13,)), b"R"), "a call of the class torch.Tensor"),
    # cls.__new__(cls): a tensor without data
    (_pkl(_g("torch", "Tensor"), b")\x81"),
     r"a construction of the class torch\.Tensor \(pickle NEWOBJ\)"),
    (_pkl(_g("torch.nn.parameter", "Parameter"), b")\x81"),
     "a construction of the class torch.nn.parameter.Parameter"),
    (_pkl(_g("torch", "Tensor"), b")}\x92", proto=4), r"\(pickle NEWOBJ_EX\)"),
    (b"(itorch\nTensor\n.", r"a call of the class torch\.Tensor \(pickle INST\)"),
    (b"(" + _g("torch", "Tensor") + b"o.", r"a call of the class torch\.Tensor \(pickle OBJ\)"),
    (_pkl(_g("torch", "float32"), b")R"), r"a call of a dtype"),
    (_pkl(_g("torch", "FloatStorage"), b")R"), r"a call of a _StorageType"),
    (_pkl(b"\x82\x01"), r"extension code \(pickle EXT1"),
    # items into something that is not a list, dict or set (here a tensor, in place)
    (_pkl(_tensor(), _v(0), _v(5.0), b"s"), r"pickle SETITEM into a Tensor"),
    (_pkl(_tensor(), b"(", _v(5.0), b"e"), r"pickle APPENDS into a Tensor"),
])
def test_calls_and_constructions_outside_the_allow_list_are_refused(tmp_path, payload,
                                                                    refused):
    before = _process_state()
    with pytest.raises(serialization_torch.WeightsOnlyUnpicklingError, match=refused):
        px.load(_zip_with_pickle(tmp_path, payload, storages=FOUR_FLOATS))
    assert _process_state() == before


def test_containers_are_built_only_from_containers(tmp_path):
    """set/frozenset/OrderedDict take what the pickle spelled out; iterating a tensor is
    refused (one of stride 0 can have 10**12 rows over four floats; 10**5 here, so that a
    regression fails instead of hanging)."""
    ok = _pkl(b"(", _g("builtins", "set"), _v(([1, 2],)), b"R", _g("builtins", "frozenset"),
              _v(([3],)), b"R", _g("torch", "Size"), _v(((2, 3),)), b"R", b"t")
    assert px.load(_zip_with_pickle(tmp_path, ok)) == ({1, 2}, frozenset({3}), px.Size([2, 3]))
    for payload, what in ((_pkl(_g("builtins", "set"), _tensor((10 ** 5,), (0,)), b"\x85R"),
                           "set built from"),
                          (_pkl(_g("torch", "Size"), _v((("2",),)), b"R"), "a torch.Size of")):
        with pytest.raises(ValueError, match=f"corrupt or not a torch.save checkpoint: {what}"):
            px.load(_zip_with_pickle(tmp_path, payload, storages=FOUR_FLOATS))


def test_a_deflate_bomb_is_refused_before_it_is_inflated(tmp_path):
    """A storage entry's size is checked from the zip directory before decompression: 64 MiB
    of zeros for a 4-element record never reach memory."""
    import tracemalloc
    bomb = {"0": bytes(64 << 20)}
    path = _zip_with_pickle(tmp_path, _pkl(_tensor()), storages=bomb,
                            compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"storage '0' \(4 elements of 4 bytes\) has "
                                             r"67108864 bytes, expected 16"):
            px.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_pickle_and_byteorder_entries_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization_torch, "MAX_PICKLE_BYTES", 1 << 16)
    big = _pkl(_v("x" * (1 << 20)))
    with pytest.raises(ValueError, match=r"evil/data.pkl has 1048\d+ bytes, more than the 65536"):
        px.load(_zip_with_pickle(tmp_path, big, compression=zipfile.ZIP_DEFLATED))
    with pytest.raises(ValueError, match=r"byteorder record has 1048576 bytes, more than the 16"):
        px.load(_zip_with_pickle(tmp_path, _pkl(_v(1)), byteorder=bytes(1 << 20),
                                 compression=zipfile.ZIP_DEFLATED))


def test_deflated_entries_load_as_in_torch_and_other_methods_are_refused(tmp_path):
    """torch.save stores entries; torch.load also reads deflated ones (so do we), but no
    other zip method."""
    obj = {"w": torch.randn(3, 2), "od": torch.nn.Linear(2, 2).state_dict()}
    with zipfile.ZipFile(_saved(tmp_path, obj)) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    for method, name in ((zipfile.ZIP_DEFLATED, "deflated.pt"), (zipfile.ZIP_BZIP2, "bz2.pt")):
        with zipfile.ZipFile(tmp_path / name, "w", method) as z:
            for n, data in entries.items():
                z.writestr(n, data)
    _same(px.load(tmp_path / "deflated.pt"), obj)
    assert torch.load(tmp_path / "deflated.pt", weights_only=True)["w"].equal(obj["w"])
    with pytest.raises(ValueError, match="compressed with zip method 12"):
        px.load(tmp_path / "bz2.pt")


@pytest.mark.parametrize("size, stride, offset, numel", [
    ((2 ** 70,), (0,), 0, 4),           # a size past int64 (was OverflowError)
    ((0, 2 ** 70), (1, 1), 0, 4),       # ... even in an empty tensor
    ((2 ** 62, 4), (0, 0), 0, 4),       # more bytes than NumPy can index
    ((2,), (1,), -1, 4),
    ((1,) * 65, (1,) * 65, 0, 4),       # more dimensions than NumPy has
    ((4,), (1,), 0, 2 ** 64),           # a storage record past int64
])
def test_sizes_past_int64_are_clear_value_errors(tmp_path, size, stride, offset, numel):
    path = _zip_with_pickle(tmp_path, _pkl(_tensor(size, stride, offset, numel)),
                            storages=FOUR_FLOATS)
    with pytest.raises(ValueError, match="bad tensor geometry|malformed storage reference") as e:
        px.load(path)
    assert str(path) in str(e.value)


def test_pickle_protocol_4_and_complex_parameters_load(tmp_path):
    """Other opcodes torch.save can write (protocol 4 frames, memoize, short strings) and a
    complex parameter that requires grad load as PyTorch's do."""
    obj = {"p": torch.nn.Parameter(torch.randn(2, dtype=torch.complex64)),
           "sd": torch.nn.Linear(3, 2).state_dict(), "x": [torch.arange(3), (1, "a")]}
    path = tmp_path / "p4.pt"
    torch.save(obj, path, pickle_protocol=4)
    loaded = px.load(path)
    _same(loaded, obj)
    assert loaded["sd"]._metadata == obj["sd"]._metadata
