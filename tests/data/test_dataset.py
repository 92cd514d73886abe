"""Datasets, random_split and samplers, compared with torch.utils.data where the order is
defined, and by their properties where it is random."""
import numpy as np
import pytest
import torch
import torch.utils.data as tud

import phalanx as px
from phalanx.data import (BatchSampler, ChainDataset, ConcatDataset, IterableDataset,
                          RandomSampler, SequentialSampler, Subset, SubsetRandomSampler,
                          TensorDataset, WeightedRandomSampler, random_split)


def test_tensor_dataset_items_and_errors():
    x, y = px.arange(12).reshape(6, 2), px.arange(6) * 10
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    a, b = ds[4]
    assert a.tolist() == [8, 9] and b.item() == 40
    with pytest.raises(ValueError, match=r"same size in its first dimension.*\(6, 2\).*\(5,\)"):
        TensorDataset(x, px.arange(5))


def test_subset_and_concat_match_torch():
    a, b = list(range(5)), list(range(100, 103))
    ours = ConcatDataset([Subset(a, [4, 0, 2]), b])
    theirs = tud.ConcatDataset([tud.Subset(a, [4, 0, 2]), b])
    assert len(ours) == len(theirs) == 6
    assert [ours[i] for i in range(-6, 6)] == [theirs[i] for i in range(-6, 6)]
    assert ours.cumulative_sizes == theirs.cumulative_sizes
    for bad in (6, -7):
        with pytest.raises(IndexError, match="out of range"):
            ours[bad]


def test_concat_rejects_iterable_and_chain_iterates():
    class Count(IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n

    with pytest.raises(TypeError, match="ChainDataset"):
        ConcatDataset([Count(2)])
    chain = Count(2) + Count(3)
    assert isinstance(chain, ChainDataset) and list(chain) == [0, 1, 0, 1, 2] and len(chain) == 5


@pytest.mark.parametrize("n, lengths", [(10, [3, 7]), (10, [0.3, 0.7]), (11, [0.5, 0.25, 0.25]),
                                        (7, [0.1, 0.9]), (5, [1.0])])
def test_random_split_partitions_like_torch(n, lengths):
    ours = random_split(range(n), lengths, generator=px.Generator().manual_seed(1))
    theirs = tud.random_split(range(n), lengths, generator=torch.Generator().manual_seed(1))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    flat = [i for s in ours for i in (s[j] for j in range(len(s)))]
    assert sorted(flat) == list(range(n))
    again = random_split(range(n), lengths, generator=px.Generator().manual_seed(1))
    assert [s.indices for s in again] == [s.indices for s in ours]


def test_random_split_follows_the_global_seed_and_rejects_bad_lengths():
    px.manual_seed(3)
    first = random_split(range(20), [10, 10])[0].indices
    px.manual_seed(3)
    assert random_split(range(20), [10, 10])[0].indices == first
    assert first != list(range(10))
    with pytest.raises(ValueError, match=r"sum of input lengths \(9\).*\(10\)"):
        random_split(range(10), [4, 5])


def test_sequential_and_batch_sampler_match_torch():
    data = range(10)
    assert list(SequentialSampler(data)) == list(tud.SequentialSampler(data))
    for bs in (1, 3, 5, 11):
        for drop in (False, True):
            ours = BatchSampler(SequentialSampler(data), bs, drop)
            theirs = tud.BatchSampler(tud.SequentialSampler(data), bs, drop)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(data, 0, False)


def test_random_sampler_permutes_and_is_seeded():
    data = range(50)
    g = px.Generator().manual_seed(7)
    first = list(RandomSampler(data, generator=g))
    assert sorted(first) == list(data) and first != list(data)
    assert list(RandomSampler(data, generator=px.Generator().manual_seed(7))) == first
    second = list(RandomSampler(data, generator=g))
    assert second != first  # the generator moves on: a new order per epoch
    px.manual_seed(0)
    a = list(RandomSampler(data))
    px.manual_seed(0)
    assert list(RandomSampler(data)) == a


@pytest.mark.parametrize("replacement, num_samples", [(False, 23), (False, 120), (True, 40)])
def test_random_sampler_num_samples(replacement, num_samples):
    s = RandomSampler(range(50), replacement, num_samples, px.Generator().manual_seed(0))
    drawn = list(s)
    assert len(drawn) == len(s) == num_samples == len(tud.RandomSampler(range(50), replacement,
                                                                        num_samples))
    assert all(0 <= i < 50 for i in drawn)
    if not replacement:  # each full pass is a permutation
        counts = np.bincount(drawn, minlength=50)
        assert counts.max() - counts.min() <= 1
    else:
        assert len(set(drawn)) < num_samples  # 40 draws from 50 with replacement repeat (p~1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(5), num_samples=0)


def test_subset_and_weighted_samplers():
    idx = [3, 9, 27, 81]
    drawn = list(SubsetRandomSampler(idx, generator=px.Generator().manual_seed(2)))
    assert sorted(drawn) == idx
    w = WeightedRandomSampler([0, 0, 1, 0], 20, generator=px.Generator().manual_seed(0))
    assert list(w) == [2] * 20
    w = WeightedRandomSampler([1, 1, 1, 1], 4, replacement=False,
                              generator=px.Generator().manual_seed(0))
    assert sorted(w) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler([1, 0], 2, replacement=False)
