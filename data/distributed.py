"""`DistributedSampler`: each rank's share of a dataset, the same size on every rank."""
import math

from ..tensor import Generator, randperm
from .sampler import Sampler


def _world_default(what):
    """The world size or rank of the initialised process group (imported lazily: `data` sits
    below `distributed` in the dependency order)."""
    from .. import distributed as dist
    if not dist.is_initialized():
        raise RuntimeError(f"DistributedSampler needs {what}: call "
                           f"phalanx.distributed.init_process_group() first, or pass "
                           f"num_replicas= and rank= explicitly")
    return dist.get_world_size() if what == "num_replicas" else dist.get_rank()


class DistributedSampler(Sampler):
    """Rank `rank` of `num_replicas` gets indices `rank, rank + num_replicas, ...` of one
    (shuffled, for `shuffle=True`) ordering that every rank computes alike from `seed + epoch`.
    The ordering is padded by wrapping around (or, with `drop_last`, trimmed) so every rank gets
    `num_samples` indices. Call `set_epoch(epoch)` before each epoch for a new shuffle."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = _world_default("num_replicas")
        if rank is None:
            rank = _world_default("rank")
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.seed = seed
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            g = Generator().manual_seed(self.seed + self.epoch)
            indices = randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[:self.total_size]
        else:
            pad = self.total_size - len(indices)
            if pad and indices:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Shuffle differently in the next epoch (the same way on every rank)."""
        self.epoch = epoch
