"""Data-parallel training of a small CNN on scikit-learn's 8x8 handwritten digits.

    python examples/ddp_digits.py                                     # one process
    mpirun -n 2 python examples/ddp_digits.py                         # MPI
    phalanx run --standalone --nproc-per-node 2 examples/ddp_digits.py
    ... --resume                                     # continue from the last checkpoint

The same script runs unchanged in all three ways: `init_process_group()` finds the ranks in
the environment (a world of one without a launcher). Each rank trains on its
`DistributedSampler` shard; `DistributedDataParallel` averages the gradients during backward,
and `SyncBatchNorm` normalises over the global batch, so N ranks with per-rank batch B train
like one process with batch N*B. Rank 0 shows a tqdm bar, prints one line per epoch and the
final test accuracy (evaluated on all ranks' shards of the test set, summed with all_reduce),
and saves a checkpoint (model, optimizer, LR schedule, epoch) with `px.save` after every epoch. `--resume`
(implied when `phalanx run` restarts the job) continues from that checkpoint.
Data: pip install 'phalanx[examples]' (scikit-learn; nothing is downloaded).
"""
import argparse
import os
import time

from tqdm import tqdm

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler, Subset
from phalanx.data.datasets import load_digits
from phalanx.nn import functional as F


def build_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model, dataset, rank, world):
    """Accuracy over the whole dataset: each rank scores every world-th sample."""
    model.eval()
    shard = Subset(dataset, list(range(rank, len(dataset), world)))
    counts = px.zeros(2, dtype=px.float64)
    with px.no_grad():
        for x, y in DataLoader(shard, batch_size=256):
            counts += px.tensor([float((model(x).argmax(1) == y).sum().item()), float(len(y))],
                                dtype=px.float64)
    dist.all_reduce(counts)
    model.train()
    return counts[0].item() / counts[1].item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=0.02, help="for a global batch of 32; scaled "
                   "linearly with the number of ranks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="ddp_digits.ckpt")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    px.manual_seed(args.seed)
    train_set, test_set = load_digits()
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)

    model = dist.DistributedDataParallel(
        dist.SyncBatchNorm.convert_sync_batchnorm(build_model()))
    optimizer = px.optim.SGD(model.parameters(), lr=args.lr * world, momentum=0.9,
                             weight_decay=1e-4)
    schedule = px.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    start = 0
    resume = args.resume or int(os.environ.get("RESTART_COUNT", "0")) > 0
    if resume and os.path.exists(args.checkpoint):
        state = px.load(args.checkpoint, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = int(state["epoch"])
        if rank == 0:
            print(f"resumed from {args.checkpoint} after epoch {start}", flush=True)
    if rank == 0:
        print(f"{world} rank(s), backend {dist.get_backend()}, global batch "
              f"{args.batch_size * world}", flush=True)

    t0 = time.perf_counter()
    for epoch in range(start, args.epochs):
        sampler.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                   disable=rank != 0 or args.no_progress)
        for x, y in bar:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        schedule.step()
        accuracy = evaluate(model, test_set, rank, world)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy "
                  f"{accuracy:.2%} ({time.perf_counter() - t0:.1f} s)", flush=True)
            px.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "epoch": epoch + 1}, args.checkpoint)
        dist.barrier()              # nobody reads the checkpoint before it is complete
    accuracy = evaluate(model, test_set, rank, world)
    if rank == 0:
        print(f"final test accuracy: {accuracy:.2%}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
