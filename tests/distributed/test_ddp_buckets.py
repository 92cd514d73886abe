"""DDP's bucket assignment is PyTorch's: the same gradients land in the same buckets."""
import pytest

import phalanx as px
from phalanx.distributed.local_backend import LocalProcessGroup
from phalanx.distributed.reducer import FIRST_BUCKET_BYTES, assign_buckets, bucket_limits

torch = pytest.importorskip("torch")

MB = 1 << 20
MLP = [10, 5120, 512, 512 * 512, 512, 512 * 512, 512, 512 * 512]   # an MLP's, launch order


@pytest.mark.parametrize("sizes, dtypes, limits", [
    (MLP, ["float32"], [MB]),                           # a bucket may overflow by one tensor
    (MLP, ["float32"], bucket_limits(25 * MB)),         # DDP's defaults
    (MLP, ["float32"], [2000]),                         # tensors larger than the cap
    ([256] * 12, ["float32"], [1024]),                  # exactly at the cap: it closes
    ([300, 7, 1000, 64, 5, 900, 2048, 1], ["float32", "float64"], [1024, 4096]),  # two kinds
    ([100, 300, 50], ["float64"], [MB, 10 * MB]),       # all in one, still open at the end
    ([64] * 40, ["float32", "float64"], [256, 1024, 512]),   # bucket_cap_mb_list's caps
])
def test_same_buckets_as_pytorch(sizes, dtypes, limits):
    kinds = [dtypes[i % len(dtypes)] for i in range(len(sizes))]
    params = [px.zeros(n, dtype=getattr(px, k)) for n, k in zip(sizes, kinds)]
    where = {id(p): i for i, p in enumerate(params)}
    ours = assign_buckets(params, LocalProcessGroup(), limits)
    theirs, _ = torch.distributed._compute_bucket_assignment_by_size(
        [torch.zeros(n, dtype=getattr(torch, k)) for n, k in zip(sizes, kinds)], limits)
    assert [[where[id(p)] for p in b.params] for b in ours] == theirs
