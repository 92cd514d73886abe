"""DDP communication hooks against PyTorch's, in a world of one: the same model, weights and
batch through PyTorch's DDP (gloo, one process) and Phalanx's, each with the same hook, must
give the same gradients. In a world of one the hooks' compression (float16, bfloat16, 8-bit
quantisation) is all that changes the gradients, so this checks their arithmetic;
tests/distributed/test_mpi_ddp.py checks the averaging across ranks.

Where PyTorch's own hook cannot run here, its arithmetic is rebuilt from PyTorch's parts on
PyTorch's uncompressed gradients: the bfloat16 hooks refuse anything but NCCL; the
quantisation hooks of PyTorch 2.13 fail on their own all-gather results (they index the first
rank's tensor as if it were the list), so for them the oracle is PyTorch's MinMax observers
and the hooks' quantise/dequantise functions; its batched PowerSGD hook fails on its first
compressed step (it orthogonalises a 2-D Q with a function that takes only batches of
matrices), so batched PowerSGD of full rank is checked to be exact."""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed.algorithms import ddp_comm_hooks as hooks

torch = pytest.importorskip("torch")
tdist = pytest.importorskip("torch.distributed")
from torch.distributed.algorithms import ddp_comm_hooks as torch_hooks  # noqa: E402

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    if not tdist.is_gloo_available():
        pytest.skip("this PyTorch build has no gloo")
    store = tmp_path_factory.mktemp("torch_store") / "store"
    tdist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    dist.init_process_group()
    yield
    dist.destroy_process_group()
    tdist.destroy_process_group()


def _hook(module, name):
    """(state, hook) from one of the two libraries' ddp_comm_hooks packages."""
    default, power = module.default_hooks, module.powerSGD_hook
    if name == "batched_powerSGD_full":
        return power.PowerSGDState(None, matrix_approximation_rank=33, start_powerSGD_iter=2,
                                   min_compression_rate=0), power.batched_powerSGD_hook
    if name.endswith("_wrapper"):
        wrap = getattr(default, name)
        return None, wrap(default.allreduce_hook)
    for sub in (default, module.quantization_hooks, module.debugging_hooks):
        if hasattr(sub, name):
            return None, getattr(sub, name)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["fp16_compress_hook", "bf16_compress_hook",
                                  "fp16_compress_wrapper", "bf16_compress_wrapper",
                                  "quantization_pertensor_hook", "quantization_perchannel_hook",
                                  "noop_hook", "batched_powerSGD_full"])
def test_hooks_match_pytorch(worlds, name):
    rng = np.random.default_rng(0)
    # 20*40+40 + 40*5+5 = 1045 numbers in one bucket: three rows of the per-channel hook, a
    # 33 x 33 matrix for batched PowerSGD (of full rank 33: exact)
    px_model = nn.Sequential(nn.Linear(20, 40), nn.Tanh(), nn.Linear(40, 5))
    t_model = torch.nn.Sequential(torch.nn.Linear(20, 40), torch.nn.Tanh(),
                                  torch.nn.Linear(40, 5))
    for p, q in zip(px_model.parameters(), t_model.parameters()):
        q.data = torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.3)
        p.data = px.tensor(q.data.numpy().copy())
    px_ddp, t_ddp = DDP(px_model), torch.nn.parallel.DistributedDataParallel(t_model)
    px_ddp.register_comm_hook(*_hook(hooks, name))
    if name not in REBUILT:
        t_ddp.register_comm_hook(*_hook(torch_hooks, name))
    for step in range(3):          # PowerSGD: two plain steps, then compressed
        x = rng.standard_normal((8, 20)).astype(np.float32) * 3
        y = rng.integers(0, 5, 8)
        px_ddp.zero_grad()
        t_ddp.zero_grad()
        F.cross_entropy(px_ddp(px.tensor(x)), px.tensor(y)).backward()
        torch.nn.functional.cross_entropy(t_ddp(torch.tensor(x)), torch.tensor(y)).backward()
        # the one bucket holds the parameters last to first, as in both libraries
        ours = np.concatenate([p.grad.numpy().ravel() for p in px_model.parameters()][::-1])
        theirs = torch.cat([q.grad.ravel() for q in t_model.parameters()][::-1])
        theirs = (REBUILT[name](theirs) if name in REBUILT else theirs).numpy()
        same_but_for_rounding(ours, theirs, _step(name, theirs), f"{name}, step {step}")


