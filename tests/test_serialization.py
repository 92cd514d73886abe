"""px.save / px.load: exact round trips, atomic writes (also when killed mid-save), clear
errors for damaged files, map_location, and no unpickling ever."""
import io
import functools
import json
import math
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import phalanx as px
from phalanx import serialization

DTYPES = [px.bool, px.uint8, px.int8, px.int16, px.int32, px.int64, px.float16, px.float32,
          px.float64]
SHAPES = [(), (0,), (3,), (2, 0, 4), (2, 3, 4)]


def _sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal(shape) * 50
    return px.tensor(arr.astype(dtype.np) if dtype != px.bool else arr > 0)


def _equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, px.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
        assert a.requires_grad == b.requires_grad
        assert a.numpy(force=True).tobytes() == b.numpy(force=True).tobytes()
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for k in a:
            assert type(k) is type(next(x for x in b if x == k))
            _equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_tensor_round_trip(tmp_path, dtype, shape):
    t = _sample(dtype, shape)
    px.save({"t": t, "a": t.numpy()}, tmp_path / "c.px")
    out = px.load(tmp_path / "c.px")
    _equal(out["t"], t)
    _equal(out["a"], t.numpy())


def test_nested_training_state_round_trips_exactly(tmp_path):
    w = px.randn(4, 3, requires_grad=True)
    state = {
        "model": {"fc.weight": w, "fc.bias": px.zeros(4), "bn.num_batches_tracked": px.tensor(7)},
        "optimizer": {"state": {0: {"step": px.tensor(3.0), "exp_avg": px.ones(4, 3)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                        "amsgrad": False, "foreach": None}]},
        "scheduler": {"last_epoch": 4, "_last_lr": [0.1 * 0.5 ** 2]},
        "epoch": 12, "best": float("-inf"), "nan": float("nan"), "zero": -0.0,
        "big": 2 ** 80, "text": "ünïcødé ✓", "flags": [True, False, None],
        "keys": {1: "int", 2.5: "float", True: "bool", None: "none", "s": "str"},
        "numpy": {"f": np.float32(1.25), "i": np.int64(-3), "arr": np.arange(6).reshape(2, 3)},
        "meta": {"dtype": px.float16, "device": px.device("cpu")},
        "rng": px.get_rng_state(),
        "strided": px.arange(12).reshape(3, 4).T,
    }
    px.save(state, tmp_path / "state.ckpt")
    out = px.load(tmp_path / "state.ckpt")
    expected = dict(state, strided=px.arange(12).reshape(3, 4).T.contiguous())
    _equal(out, expected)
    assert out["model"]["fc.weight"].is_leaf and out["model"]["fc.weight"].grad is None


def test_shared_tensors_stay_shared(tmp_path):
    t = px.ones(3)
    px.save({"a": t, "b": [t]}, tmp_path / "s")
    out = px.load(tmp_path / "s")
    assert out["a"] is out["b"][0]


def test_rng_state_round_trip_restores_the_stream(tmp_path):
    px.manual_seed(11)
    px.rand(5)
    px.save({"rng": px.get_rng_state()}, tmp_path / "rng")
    expected = px.rand(4).tolist()
    px.manual_seed(0)
    px.set_rng_state(px.load(tmp_path / "rng")["rng"])
    assert px.rand(4).tolist() == expected


def test_unsupported_objects_name_their_place(tmp_path):
    with pytest.raises(TypeError, match=r"type object at obj\['model'\]\[1\].*state_dict"):
        px.save({"model": [1, object()]}, tmp_path / "x")
    with pytest.raises(TypeError, match="dict key"):
        px.save({(1, 2): 3}, tmp_path / "x")
    with pytest.raises(TypeError, match="dtype <U1"):
        px.save(np.array(["a"]), tmp_path / "x")
    assert not os.listdir(tmp_path)  # nothing written


