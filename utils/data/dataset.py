"""`torch.utils.data.dataset`'s names, from `phalanx.data`."""
from ...data import (ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset,
                     Subset, TensorDataset, random_split)

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset",
           "StackDataset", "Subset", "random_split"]
