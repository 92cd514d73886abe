"""`torch.utils.data.sampler`'s names, from `phalanx.data`."""
from ...data import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                     SubsetRandomSampler, WeightedRandomSampler)

__all__ = ["BatchSampler", "RandomSampler", "Sampler", "SequentialSampler",
           "SubsetRandomSampler", "WeightedRandomSampler"]