def test_file_objects_and_plain_safetensors_files(tmp_path):
    buf = io.BytesIO()
    px.save([px.arange(3), "x"], buf)
    buf.seek(0)
    out = px.load(buf)
    assert out[0].tolist() == [0, 1, 2] and out[1] == "x"
    from safetensors.numpy import save_file
    save_file({"w": np.eye(2, dtype=np.float32)}, str(tmp_path / "plain.safetensors"))
    plain = px.load(tmp_path / "plain.safetensors")
    assert list(plain) == ["w"] and plain["w"].tolist() == [[1, 0], [0, 1]]


def test_map_location(tmp_path):
    path = tmp_path / "m"
    px.save({"w": px.ones(2)}, path)
    assert px.load(path, map_location="cpu")["w"].device == "cpu"
    assert px.load(path, map_location=px.device("cpu"))["w"].device == "cpu"
    seen = []

    def mover(t, saved):
        seen.append(saved)
        return t * 2
    assert px.load(path, map_location=mover)["w"].tolist() == [2, 2] and seen == ["cpu"]
    with pytest.raises(TypeError, match="must return a Tensor"):
        px.load(path, map_location=lambda t, s: 1)


def _retarget(path, device):
    """Rewrite a checkpoint as if its tensors had been saved on `device`."""
    from safetensors.numpy import load, save
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n])["__metadata__"]
    tree = meta["phalanx.tree"].replace('"device":"cpu"', f'"device":"{device}"')
    path.write_bytes(save(load(data), metadata=dict(meta, **{"phalanx.tree": tree})))


def test_map_location_for_gpu_checkpoints(tmp_path):
    path = tmp_path / "gpu"
    px.save({"w": px.ones(2)}, path)
    _retarget(path, "cuda:0")
    assert px.load(path, map_location="cpu")["w"].device == "cpu"
    assert px.load(path, map_location={"cuda:0": "cpu"})["w"].device == "cpu"
    try:
        import cupy  # noqa: F401
        return
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r"saved on cuda:0.*map_location='cpu'"):
        px.load(path)


def _good_file(tmp_path):
    path = tmp_path / "good.ckpt"
    px.save({"w": px.arange(100).float(), "step": 3}, path)
    return path, path.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "shorter than a safetensors header"),
    (lambda d: d[:5], "shorter than a safetensors header"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:-7], "corrupt or truncated"),
    (lambda d: d[:8] + b"{" * (len(d) - 8), "unreadable header"),
    (lambda d: (2 ** 60).to_bytes(8, "little") + d[8:], "truncated"),
    (lambda d: d.replace(b'[[', b'[{', 1), "unreadable structure"),
    (lambda d: d.replace(b'dict', b'dixt', 1), "unknown entry 'dixt'"),
    (lambda d: d.replace(b'v1', b'v9', 1), "unsupported checkpoint format"),
    (lambda d: pickle.dumps({"a": 1}), "pickle/zip file"),
    (lambda d: b"PK\x03\x04" + d, "pickle/zip file"),
])
def test_damaged_files_give_clear_errors(tmp_path, damage, message):
    path, data = _good_file(tmp_path)
    path.write_bytes(damage(data))
    with pytest.raises(ValueError, match=message) as e:
        px.load(path)
    assert str(path) in str(e.value)


def test_structure_that_does_not_match_the_tensors(tmp_path):
    path, data = _good_file(tmp_path)
    path.write_bytes(data.replace(b'tensor\\":\\"0', b'tensor\\":\\"9'))
    with pytest.raises(ValueError, match="refers to tensor '9', which the file does not hold"):
        px.load(path)


