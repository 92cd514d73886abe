"""The GPU path's plumbing, checked on the CPU: stand-ins for CuPy where a GPU would be needed.

- `backend.writeable` for arrays without NumPy's writeable flag (CuPy's);
- `Function.apply` makes the first CuPy input's GPU current, only when it is not already;
- random numbers are drawn from the generator of the tensor's device (a CPU generator for a
  GPU tensor is an error, as in PyTorch); a GPU generator's state is (seed, offset);
- DDP's `device_ids` / `output_device` with PyTorch's rules; the DataLoader's `pin_memory`
  without a GPU warns and does nothing;
- dtypes: max/min gradients and SyncBatchNorm statistics keep the input's precision or better.
"""
import types
import warnings

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
from phalanx.autograd import function
from phalanx.tensor import backend
from phalanx.tensor import random as prandom

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(60)]


def test_writeable_without_a_writeable_flag():
    def fake(shape, strides):  # a CuPy array: flags without `writeable`
        return types.SimpleNamespace(flags=types.SimpleNamespace(c_contiguous=True),
                                     shape=shape, strides=strides)
    assert backend.writeable(fake((3, 4), (16, 4)))
    assert not backend.writeable(fake((3, 4), (0, 4)))       # a broadcast view
    assert backend.writeable(fake((1, 4), (0, 4)))           # a zero stride over length 1
    assert not backend.writeable(np.broadcast_to(np.ones(3), (2, 3)))
    assert backend.writeable(np.ones(3))


class _FakeCupyArray:
    def __init__(self, device_id):
        self.device = types.SimpleNamespace(id=device_id)


def _fake_cupy(current):
    made = []

    class Device:
        def __init__(self, idx):
            self.idx = idx
            made.append(idx)

        def __enter__(self):
            current[0], self.prev = self.idx, current[0]

        def __exit__(self, *exc):
            current[0] = self.prev

    cuda = types.SimpleNamespace(Device=Device,
                                 runtime=types.SimpleNamespace(getDevice=lambda: current[0]))
    return types.SimpleNamespace(ndarray=_FakeCupyArray, cuda=cuda), made


def test_apply_makes_the_inputs_gpu_current(monkeypatch):
    current = [0]
    cp, made = _fake_cupy(current)
    monkeypatch.setattr(backend, "_cupy", cp)
    monkeypatch.setattr(function, "gpu_guard", backend._gpu_guard)
    seen = []

    class Probe(function.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(current[0])
            return px.zeros(1)

    on_gpu1 = types.SimpleNamespace(_data=_FakeCupyArray(1), requires_grad=False)
    on_gpu0 = types.SimpleNamespace(_data=_FakeCupyArray(0), requires_grad=False)
    Probe.apply(on_gpu1)
    Probe.apply(on_gpu0)
    Probe.apply(px.ones(1))
    assert seen == [1, 0, 0] and current == [0]
    assert made == [1]          # only when the input's GPU was not the current one


def test_a_cupy_array_made_before_phalanx_loaded_cupy_gets_cupy(monkeypatch):
    fake = types.SimpleNamespace(get_array_module=lambda a: "cupy module")
    loads = []
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "cupy", lambda: loads.append(1) or
                        monkeypatch.setattr(backend, "_cupy", fake))
    ndarray = type("ndarray", (), {"__module__": "cupy._core.core"})
    assert backend.array_module(np.zeros(1)) is np and backend.array_module(1.0) is np
    assert not loads
    assert backend.array_module(ndarray()) == "cupy module" and loads == [1]


def test_without_cupy_apply_pays_no_device_guard():
    if backend._cupy is None:
        assert function.gpu_guard is None


def test_generator_device_must_match_the_tensor(monkeypatch):
    # as_device("cuda") needs a GPU; stand in for it so that the comparison itself is checked
    monkeypatch.setattr(prandom, "as_device", lambda d: backend.Device("cuda", 0))
    cpu_gen = px.Generator()
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
        prandom._gen(cpu_gen, "cuda")
    assert prandom._gen(cpu_gen, "cpu") is cpu_gen._rng
    assert isinstance(prandom._gen(None, "cuda"), prandom._CudaStream)


def test_cuda_generator_state_is_seed_and_offset():
    g = prandom.Generator(backend.Device("cuda", 0))   # no GPU needed until it draws
    g.manual_seed(1234)
    g._rng.offset = 4096
    state = g.get_state()
    assert state.dtype == px.uint8 and tuple(state.shape) == (16,)
    h = prandom.Generator(backend.Device("cuda", 0)).set_state(state)
    assert h.initial_seed() == 1234 and h._rng.offset == 4096
    with pytest.raises(ValueError, match="16 bytes"):
        h.set_state(px.zeros(48, dtype=px.uint8))
    with pytest.raises(RuntimeError, match="no NumPy stream"):
        g.numpy


