"""px.save / px.load: exact round trips, atomic writes (also when killed mid-save), clear
errors for damaged files, map_location, and no unpickling ever."""
import io
import json
import math
import os
import pickle
import signal
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


def test_saved_file_has_a_normal_files_mode(tmp_path):
    path, _ = _good_file(tmp_path)
    mask = os.umask(0o022)
    try:
        px.save([1], path)
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644
