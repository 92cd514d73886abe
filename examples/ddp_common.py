"""What the data-parallel examples share: the process group, rank-0 output, per-epoch seeding,
metrics summed over ranks, and checkpoints that resume a run exactly.

Every example runs unchanged as `python x.py` (a world of one), `mpirun -n N python x.py` and
`phalanx run --nproc-per-node N x.py`: `init_process_group()` finds the ranks in the
environment. The examples import this file as a sibling module (`python examples/x.py` puts
this folder on the import path).

Resuming is exact because nothing random is carried from one epoch to the next: the generator
is reseeded from (seed, rank, epoch) at the start of every epoch, and `DistributedSampler`'s
order depends only on (seed, epoch). A checkpoint saved at the end of an epoch therefore holds
all the state there is: model, optimizer, schedule and the epoch counter.
"""
import argparse
import hashlib
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import phalanx as px
import phalanx.distributed as dist
from phalanx.data import Subset


def parser(description, checkpoint):
    """The flags every example has; each adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=checkpoint, help="saved after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="stop once epoch EPOCH is saved, as if interrupted (then --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="TensorBoard log folder (rank 0 writes it when the tensorboard package "
                        "is installed; default: runs/ beside --checkpoint; '' for none)")
    return p


def _summary_writer(args):
    """Rank 0's SummaryWriter, or None without the tensorboard package or with --tensorboard ''."""
    folder = args.tensorboard
    if folder is None:
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        folder = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "runs", name)
    if not folder:
        return None
    try:
        from phalanx.utils.tensorboard import SummaryWriter
        return SummaryWriter(folder)
    except ImportError:
        return None


class Run:
    """One rank's view of a training run: `rank`, `world`, `print` (rank 0 only), `progress`
    bars, per-epoch seeding, sums over ranks and checkpoints."""

    def __init__(self, args):
        dist.init_process_group()
        self.args = args
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.start = time.perf_counter()
        self.writer = _summary_writer(args) if self.rank == 0 else None
        self.print(f"{self.world} rank(s), backend {dist.get_backend()}")

    def print(self, *values):
        if self.rank == 0:
            tqdm.write(" ".join(str(v) for v in values))   # clears rank 0's bar first
            sys.stdout.flush()

    def log(self, step, **scalars):
        """Rank 0 logs `scalars` (name=value) at `step` to TensorBoard, when it writes a log."""
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, float(value), step)
            self.writer.flush()

    def elapsed(self):
        return time.perf_counter() - self.start

    def progress(self, iterable, desc, total=None):
        return tqdm(iterable, desc=desc, total=total, leave=False,
                    disable=self.rank != 0 or self.args.no_progress)

    def seed_epoch(self, epoch):
        """Reseed this rank's generator for `epoch` (augmentation, dropout, sampling differ
        between ranks and epochs, and a resumed run draws the same numbers)."""
        px.manual_seed(self.args.seed * 1_000_003 + epoch * 1_009 + self.rank)

    def shard(self, dataset):
        """Every world-th sample, starting at this rank's: for evaluation over all ranks."""
        return Subset(dataset, list(range(self.rank, len(dataset), self.world)))

    def sum(self, *values):
        """The sums over ranks of these numbers (as Python floats)."""
        total = px.tensor([float(v) for v in values], dtype=px.float64)
        dist.all_reduce(total)
        return total.tolist()

    # ---- checkpoints -------------------------------------------------------------------
    def load(self):
        """The checkpoint to resume from (asked for with --resume, or implied when
        `phalanx run` restarts the job), or None to start afresh."""
        resume = self.args.resume or int(os.environ.get("RESTART_COUNT", "0")) > 0
        if not (resume and os.path.exists(self.args.checkpoint)):
            return None
        state = px.load(self.args.checkpoint, map_location="cpu")
        self.print(f"resumed from {self.args.checkpoint} after epoch {state['epoch']}")
        return state

    def save(self, state):
        """Rank 0 writes `state` (which names its `epoch`); nobody reads it before it is
        complete. Returns True when --stop-after says to stop here."""
        if self.rank == 0:
            px.save(state, self.args.checkpoint)
        dist.barrier()
        stop = self.args.stop_after is not None and state["epoch"] >= self.args.stop_after
        if stop:
            self.print(f"stopping after epoch {state['epoch']} as asked; continue with --resume")
        return stop

    def check_replicas(self, *models):
        """Print (rank 0) that every rank holds the same weights, or raise showing which
        differ: data-parallel training keeps the replicas identical."""
        digest = hashlib.sha256()
        for model in models:
            for name, value in model.state_dict().items():
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(value.detach().numpy()).tobytes())
        digests = [None] * self.world
        dist.all_gather_object(digests, digest.hexdigest())
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks' weights differ (sha256 per rank: {digests}); "
                               f"every rank must train through DistributedDataParallel")
        self.print(f"weights identical on all {self.world} rank(s) (sha256 {digests[0][:16]})")

    def finish(self):
        if self.writer is not None:
            self.writer.close()
        dist.destroy_process_group()
