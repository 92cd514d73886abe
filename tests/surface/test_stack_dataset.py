"""StackDataset: tuples or dicts of samples, as torch.utils.data.StackDataset gives."""
import pytest
import torch

import phalanx as px
from phalanx.utils.data import DataLoader, StackDataset, TensorDataset
from phalanx.utils.data.dataset import StackDataset as FromModule


def test_tuple_and_dict_samples_like_torch():
    assert FromModule is StackDataset
    a, b = list(range(5)), [x * 10 for x in range(5)]
    for args, kwargs in [((a, b), {}), ((), {"x": a, "y": b})]:
        ours, theirs = StackDataset(*args, **kwargs), torch.utils.data.StackDataset(*args,
                                                                                    **kwargs)
        assert len(ours) == len(theirs) == 5
        assert [ours[i] for i in range(5)] == [theirs[i] for i in range(5)]


def test_batches_through_the_dataloader():
    ds = StackDataset(image=TensorDataset(px.arange(6.0).reshape(6, 1)), label=list(range(6)))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert set(batch) == {"image", "label"} and batch["label"].tolist() == [0, 1, 2, 3]


def test_errors():
    with pytest.raises(ValueError, match="both types"):
        StackDataset([1], y=[2])
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset([1, 2], [3])
    with pytest.raises(ValueError, match="At least one"):
        StackDataset()
