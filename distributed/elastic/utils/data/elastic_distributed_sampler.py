"""`ElasticDistributedSampler`: a DistributedSampler over the dataset from `start_index` on,
so a restarted job skips the samples it already trained on (torchelastic's imagenet example
passes how far the last checkpoint got)."""
import math

from .....data.distributed import DistributedSampler
from .....tensor import Generator, randperm

__all__ = ["ElasticDistributedSampler"]


class ElasticDistributedSampler(DistributedSampler):
    """Indices `start_index, ..., len(dataset) - 1`, shuffled by the epoch alone (as
    PyTorch's: no `seed`, no `shuffle=False`), padded by wrapping to a multiple of
    `num_replicas` and dealt out one in `num_replicas`."""

    def __init__(self, dataset, num_replicas=None, rank=None, start_index=0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank)
        if start_index >= len(dataset):
            raise ValueError(f"Start index {start_index} should be less than dataset size "
                             f"{len(dataset)}")
        self.start_index = start_index
        self.num_samples = math.ceil((len(dataset) - start_index) / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        g = Generator().manual_seed(self.epoch)
        indices = (randperm(len(self.dataset) - self.start_index, generator=g)
                   + self.start_index).tolist()
        pad = self.total_size - len(indices)      # wrapped as often as needed (PyTorch
        indices += (indices * math.ceil(pad / len(indices)))[:pad]     # asserts past once)
        return iter(indices[self.rank:self.total_size:self.num_replicas])
