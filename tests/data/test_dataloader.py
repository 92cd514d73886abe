"""DataLoader in the main process: batches and lengths compared with torch's DataLoader, seeded
shuffling, iterable datasets, and argument errors."""
import warnings

import numpy as np
import pytest
import torch.utils.data as tud

import phalanx as px
from phalanx.data import (BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler,
                          StackDataset, Subset, TensorDataset)


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


class NoLength(IterableDataset):
    def __iter__(self):
        return iter([1, 2, 3])


class TorchStream(tud.IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def _lists(loader):
    return [b.tolist() if hasattr(b, "tolist") else b for b in loader]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 12])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_batches_and_len_match_torch(batch_size, drop_last):
    data = list(range(10))
    ours = DataLoader(data, batch_size=batch_size, drop_last=drop_last)
    theirs = tud.DataLoader(data, batch_size=batch_size, drop_last=drop_last)
    assert _lists(ours) == _lists(theirs)
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_batches_and_len_match_torch(drop_last):
    ours = DataLoader(Stream(10), batch_size=4, drop_last=drop_last)
    theirs = tud.DataLoader(TorchStream(10), batch_size=4, drop_last=drop_last)
    assert _lists(ours) == _lists(theirs) and len(ours) == len(theirs)
    assert _lists(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]


def test_no_auto_batching_matches_torch():
    data = [np.arange(2) + i for i in range(3)]
    ours = list(DataLoader(data, batch_size=None))
    theirs = list(tud.DataLoader(data, batch_size=None))
    assert [o.tolist() for o in ours] == [t.tolist() for t in theirs]
    assert isinstance(ours[0], px.Tensor)


def test_tensor_dataset_batches_keep_dtypes():
    x = px.randn(10, 3)
    y = px.arange(10)
    xb, yb = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    assert xb.shape == (4, 3) and xb.dtype == px.float32 and yb.dtype == px.int64
    np.testing.assert_array_equal(xb.numpy(), x.numpy()[:4])


def test_shuffle_is_seeded_by_the_global_seed_and_changes_per_epoch():
    loader = DataLoader(range(20), batch_size=5, shuffle=True)
    px.manual_seed(0)
    e1, e2 = _lists(loader), _lists(loader)
    px.manual_seed(0)
    assert _lists(loader) == e1 and _lists(loader) == e2
    assert e1 != e2
    for epoch in (e1, e2):
        assert sorted(sum(epoch, [])) == list(range(20))


def test_shuffle_with_a_generator_ignores_the_global_seed():
    def run(global_seed):
        px.manual_seed(global_seed)
        g = px.Generator().manual_seed(5)
        return _lists(DataLoader(range(20), batch_size=6, shuffle=True, generator=g))
    assert run(0) == run(1) != _lists(DataLoader(range(20), batch_size=6))


def test_sampler_batch_sampler_and_collate_fn():
    data = list(range(10))
    assert _lists(DataLoader(data, sampler=[9, 8, 7], batch_size=2)) == [[9, 8], [7]]
    bs = BatchSampler(SequentialSampler(data), 4, drop_last=True)
    assert _lists(DataLoader(data, batch_sampler=bs)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(data, batch_sampler=bs)) == 2
    assert list(DataLoader(data, batch_size=4, collate_fn=sum)) == [6, 22, 17]
    with warnings.catch_warnings():  # without a GPU: warns and does nothing (tests/gpu_path)
        warnings.simplefilter("ignore")
        loader = DataLoader(data, batch_size=2, pin_memory=True)
    assert _lists(loader)[0] == [0, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_workers=-1), "num_workers option should be a non-negative integer"),
    (dict(timeout=-1), "timeout option should be non-negative"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified"),
    (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
    (dict(shuffle=True, sampler=[0, 1]), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
    (dict(batch_size=None, drop_last=True), "mutually exclusive with drop_last"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(list(range(4)), **kwargs)


def test_iterable_dataset_rejects_shuffle_and_samplers():
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler"):
        DataLoader(Stream(3), sampler=[0])
    with pytest.raises(TypeError):
        len(DataLoader(NoLength(), batch_size=2))


@pytest.mark.parametrize("name", ["batch_size", "batch_sampler", "sampler", "drop_last",
                                  "dataset", "persistent_workers"])
def test_settings_that_shape_the_batches_are_fixed_after_construction(name):
    # PyTorch raises too: the batch sampler is built from them in __init__
    loader = DataLoader(list(range(6)), batch_size=2)
    with pytest.raises(ValueError, match=f"{name} attribute should not be set after DataLoader "
                                         f"is initialized"):
        setattr(loader, name, getattr(loader, name))
    loader.num_workers = 0  # others may change, as in PyTorch
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]


class _Batched(Dataset):
    """Reads a whole batch at once (one query for many rows); no __getitem__ at all."""

    def __len__(self):
        return 6

    def __getitems__(self, indices):
        return [i * 10 for i in indices]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_datasets_with_getitems_read_a_batch_at_once(num_workers):
    expected = [b.tolist() for b in tud.DataLoader(_Batched(), batch_size=4)]
    assert [b.tolist() for b in DataLoader(_Batched(), batch_size=4,
                                           num_workers=num_workers)] == expected
    # Subset and StackDataset hand the batch on to the dataset they wrap
    subset = Subset(_Batched(), [5, 0, 3])
    assert [b.tolist() for b in DataLoader(subset, batch_size=2,
                                           num_workers=num_workers)] == [[50, 0], [30]]
    stack = StackDataset(_Batched(), px.arange(6))
    assert [[t.tolist() for t in b] for b in DataLoader(stack, batch_size=3)] == [
        [[0, 10, 20], [0, 1, 2]], [[30, 40, 50], [3, 4, 5]]]
    named = StackDataset(a=_Batched(), b=px.arange(6))
    assert {k: v.tolist() for k, v in next(iter(DataLoader(named, batch_size=2))).items()} == {
        "a": [0, 10], "b": [0, 1]}
