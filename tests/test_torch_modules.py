"""PyTorch's smaller modules that ported scripts import: torch.autograd.profiler,
torch.functional, torch.xpu, torch.compiler; broadcast_shapes; silent inf/nan."""
import importlib
import os
import subprocess
import sys

import pytest
import torch

import phalanx as px


def test_modules_import_under_pytorchs_paths():
    for name in ("autograd.profiler", "functional", "xpu", "compiler"):
        ours = importlib.import_module(f"phalanx.{name}")
        theirs = importlib.import_module(f"torch.{name}")
        shared = [n for n in ("profile", "record_function", "einsum", "broadcast_shapes",
                              "is_available", "device_count", "disable", "is_compiling")
                  if hasattr(theirs, n)]
        assert shared and all(hasattr(ours, n) for n in shared), name
    assert px.xpu.is_available() is torch.xpu.is_available() is False
    assert px.xpu.device_count() == torch.xpu.device_count() == 0
    assert px.compiler.is_compiling() is torch.compiler.is_compiling() is False

    @px.compiler.disable
    def f(x):
        return x + 1
    assert f(1) == 2 and px.compiler.disable(recursive=False)(f) is f


def test_legacy_profiler_records_the_block():
    import phalanx.autograd.profiler as profiler
    x = px.ones(50, 50)
    with profiler.profile(record_shapes=True) as prof:
        with profiler.record_function("my_block"):
            (x @ x).exp()
    names = {e.name for e in prof.function_events}
    assert {"my_block", "Exp"} <= names and prof.self_cpu_time_total > 0
    assert "my_block" in prof.key_averages().table(sort_by="self_cpu_time_total")
    with profiler.profile(enabled=False) as off:
        (x @ x).exp()
    with pytest.raises(RuntimeError, match="recorded nothing"):
        off.function_events
    with pytest.raises(NotImplementedError, match="records host-side spans only"):
        profiler.profile(use_cuda=True)


def test_export_stacks_writes_folded_stacks(tmp_path):
    def inner(x):
        return (x @ x).exp()

    with px.profiler.profile(with_stack=True) as prof:
        inner(px.ones(64, 64))
    path = tmp_path / "stacks.txt"
    prof.export_stacks(str(path))
    lines = path.read_text().splitlines()
    assert lines and all(line.rsplit(" ", 1)[1].isdigit() for line in lines)
    assert any("test_export_stacks_writes_folded_stacks;" in line and "inner" in line
               for line in lines), lines
    with pytest.raises(ValueError, match="metric should be one of"):
        prof.export_stacks(str(path), metric="cpu_time")


def test_broadcast_shapes_as_pytorchs():
    for shapes in [((2, 1), (3,)), (2, (3, 1)), ((5, 1, 4), (1, 3, 1), ()), ((0, 1), (3,))]:
        assert tuple(px.broadcast_shapes(*shapes)) == tuple(torch.broadcast_shapes(*shapes))
    assert isinstance(px.broadcast_shapes((2,)), px.Size)
    for lib in (px, torch):
        with pytest.raises(RuntimeError):
            lib.broadcast_shapes((2,), (3,))


def test_inf_and_nan_come_without_numpys_warnings():
    """Under -W error a script's inf/nan from Phalanx's ops pass silently (as PyTorch's); the
    script's own NumPy still warns."""
    parent = os.path.dirname(os.path.abspath(list(px.__path__)[0]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [parent,
                                                                   os.environ.get("PYTHONPATH")])))
    ours = "import phalanx as px; y = px.tensor([1.0, 0.0]) / 0; px.tensor([1e3]).exp().log()"
    done = subprocess.run([sys.executable, "-W", "error", "-c", ours], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    numpy_own = "import phalanx, numpy as np; np.ones(1) / 0"
    done = subprocess.run([sys.executable, "-W", "error", "-c", numpy_own], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "divide by zero" in done.stderr