def test_load_never_unpickles(tmp_path, monkeypatch):
    path, _ = _good_file(tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("load unpickled something")
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert px.load(path)["step"] == 3


def test_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path, before = _good_file(tmp_path)

    def half_then_crash(f, data):
        f.write(data[:len(data) // 2])
        raise OSError("disk full")
    monkeypatch.setattr(serialization, "_write_all", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        px.save({"w": px.zeros(1000)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]

    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("io error")))
    with pytest.raises(OSError, match="io error"):
        px.save({"w": px.zeros(1000)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


def test_process_killed_mid_save_leaves_the_previous_file(tmp_path):
    path, before = _good_file(tmp_path)
    script = textwrap.dedent(f"""
        import sys, time
        import phalanx as px
        from phalanx import serialization

        def half_then_hang(f, data):
            f.write(data[:len(data) // 2])
            f.flush()
            print("HALF", flush=True)
            time.sleep(60)
        serialization._write_all = half_then_hang
        px.save({{"w": px.zeros(100000)}}, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HALF"
        temps = [n for n in os.listdir(tmp_path) if n != path.name]
        assert len(temps) == 1 and os.path.getsize(tmp_path / temps[0]) > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert path.read_bytes() == before
    assert px.load(path)["step"] == 3
    px.save({"step": 4}, path)                   # the next save removes the orphan
    assert os.listdir(tmp_path) == [path.name] and px.load(path)["step"] == 4


def test_saved_file_has_a_normal_files_mode(tmp_path):
    path, _ = _good_file(tmp_path)
    mask = os.umask(0o022)
    try:
        px.save([1], path)
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_next_save_keeps_temporaries_of_live_writers_and_other_hosts(tmp_path):
    path, _ = _good_file(tmp_path)
    host = socket.gethostname()
    live = tmp_path / f".{path.name}.{host}.{os.getpid()}.abc123.tmp"      # a save in flight
    elsewhere = tmp_path / f".{path.name}.other-host.1.abc123.tmp"        # on a shared disk
    dead = tmp_path / f".{path.name}.{host}.{_dead_pid()}.abc123.tmp"
    unrelated = tmp_path / f".other.ckpt.{host}.{_dead_pid()}.abc123.tmp"
    for f in (live, elsewhere, dead, unrelated):
        f.write_bytes(b"partial")
    px.save([1], path)
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, live.name, elsewhere.name,
                                                   unrelated.name])


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- crafted files: always a ValueError that names the file -------------------------------
def _craft(header, payload=b""):
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + payload


def _checkpoint(tree, tensors=None, payload=b""):
    """A checkpoint of structure `tree` (an object, or its JSON text)."""
    text = tree if isinstance(tree, str) else json.dumps(tree)
    header = {"__metadata__": {"format": serialization.FORMAT, "phalanx.tree": text}}
    header.update(tensors or {})
    return _craft(header, payload)


F32 = {"0": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
PAYLOAD = np.array([1.5, -2.0], np.float32).tobytes()
# an int64 [[10**12]] and a float32 [1.0]
ENTRIES = {"0": {"dtype": "I64", "shape": [1, 1], "data_offsets": [0, 8]},
           "1": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
ENTRY_BYTES = np.int64(10 ** 12).tobytes() + np.float32(1.0).tobytes()
TENSOR1 = {"tensor": "1", "device": "cpu", "requires_grad": False}


@pytest.mark.parametrize("data, message", [
    (_checkpoint('{"list":[' * 3000 + "1" + "]}" * 3000), "unreadable structure"),
    (_checkpoint(functools.reduce(lambda t, _: {"list": [t]}, range(150), 1)),
     "nested deeper than 100"),
    (_craft({"x": json.loads("[" * 5 + "1" + "]" * 5)}), "tensor 'x' is not a"),
    ((200000).to_bytes(8, "little") + b"[" * 100000 + b"]" * 100000, "unreadable header"),
    (_checkpoint({"dict": [[{"list": []}, 1]]}), "a dict key of type list"),
    (_checkpoint({"dtype": ["float32"]}), "unknown entry 'dtype'"),
    (_checkpoint({"tensor": ["0"], "device": "cpu", "requires_grad": False}, F32, PAYLOAD),
     "refers to tensor"),
    (_checkpoint({"ndarray": {"a": 1}}, F32, PAYLOAD), "refers to tensor"),
    (_checkpoint({"npscalar": 7}), "refers to tensor 7"),
    (_checkpoint({"tensor": "0", "device": "tpu", "requires_grad": False}, F32, PAYLOAD),
     "unknown device 'tpu'"),
    (_craft({"__metadata__": ["phalanx.tree"]}), "__metadata__ is not a map of strings"),
    (_craft({"__metadata__": {"format": serialization.FORMAT, "phalanx.tree": 5}}),
     "__metadata__ is not a map of strings"),
    (_craft({"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0"),
     "needs 4 bytes"),
    (_craft({"x": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
     "dtype 'F8_E4M3', which Phalanx cannot load"),
    (_craft({"x": {"dtype": 5, "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "dtype 5"),
    (_craft({"x": {"dtype": "U32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "dtype uint32, which Phalanx tensors do not support"),
    (_craft({"x": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}, PAYLOAD), "shape"),
    (_craft({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, PAYLOAD), "shape"),
    (_craft({"x": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, PAYLOAD),
     "shape"),
    (_craft({"x": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}}, PAYLOAD),
     "shape"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}, PAYLOAD),
     "data offsets \\[0, 80\\] outside the 8 bytes"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, PAYLOAD), "offsets"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, PAYLOAD),
     "offsets"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8]}}, PAYLOAD),
     "offsets"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, PAYLOAD), "offsets"),
    (_craft({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, PAYLOAD),
     "needs 12 bytes, but its offsets span 8"),
    (_craft({"x": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 8]}},
            PAYLOAD), "needs"),
    (_craft({"x": [1, 2]}), "not a {dtype, shape, data_offsets} entry"),
    (_craft({"x": {"dtype": "F32", "shape": [0, 2 ** 70], "data_offsets": [0, 0]}}),
     r"shape \[0, 1180591620717411303424\]; expected a list of at most 64 sizes in \[0, 2\*\*63\)"),
    (_craft({"x": {"dtype": "F32", "shape": [0, 2 ** 62, 4], "data_offsets": [0, 0]}}),
     "even empty, NumPy can't hold it"),
    # one entry used two ways: each node must get the type its tree names, or the file is refused
    (_checkpoint({"list": [TENSOR1, {"ndarray": "1"}]}, ENTRIES, ENTRY_BYTES),
     "entry '1' is used both as a tensor on cpu with requires_grad=False and as an ndarray"),
    (_checkpoint({"list": [{"ndarray": "1"}, TENSOR1]}, ENTRIES, ENTRY_BYTES),
     "entry '1' is used both as an ndarray and as a tensor on cpu"),
    (_checkpoint({"list": [TENSOR1, dict(TENSOR1, requires_grad=True)]}, ENTRIES, ENTRY_BYTES),
     "used both as a tensor on cpu with requires_grad=False and as a tensor on cpu with "
     "requires_grad=True"),
    (_checkpoint({"list": [{"ndarray": "0"}, {"npscalar": "0"}]}, ENTRIES, ENTRY_BYTES),
     "used both as an ndarray and as a NumPy scalar"),
    (_checkpoint({"npscalar": "0"}, ENTRIES, ENTRY_BYTES),
     r"a NumPy scalar stored as an array of shape \[1, 1\]"),
    (_checkpoint({"tensor": "0", "device": "cpu", "requires_grad": True}, ENTRIES, ENTRY_BYTES),
     "a tensor of dtype phalanx.int64 requires grad"),
    (_checkpoint({"sparse_coo": [{"tensor": "0", "device": "cpu", "requires_grad": False},
                                 TENSOR1], "size": [2 ** 70], "coalesced": False},
                 ENTRIES, ENTRY_BYTES), "a sparse tensor of size \\[1180591620717411303424"),
    (_craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "more": 1}},
            PAYLOAD), "not a {dtype, shape, data_offsets} entry"),
])
def test_crafted_files_raise_value_errors(tmp_path, data, message):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        px.load(path)
    assert str(path) in str(e.value)


def test_bfloat16_safetensors_load_as_bfloat16_or_float32_with_the_option(tmp_path, bf16_scope):
    import torch
    from safetensors.torch import save_file
    w = torch.randn(3, 5, dtype=torch.float32).to(torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_file({"w": w, "b": torch.arange(4, dtype=torch.int64)}, str(path))
    native = px.load(path)
    assert native["w"].dtype == px.bfloat16
    assert np.array_equal(native["w"].float().numpy(), w.float().numpy())
    loaded = px.load(path, upcast_bfloat16=True)
    assert loaded["w"].dtype == px.float32 and loaded["b"].dtype == px.int64
    assert np.array_equal(loaded["w"].numpy(), w.float().numpy())
    assert np.array_equal(loaded["b"].numpy(), np.arange(4))


def _mutate(rng, node, depth=0):
    """`node` with one random part replaced by something of the wrong shape or type."""
    junk = [None, True, -1, 2 ** 70, 1.5, "", "0", "BF16", [], {}, [[[[]]]], {"list": 5},
            {"tensor": 0}, {"dict": [[1]]}, json.loads("[" * 300 + "]" * 300)]
    if depth > 6 or not isinstance(node, (dict, list)) or not node or rng.random() < 0.25:
        return rng.choice(junk)
    if isinstance(node, dict):
        key = rng.choice(list(node))
        return {**node, key: _mutate(rng, node[key], depth + 1)}
    i = rng.randrange(len(node))
    return node[:i] + [_mutate(rng, node[i], depth + 1)] + node[i + 1:]


def test_fuzzed_headers_raise_value_errors_only(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "good.ckpt"
    px.save({"w": px.arange(6).float().reshape(2, 3), "opt": {"step": 3, "lr": [0.1, (1, 2)]},
             "ids": np.arange(3), "dt": px.float16, "inf": math.inf}, path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, payload = json.loads(data[8:8 + n]), data[8 + n:]
    tree = json.loads(header["__metadata__"]["phalanx.tree"])
    outcomes = {"ok": 0, "ValueError": 0}
    for i in range(400):
        mutated = dict(header)
        if i % 2:      # the structure
            mutated["__metadata__"] = {**header["__metadata__"],
                                       "phalanx.tree": json.dumps(_mutate(rng, tree))}
        else:          # the tensor table
            mutated = _mutate(rng, header)
        crafted = tmp_path / f"crafted{i % 5}.ckpt"
        crafted.write_bytes(_craft(mutated, payload))
        try:
            px.load(crafted)
            outcomes["ok"] += 1
        except ValueError as e:
            assert str(crafted) in str(e)
            outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 200, outcomes       # mostly broken, never another error


@pytest.mark.parametrize("pad", range(0, 260, 7))
def test_header_lengths_that_look_like_pickle_or_zip_still_load(pad, tmp_path):
    """The header's length is the first 8 bytes: lengths starting 0x80 or 'PK' are ordinary."""
    obj = {"note": "x" * pad, "w": px.ones(2)}
    path = tmp_path / "c.pt"
    px.save(obj, path)
    back = px.load(path)
    assert back["note"] == obj["note"]


def test_header_length_starting_with_0x80_loads(tmp_path):
    for pad in range(400):
        buf = io.BytesIO()
        px.save({"note": "x" * pad}, buf)
        if buf.getvalue()[:1] == b"\x80":
            buf.seek(0)
            assert px.load(buf)["note"] == "x" * pad
            return
    pytest.fail("no header length starting with 0x80 in the range tried")


@pytest.fixture
def bf16_scope():
    """Loading bfloat16 installs an interceptor for the process; take it out after the test."""
    from phalanx.tensor import bf16_compute
    yield
    bf16_compute.uninstall()


def test_sparse_tensors_saved_together_keep_their_own_indices(tmp_path):
    """Each sparse tensor's indices are a temporary when saved; one freed before the next is
    made must not lend its id, and so its entry, to the next one's."""
    a = px.sparse_coo_tensor(px.tensor([[0, 1], [1, 0]]), px.tensor([1.0, 2.0]), (2, 2))
    b = px.sparse_coo_tensor(px.tensor([[1], [1]]), px.tensor([5.0]), (2, 2))
    path = tmp_path / "sparse.ckpt"
    px.save([a, b, a], path)
    loaded = px.load(path)
    assert [t.to_dense().tolist() for t in loaded] == [a.to_dense().tolist(),
                                                       b.to_dense().tolist(),
                                                       a.to_dense().tolist()]
