"""The DistributedDataParallel tutorial's basic demo (in the style of the PyTorch "Getting
Started with DDP" tutorial): mp.spawn starts one process per rank, each sets MASTER_ADDR /
MASTER_PORT and joins a "gloo" group with an explicit rank and world size, wraps a toy model
in DDP and trains it."""
import argparse
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.optim as optim
from torch.nn.parallel import DistributedDataParallel as DDP


def setup(rank, world_size, port):
    os.environ['MASTER_ADDR'] = 'localhost'
    os.environ['MASTER_PORT'] = str(port)
    # initialize the process group
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def cleanup():
    dist.destroy_process_group()


class ToyModel(nn.Module):
    def __init__(self):
        super(ToyModel, self).__init__()
        self.net1 = nn.Linear(10, 10)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(10, 5)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def demo_basic(rank, world_size, steps, port):
    print(f"Running basic DDP example on rank {rank}.")
    setup(rank, world_size, port)
    torch.manual_seed(0)
    inputs = torch.randn(64, 10)
    labels = inputs[:, :5] * 2.0 - inputs[:, 5:]
    shard = slice(rank * 32, (rank + 1) * 32)

    # create model and move it to GPU with id rank
    model = ToyModel()
    ddp_model = DDP(model)

    loss_fn = nn.MSELoss()
    optimizer = optim.SGD(ddp_model.parameters(), lr=0.05)
    for step in range(steps):
        optimizer.zero_grad()
        outputs = ddp_model(inputs[shard])
        loss = loss_fn(outputs, labels[shard])
        loss.backward()
        optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        if rank == 0:
            print('loss {}'.format(total.item() / world_size), flush=True)
    cleanup()
    print(f"Finished running basic DDP example on rank {rank}.")


def run_demo(demo_fn, world_size, steps, port):
    mp.spawn(demo_fn,
             args=(world_size, steps, port),
             nprocs=world_size,
             join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--port', type=int, default=12355)
    args = parser.parse_args()
    run_demo(demo_basic, 2, args.steps, args.port)
