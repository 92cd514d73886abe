"""`ElasticDistributedSampler` (torch.distributed.elastic.utils.data): the samples from
`start_index` on, dealt out as DistributedSampler deals them, reshuffled by the epoch alone."""
import pytest
import torch.distributed.elastic.utils.data as theirs

from phalanx.distributed.elastic.utils.data import ElasticDistributedSampler


@pytest.mark.parametrize("n, replicas, start", [(10, 3, 4), (10, 2, 0), (7, 4, 6)])
def test_each_rank_gets_its_share_of_the_rest_of_the_dataset(n, replicas, start):
    mine = [ElasticDistributedSampler(range(n), replicas, r, start_index=start)
            for r in range(replicas)]
    torchs = [theirs.ElasticDistributedSampler(range(n), replicas, r, start_index=start)
              for r in range(replicas)]
    assert [len(s) for s in mine] == [len(s) for s in torchs]    # PyTorch's sizes
    dealt = [list(s) for s in mine]
    assert all(len(d) == len(mine[0]) for d in dealt)
    every = sum(dealt, [])
    assert set(every) == set(range(start, n))      # the rest, each at least once
    assert len(every) - len(set(every)) == len(mine[0]) * replicas - (n - start)  # padding
    assert dealt == [list(s) for s in mine]        # the same order on every pass
    for s in mine:
        s.set_epoch(1)
    if n - start > 2:
        assert [list(s) for s in mine] != dealt    # reshuffled


def test_a_start_past_the_end_is_refused_as_in_pytorch():
    with pytest.raises(ValueError, match="Start index 5 should be less than dataset size 5"):
        ElasticDistributedSampler(range(5), 2, 0, start_index=5)
