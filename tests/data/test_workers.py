"""DataLoader with worker processes: same batches as in-process, worker info and seeding,
errors with the worker's traceback, dead workers, persistent workers, clean shutdown.
Worker processes are slow to test: few, small loaders."""
import os
import time

import numpy as np
import pytest

import phalanx as px
from phalanx.data import DataLoader, Dataset, IterableDataset, get_worker_info


class WhoAmI(Dataset):
    """Sample i: (i, worker id, worker seed, pid, a number from the worker's global generator)."""

    def __len__(self):
        return 24

    def __getitem__(self, i):
        info = get_worker_info()
        return (i, info.id, info.seed, os.getpid(), float(px.rand(1).item()),
                float(np.random.rand()))


class Failing(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise ValueError(f"sample {i} is broken")
        return i


class Dying(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 6:
            os._exit(3)
        return i


class Sharded(IterableDataset):
    def __iter__(self):
        info = get_worker_info()
        return iter(range(info.id, 11, info.num_workers))


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_give_the_same_batches_as_the_main_process(persistent):
    x = px.arange(40).reshape(20, 2)
    data = [(x[i], i) for i in range(20)]

    def epochs(num_workers, **kwargs):
        px.manual_seed(4)
        loader = DataLoader(data, batch_size=3, shuffle=True, num_workers=num_workers, **kwargs)
        return [[(xb.tolist(), yb.tolist()) for xb, yb in loader] for _ in range(3)]

    assert epochs(2, prefetch_factor=1, persistent_workers=persistent) == epochs(0)


def test_worker_info_seeding_and_init_fn():
    assert get_worker_info() is None
    px.manual_seed(0)
    calls = []
    loader = DataLoader(WhoAmI(), batch_size=4, num_workers=2,
                        worker_init_fn=lambda wid: np.random.seed(100 + wid) or calls.append(1))
    rows = [r for batch in loader for r in zip(*[c.tolist() for c in batch])]
    assert [r[0] for r in rows] == list(range(24))
    # batches go to the workers in turn: batch k is made by worker k % 2
    assert [r[1] for r in rows] == [(i // 4) % 2 for i in range(24)]
    seeds = {r[1]: r[2] for r in rows}
    assert seeds[1] == seeds[0] + 1
    assert len({r[3] for r in rows}) == 2 and os.getpid() not in {r[3] for r in rows}
    first_draw = {r[1]: r[4] for r in reversed(rows)}  # each worker's first px.rand
    assert first_draw[0] == px.rand(1, generator=px.Generator().manual_seed(seeds[0])).item()
    assert first_draw[0] != first_draw[1]
    assert [r[5] for r in rows if r[1] == 0][0] == np.random.RandomState(100).rand()
    assert calls == []  # worker_init_fn ran in the workers, not here


def test_worker_exception_carries_its_traceback():
    loader = DataLoader(Failing(), batch_size=2, num_workers=2)
    it = iter(loader)
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(ValueError) as e:
        next(it)
    msg = str(e.value)
    assert "Caught ValueError in DataLoader worker process 0" in msg
    assert "sample 5 is broken" in msg and "__getitem__" in msg and "Traceback" in msg
    assert next(it).tolist() == [6, 7]  # the epoch goes on after the error, as in PyTorch
    with pytest.raises(StopIteration):
        next(it)
    assert not any(w.is_alive() for w in it._workers)


def test_a_dead_worker_is_reported():
    loader = DataLoader(Dying(), batch_size=2, num_workers=2)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) exited unexpectedly "
                                           r"with exit code 3\. .*num_workers=0"):
        list(loader)
    assert time.monotonic() - start < 10


def test_persistent_workers_keep_their_processes_across_epochs():
    loader = DataLoader(WhoAmI(), batch_size=4, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)  # abandon the first epoch after one batch
    epoch2 = [r for b in loader for r in zip(*[c.tolist() for c in b])]
    epoch3 = [r for b in loader for r in zip(*[c.tolist() for c in b])]
    assert [r[0] for r in epoch2] == [r[0] for r in epoch3] == list(range(24))
    assert {r[3] for r in epoch2} == {r[3] for r in epoch3}
    workers = loader._iterator._workers
    assert all(w.is_alive() for w in workers)
    loader._iterator._shutdown()
    assert not any(w.is_alive() for w in workers)


def test_iterable_dataset_sharded_across_workers():
    loader = DataLoader(Sharded(), batch_size=2, num_workers=2)
    batches = [b.tolist() for b in loader]
    # worker 0 streams 0,2,4,..., worker 1 streams 1,3,5,...; batches alternate between them
    assert batches == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]


def test_workers_exit_after_the_epoch_and_on_early_stop():
    loader = DataLoader(list(range(10)), batch_size=2, num_workers=2)
    it = iter(loader)
    assert sum(len(b) for b in it) == 10
    assert not any(w.is_alive() for w in it._workers)
    it = iter(loader)
    next(it)
    workers = it._workers
    del it
    assert not any(w.is_alive() for w in workers)


def test_timeout():
    class Slow(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            time.sleep(5)
            return i

    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        next(iter(DataLoader(Slow(), num_workers=1, timeout=0.3)))


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_other_start_methods(context):
    from phalanx.data import TensorDataset
    ds = TensorDataset(px.arange(10), px.arange(10) * 2)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    assert [b[1].tolist() for b in loader] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]


def test_a_failing_worker_init_fn_is_reported():
    def init(worker_id):
        raise KeyError(f"no config for worker {worker_id}")
    with pytest.raises(KeyError) as e:
        list(DataLoader(list(range(4)), num_workers=1, worker_init_fn=init))
    assert "Caught KeyError in DataLoader worker process 0" in str(e.value)
    assert "no config for worker 0" in str(e.value) and "in init" in str(e.value)
