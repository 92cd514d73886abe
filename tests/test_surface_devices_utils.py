"""PyTorch's module paths and device queries: `phalanx.utils.data` (torch.utils.data and its
submodules), `phalanx.cuda`, `phalanx.accelerator` and `phalanx.backends` answering truthfully
on a machine without a usable GPU, and the lazy top-level attributes."""
import importlib

import numpy as np
import pytest

import phalanx as px
import phalanx.data

NO_GPU = not px.cuda.is_available()


def test_unknown_top_level_names_are_attribute_errors():
    assert not hasattr(px, "nonexistent")
    assert not hasattr(px.utils, "nonexistent")
    with pytest.raises(AttributeError, match="nonexistent"):
        px.nonexistent
    for name in ("utils", "cuda", "accelerator", "backends", "distributions"):
        assert hasattr(px, name) and name in dir(px)


@pytest.mark.parametrize("path, names", [
    ("phalanx.utils.data", ["DataLoader", "Dataset", "IterableDataset", "TensorDataset",
                            "DistributedSampler", "random_split", "Subset", "ConcatDataset",
                            "default_collate", "get_worker_info", "Sampler", "BatchSampler",
                            "RandomSampler", "SequentialSampler", "WeightedRandomSampler"]),
    ("phalanx.utils.data.dataloader", ["DataLoader", "default_collate", "get_worker_info"]),
    ("phalanx.utils.data.dataset", ["Dataset", "TensorDataset", "Subset", "random_split"]),
    ("phalanx.utils.data.sampler", ["Sampler", "RandomSampler", "BatchSampler"]),
    ("phalanx.utils.data.distributed", ["DistributedSampler"]),
])
def test_utils_data_paths_are_phalanx_data(path, names):
    mod = importlib.import_module(path)
    for name in names:
        assert getattr(mod, name) is getattr(phalanx.data, name), (path, name)


def test_utils_data_all_matches_torch_names_we_have():
    import torch.utils.data as tud
    ours = importlib.import_module("phalanx.utils.data")
    missing = {n for n in tud.__all__ if not hasattr(ours, n)}
    # the datapipes API (deprecated in PyTorch) and StackDataset are not provided
    assert missing <= {"DFIterDataPipe", "DataChunk", "IterDataPipe", "MapDataPipe",
                       "StackDataset", "_DatasetKind", "argument_validation",
                       "functional_datapipe", "guaranteed_datapipes_determinism",
                       "non_deterministic", "runtime_validation",
                       "runtime_validation_disabled"}, missing


def test_dataloader_through_utils_path_runs():
    from phalanx.utils.data import DataLoader, TensorDataset
    x, y = px.arange(10).float(), px.arange(10)
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [tuple(b[1].shape) for b in batches] == [(4,), (4,), (2,)]


