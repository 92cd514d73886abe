"""2-rank DDP and FSDP (fully_shard) on CuPy arrays over MPI against one process on the
concatenated batch.

    mpirun -n 2 python tests/gpu/mpi_ddp_cupy.py

NCCL refuses two ranks on one GPU, so both ranks share GPU 0 and the gradients travel over MPI
(CUDA-aware, or staged through pinned host memory). Every rank also trains a plain copy on the
whole global batch; after each step the DDP model's weights, and the FSDP model's gathered
ones, must equal the copy's (float64).
Prints `OK <rank>` and exits 0 on success.
"""
import copy
import sys

import numpy as np

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed import mpi_backend

B = 8


def main():
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    px.cuda.set_device(0)
    px.manual_seed(1234 + rank)            # DDP must broadcast rank 0's weights
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4)).double().cuda()
    ddp = DDP(model)
    ref = copy.deepcopy(model)
    opt = px.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    ref_opt = px.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = px.tensor(rng.standard_normal((world * B, 10)), device="cuda")
        y = px.tensor(rng.integers(0, 4, world * B), device="cuda")
        opt.zero_grad()
        F.cross_entropy(ddp(x[rank * B:(rank + 1) * B]), y[rank * B:(rank + 1) * B]).backward()
        opt.step()
        ref_opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        ref_opt.step()
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            diff = float((p - q).abs().max())
            if not diff < 1e-10:
                print(f"rank {rank} step {step}: {name} differs from the 1-process result by "
                      f"{diff}", flush=True)
                return 1
    if check_fsdp(rank, world):
        return 1
    print(f"OK {rank}: 2-rank DDP and FSDP on CuPy arrays over MPI match one process "
          f"(CUDA-aware MPI: {mpi_backend.cuda_aware()})", flush=True)
    dist.destroy_process_group()
    return 0


def check_fsdp(rank, world):
    """fully_shard per layer and at the root; AdamW; whole weights against the copy's."""
    from phalanx.distributed.fsdp import fully_shard
    px.manual_seed(99)
    model = nn.Sequential(nn.Linear(10, 33), nn.Tanh(), nn.Linear(33, 4)).double().cuda()
    ref = copy.deepcopy(model)
    fully_shard(model[0])
    fully_shard(model)
    opt = px.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = px.optim.AdamW(ref.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    for step in range(3):
        x = px.tensor(rng.standard_normal((world * B, 10)), device="cuda")
        y = px.tensor(rng.integers(0, 4, world * B), device="cuda")
        F.cross_entropy(model(x[rank * B:(rank + 1) * B]), y[rank * B:(rank + 1) * B]).backward()
        opt.step()
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        ref_opt.step()
        ref_opt.zero_grad()
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            whole = p.full_tensor()
            diff = float((whole - q).abs().max())
            if not (whole.is_cuda and diff < 1e-10):
                print(f"rank {rank} step {step}: FSDP's {name} (on {whole.device}) differs "
                      f"from the 1-process result by {diff}", flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