def test_random_functions_draw_where_the_tensor_lives():
    px.manual_seed(5)
    a = px.rand(3, 4)
    px.manual_seed(5)
    b = px.rand(3, 4, generator=px.default_generator)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    m = px.normal(px.zeros(2, 3), px.ones(3))
    assert tuple(m.shape) == (2, 3) and m.dtype == px.float32
    assert px.bernoulli(px.full((4,), 0.5)).dtype == px.float32


def test_ddp_device_ids_follow_pytorch(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "PHALANX_STORE_ENDPOINT", "OMPI_COMM_WORLD_RANK",
                 "PMI_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group()
    try:
        net = nn.Linear(3, 2)
        with pytest.raises(NotImplementedError, match="one device per process"):
            nn.parallel.DistributedDataParallel(net, device_ids=[0, 1])
        with pytest.raises(ValueError, match="single-device GPU modules"):
            nn.parallel.DistributedDataParallel(net, device_ids=[0])
        with pytest.raises(ValueError, match="output_device must be None"):
            nn.parallel.DistributedDataParallel(net, output_device=0)
        ddp = nn.parallel.DistributedDataParallel(net)        # a CPU module: as before
        assert tuple(ddp(px.ones(4, 3)).shape) == (4, 2)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(px.cuda.is_available(), reason="checks the machine without a GPU")
def test_pin_memory_without_a_gpu_warns_and_does_nothing():
    data = [np.float32(i) for i in range(4)]
    with pytest.warns(UserWarning, match="no accelerator is found"):
        loader = px.utils.data.DataLoader(data, batch_size=2, pin_memory=True)
    batch = next(iter(loader))
    assert not batch.is_pinned()
    with pytest.raises(NotImplementedError, match="pin_memory_device"):
        px.utils.data.DataLoader(data, pin_memory=True, pin_memory_device="xpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        px.utils.data.DataLoader(data, pin_memory=False)    # no warning when not asked
    x = px.ones(3)
    assert x.to("cpu", non_blocking=True) is x


def test_max_min_gradients_keep_the_input_dtype():
    for dtype in (px.float32, px.float16):
        x = px.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], dtype=dtype, requires_grad=True)
        (x.amax(1).sum() + x.min()).backward()
        assert x.grad.dtype == dtype
        np.testing.assert_allclose(x.grad.float().numpy(), [[0, .5, .5], [.5, 1, .5]])


class _GroupOfTwo:
    """A process group whose other rank holds the same data (allgather = two copies)."""

    size = 2

    def allgather(self, out, local):
        out[...] = local
        return types.SimpleNamespace(result=lambda: None)

    def allreduce(self, arr, op):
        arr *= 2
        return types.SimpleNamespace(result=lambda: None)


def test_sync_batchnorm_statistics_are_exact_past_float16_counts():
    from phalanx.distributed.sync_batchnorm import _SyncBatchNormFunction
    rng = np.random.default_rng(0)
    # 2583 values per channel and rank: odd and past 2048, so float16 cannot hold the count
    x = px.tensor(rng.standard_normal((41, 2, 7, 9)).astype(np.float16), requires_grad=True)
    stats = {}
    y = _SyncBatchNormFunction.apply(x, None, None, 1e-5, _GroupOfTwo(), stats)
    assert float(stats["count"]) == 2 * 41 * 63 and stats["count"].dtype == np.float32
    assert y.dtype == px.float16
    ref = nn.functional.batch_norm(x.float(), None, None, training=True)
    np.testing.assert_allclose(y.detach().float().numpy(), ref.detach().numpy(), atol=2e-3)
    y.backward(px.ones_like(y))
    assert x.grad.dtype == px.float16 and np.isfinite(x.grad.float().numpy()).all()


def test_a_bare_cuda_device_is_the_current_gpu(monkeypatch):
    current = [2]
    cp, _ = _fake_cupy(current)
    monkeypatch.setattr(backend, "_cupy", cp)
    assert backend.Device("cuda") == "cuda:2" and backend.Device("cuda:0").index == 0
    current[0] = 1                                   # what phalanx.cuda.set_device(1) does
    assert str(backend.Device("cuda")) == "cuda:1"
