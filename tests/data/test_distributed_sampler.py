"""DistributedSampler: index lists equal to PyTorch's without shuffling; with shuffling (PyTorch
uses its own generator, which we cannot reproduce) the properties that matter."""
import pytest
import torch.utils.data as tud

from phalanx.data import DataLoader, DistributedSampler

CASES = [(10, 3), (10, 5), (7, 4), (3, 5), (16, 4), (1, 2)]


@pytest.mark.parametrize("n, replicas", CASES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shards_match_torch(n, replicas, drop_last):
    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = tud.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                        drop_last=drop_last)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs) == ours.num_samples
        assert ours.total_size == theirs.total_size


def _shards(n, replicas, epoch=0, seed=0, drop_last=False):
    out = []
    for rank in range(replicas):
        s = DistributedSampler(range(n), replicas, rank, shuffle=True, seed=seed,
                               drop_last=drop_last)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


@pytest.mark.parametrize("n, replicas", CASES)
def test_shuffled_shards_cover_the_data_with_equal_lengths(n, replicas):
    shards = _shards(n, replicas)
    assert len({len(s) for s in shards}) == 1
    flat = sum(shards, [])
    assert set(flat) == set(range(n))  # every sample is seen
    assert len(flat) - n == (-n) % replicas  # padding only to make the shards equal
    if n % replicas == 0:
        assert sorted(flat) == list(range(n))  # then the shards are disjoint


@pytest.mark.parametrize("n, replicas", [(10, 3), (7, 4), (16, 4)])
def test_drop_last_shards_are_disjoint_and_equal(n, replicas):
    shards = _shards(n, replicas, drop_last=True)
    flat = sum(shards, [])
    assert len(set(flat)) == len(flat) == replicas * (n // replicas)
    assert len({len(s) for s in shards}) == 1


def test_shuffle_is_deterministic_per_epoch_and_seed():
    assert _shards(50, 4, epoch=3) == _shards(50, 4, epoch=3)
    assert _shards(50, 4, epoch=3) != _shards(50, 4, epoch=4)
    assert _shards(50, 4, seed=1) != _shards(50, 4, seed=2)
    assert sum(_shards(50, 1), []) != list(range(50))


def test_loader_with_distributed_sampler():
    sampler = DistributedSampler(range(10), num_replicas=2, rank=1, shuffle=False)
    assert [b.tolist() for b in DataLoader(range(10), batch_size=2, sampler=sampler)] == \
        [[1, 3], [5, 7], [9]]


def test_errors():
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval "
                                         r"\[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="init_process_group.*num_replicas= and rank="):
        DistributedSampler(range(4))


def test_defaults_come_from_the_process_group():
    dist = pytest.importorskip("phalanx.distributed")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group()  # plain python: a world of one
    try:
        s = DistributedSampler(range(5), shuffle=False)
        assert (s.num_replicas, s.rank, list(s)) == (1, 0, [0, 1, 2, 3, 4])
    finally:
        dist.destroy_process_group()