@pytest.mark.skipif(not NO_GPU, reason="answers on a machine without a usable GPU")
class TestWithoutGpu:
    def test_queries_answer_truthfully(self):
        assert px.cuda.is_available() is False and px.cuda.device_count() == 0
        assert px.cuda.is_initialized() is False and px.cuda.is_bf16_supported() is False
        assert px.accelerator.is_available() is False
        assert px.accelerator.current_accelerator() is None
        assert px.accelerator.device_count() == 0
        assert px.backends.cudnn.is_available() is False and px.backends.cudnn.version() is None
        assert px.backends.mps.is_available() is False and px.backends.mps.is_built() is False
        assert px.backends.cuda.is_built() is False
        assert px.cuda.memory_allocated() == 0 and px.cuda.memory_reserved() == 0
        assert px.cuda.max_memory_allocated() == 0
        assert px.cuda.get_rng_state_all() == []

    def test_seeding_and_cache_are_silently_ignored(self):
        before = px.get_rng_state().numpy().copy()
        px.cuda.manual_seed(3)
        px.cuda.manual_seed_all(3)
        px.cuda.seed()
        px.cuda.seed_all()
        px.cuda.empty_cache()
        px.accelerator.empty_cache()
        assert (px.get_rng_state().numpy() == before).all()  # the CPU stream is untouched
        with px.cuda.device(None), px.cuda.device(-1), px.cuda.stream(None):
            pass

    @pytest.mark.parametrize("call", [
        lambda: px.cuda.current_device(), lambda: px.cuda.synchronize(),
        lambda: px.cuda.set_device(0), lambda: px.cuda.get_device_name(),
        lambda: px.cuda.get_device_capability(), lambda: px.cuda.get_device_properties(0),
        lambda: px.cuda.Stream(), lambda: px.cuda.Event(), lambda: px.cuda.current_stream(),
        lambda: px.cuda.get_rng_state(), lambda: px.cuda.set_rng_state(px.get_rng_state()),
        lambda: px.cuda.initial_seed(), lambda: px.cuda.init(),
        lambda: px.cuda.device(0).__enter__(), lambda: px.cuda.mem_get_info(),
    ])
    def test_device_calls_raise_one_clear_error(self, call):
        with pytest.raises(RuntimeError, match="no CUDA device available: .* needs an "
                                               "NVIDIA GPU, but"):
            call()

    @pytest.mark.parametrize("call", [
        lambda: px.accelerator.current_device_index(), lambda: px.accelerator.synchronize(),
        lambda: px.accelerator.set_device_index(0),
        lambda: px.accelerator.device_index(0).__enter__(),
    ])
    def test_accelerator_calls_raise_like_torch(self, call):
        with pytest.raises(RuntimeError, match="Cannot access accelerator device when none "
                                               "is available"):
            call()

    def test_moving_to_an_integer_device_names_cuda0(self):
        import phalanx.nn as nn
        for move in (lambda: px.ones(2).to(0), lambda: nn.Linear(2, 2).to(0),
                     lambda: px.ones(2).cuda(), lambda: px.zeros(2, device=0),
                     lambda: px.ones(2).to("cuda:0"), lambda: px.ones(2).type(
                         "torch.cuda.FloatTensor")):
            with pytest.raises(RuntimeError, match="cuda:0"):
                move()


def test_cudnn_flags_are_settable_attributes():
    cudnn = px.backends.cudnn
    old = (cudnn.benchmark, cudnn.deterministic, cudnn.enabled)
    try:
        cudnn.benchmark, cudnn.deterministic = True, True
        assert cudnn.benchmark and cudnn.deterministic and cudnn.enabled
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.enabled = old



def test_tf32_switch_is_the_matmul_precision_as_in_pytorch():
    """nanoGPT-style scripts set allow_tf32 = True at the top: a permission, read back as
    PyTorch reads it (through the float32 matmul precision); products stay full float32."""
    import torch
    seen = {}
    for lib in (px, torch):
        trail = [lib.backends.cuda.matmul.allow_tf32]
        lib.backends.cuda.matmul.allow_tf32 = True
        trail += [lib.backends.cuda.matmul.allow_tf32, lib.get_float32_matmul_precision()]
        lib.set_float32_matmul_precision("highest")
        trail.append(lib.backends.cuda.matmul.allow_tf32)
        lib.set_float32_matmul_precision("medium")
        trail.append(lib.backends.cuda.matmul.allow_tf32)
        lib.set_float32_matmul_precision("highest")
        seen[lib] = trail
    assert seen[px] == seen[torch] == [False, True, "high", False, True]
    px.backends.cuda.matmul.allow_tf32 = True
    try:
        a = px.tensor(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
        np.testing.assert_allclose((a @ a).numpy(), a.numpy() @ a.numpy(), rtol=1e-6)
    finally:
        px.backends.cuda.matmul.allow_tf32 = False


def test_an_op_that_runs_out_of_gpu_memory_raises_pytorchs_error():
    """`except torch.cuda.OutOfMemoryError` (or torch.OutOfMemoryError) catches an op whose
    CuPy allocation failed, CuPy's error chained; other memory errors pass as they are."""
    cupy_oom = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})

    class Allocates(px.autograd.Function):
        @staticmethod
        def forward(ctx, x, error):
            raise error("Out of memory allocating 8,589,934,592 bytes")

    assert px.OutOfMemoryError is px.cuda.OutOfMemoryError
    assert issubclass(px.cuda.OutOfMemoryError, RuntimeError)
    with pytest.raises(px.cuda.OutOfMemoryError, match="Allocates.*8,589,934,592") as e:
        Allocates.apply(px.ones(2), cupy_oom)
    assert isinstance(e.value.__cause__, cupy_oom)
    with pytest.raises(MemoryError) as e:
        Allocates.apply(px.ones(2), MemoryError)
    assert not isinstance(e.value, px.cuda.OutOfMemoryError)