def _bf16(flat):
    return flat.to(torch.bfloat16).to(flat.dtype)


def _per_tensor(flat):
    from torch.distributed.algorithms.ddp_comm_hooks import quantization_hooks as q
    observer = torch.ao.quantization.MinMaxObserver()
    observer(flat)
    s, z = observer.calculate_qparams()
    sz = torch.tensor([float(s), float(z)])
    return q._dequantize_per_tensor_backend(q._quantize_per_tensor_backend(flat, sz[0], sz[1]),
                                            sz[0], sz[1])


def _per_channel(flat, bucket_size=512):
    from torch.distributed.algorithms.ddp_comm_hooks import quantization_hooks as q
    rows = torch.nn.functional.pad(flat, (0, bucket_size - len(flat) % bucket_size))
    rows = rows.view(-1, bucket_size)
    observer = torch.ao.quantization.PerChannelMinMaxObserver()
    observer(rows)
    s, z = observer.calculate_qparams()
    sz = torch.stack((s, z)).float()
    out = q._dequantize_per_channel_backend(q._quantize_per_channel_backend(rows, sz[0], sz[1]),
                                            sz[0], sz[1])
    return out.flatten()[:len(flat)]


# hooks whose arithmetic is rebuilt from PyTorch's parts (see the module's docstring)
REBUILT = {"bf16_compress_hook": _bf16, "bf16_compress_wrapper": _bf16,
           "quantization_pertensor_hook": _per_tensor,
           "quantization_perchannel_hook": _per_channel,
           "batched_powerSGD_full": lambda flat: flat}


def _step(name, grads):
    """How far apart the two may be where a float32 gradient that differs in its last bits
    (the libraries sum in different orders) rounds to the other side: one unit of the
    compressed format."""
    if "fp16" in name:
        return np.maximum(np.abs(grads) * 2.0 ** -10, 2.0 ** -24)
    if "bf16" in name:
        return np.abs(grads) * 2.0 ** -7
    if "quantization" in name:
        return np.full(grads.shape, (grads.max() - min(grads.min(), 0)) / 255 * 1.01)
    return np.abs(grads) * 1e-5 + 1e-7


def same_but_for_rounding(ours, theirs, step, what):
    """Within one step everywhere, and equal (to float32 noise) but for a few elements."""
    diff = np.abs(ours - theirs)
    assert (diff <= step).all(), f"{what}: off by {diff.max():g} (step {step.max():g})"
    rounded_apart = np.mean(diff > np.abs(theirs) * 1e-5 + 1e-7)
    assert rounded_apart < 0.02, f"{what}: {rounded_apart:.1%} of the gradients differ"


def test_hooks_by_name(worlds):
    """register_ddp_comm_hook(DDPCommHookType.X, model) registers PyTorch's hook X; every one
    runs a step."""
    for kind in hooks.DDPCommHookType:
        ddp = DDP(nn.Linear(4, 3))
        hooks.register_ddp_comm_hook(kind, ddp)
        F.cross_entropy(ddp(px.randn(5, 4)), px.tensor([0, 1, 2, 0, 1])).backward()
        assert ddp.module.weight.grad is not None, kind
        assert ddp.reducer.comm_hook is not None
    assert [k.name for k in hooks.DDPCommHookType] == \
        [k.name for k in torch_hooks.DDPCommHookType]
