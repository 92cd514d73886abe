"""The join context manager in one process: its contract and errors (the multi-rank behaviour is
in test_mpi_join.py)."""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed.algorithms import Join, Joinable, JoinHook

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(60)]


@pytest.fixture
def world():
    dist.init_process_group()
    yield
    dist.destroy_process_group()


class Counter(Joinable):
    """A joinable written as PyTorch's documentation shows: it counts the ranks still training
    at each iteration, and its hook shadows that all-reduce."""

    def __init__(self):
        super().__init__()
        self.seen, self.finished = [], None

    def __call__(self):
        Join.notify_join_context(self)
        t = px.ones(1)
        dist.all_reduce(t)
        self.seen.append(t.item())

    def join_hook(self, **kwargs):
        counter = self

        class Hook(JoinHook):
            def main_hook(self):
                dist.all_reduce(px.zeros(1))

            def post_hook(self, is_last_joiner):
                counter.finished = (is_last_joiner, kwargs)
        return Hook()

    @property
    def join_device(self):
        return px.device("cpu")

    @property
    def join_process_group(self):
        return dist.group.WORLD


def test_a_joinable_of_ones_own(world):
    counter = Counter()
    with Join([counter], tag=3):
        for _ in range(2):
            counter()
    assert counter.seen == [1.0, 1.0] and counter.finished == (True, {"tag": 3})
    assert not counter._join_config.enable           # reset when the context ends


def test_ddp_join_in_a_world_of_one_trains_as_without_it(world):
    px.manual_seed(0)
    ddp = DDP(nn.Linear(4, 2).double())
    plain = copy.deepcopy(ddp.module)
    x, y = px.tensor(np.random.default_rng(0).standard_normal((5, 4))), px.tensor([0, 1, 1, 0, 1])
    for enable in (True, False):
        with ddp.join(enable=enable, divide_by_initial_world_size=False) as join:
            assert ddp._join_config.enable == enable and isinstance(join, Join)
            ddp.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
        plain.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        np.testing.assert_allclose(ddp.module.weight.grad.numpy(), plain.weight.grad.numpy(),
                                   rtol=1e-12)


def test_join_errors(world):
    with pytest.raises(ValueError, match="at least one joinable"):
        Join([])
    with pytest.raises(TypeError, match="not a Joinable"):
        Join([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="abstract"):
        Joinable()
    assert Join.notify_join_context(Counter()) is None     # outside a join: nothing to do


def test_an_exception_inside_join_propagates_without_shadowing(world):
    counter = Counter()
    with pytest.raises(KeyError):
        with Join([counter]):
            raise KeyError("boom")
    assert counter.finished is None and not counter._join_config.enable


def test_ddp_bucket_caps_and_refused_arguments(world):
    """PyTorch 2.13's caps: 1 MB then 25 MB by default, an explicit cap for every bucket (no
    small first one); arguments Phalanx's DDP cannot honour raise, naming themselves."""
    from phalanx.distributed.reducer import bucket_limits
    MB = 1 << 20
    assert DDP(nn.Linear(2, 2)).reducer.limits == bucket_limits(25 * MB) == [MB, 25 * MB]
    assert DDP(nn.Linear(2, 2), bucket_cap_mb=4).reducer.limits == [4 * MB]
    lin = nn.Linear(2, 2)
    for name, value in [("mixed_precision", object()),
                        ("skip_all_reduce_unused_params", True),
                        ("delay_all_reduce_named_params", [("weight", lin.weight)])]:
        with pytest.raises(NotImplementedError, match=name):
            DDP(lin, **{name: value})
    assert DDP(lin, batched_grad_copy=True).batched_grad_copy
