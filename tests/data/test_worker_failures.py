"""DataLoader workers that fail: killed in the middle of a batch, an interrupt in the middle of
a receive, an exception in one sample, a worker that ignores SIGTERM, a persistent loader freed
with live workers. Each case is compared with what PyTorch does."""
import gc
import multiprocessing.connection
import os
import signal
import time

import pytest

import phalanx as px
from phalanx.data import DataLoader, Dataset


class Big(Dataset):
    """Batches of several MB: more than a pipe holds, so a sender is caught halfway."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return px.full((500_000,), float(i))


class Failing(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 2:
            raise ValueError(f"sample {i} is broken")
        return i


@pytest.mark.timeout(30)
def test_a_worker_killed_while_sending_a_batch_is_reported_at_once():
    # PyTorch: "DataLoader worker (pid X) is killed by signal: Killed." We used to wait forever
    # for the rest of a message that a dead worker would never send.
    it = iter(DataLoader(Big(), batch_size=4, num_workers=2))
    next(it)
    time.sleep(0.5)  # the workers have their next batches ready and are blocked sending them
    for w in it._workers:
        os.kill(w.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) is killed by signal: "
                                           r"Killed\. .*out of memory"):
        next(it)
    assert time.monotonic() - start < 3
    with pytest.raises(RuntimeError, match="stopped at an earlier error"):
        next(it)


@pytest.mark.timeout(30)
def test_an_interrupt_in_the_middle_of_a_batch_leaves_the_next_epoch_working(monkeypatch):
    # Ctrl-C lands while the main process has read half of a batch; the stream is then
    # unreadable, and a persistent loader used to fail every later epoch with UnpicklingError.
    # PyTorch's next epoch runs normally; ours too, on fresh workers.
    loader = DataLoader(Big(), batch_size=4, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)
    real_recv = multiprocessing.connection.Connection._recv
    armed = [True]

    def interrupted_recv(self, size, *args):
        if armed[0] and size > 1000:  # the body of a batch
            armed[0] = False
            real_recv(self, size // 2, *args)
            raise KeyboardInterrupt
        return real_recv(self, size, *args)

    monkeypatch.setattr(multiprocessing.connection.Connection, "_recv", interrupted_recv)
    with pytest.raises(KeyboardInterrupt):
        next(it)
    assert not armed[0]
    assert [float(b[0, 0]) for b in loader] == [float(i) for i in range(0, 32, 4)]
    assert [float(b[0, 0]) for b in loader] == [float(i) for i in range(0, 32, 4)]
    loader._iterator._shutdown()


@pytest.mark.timeout(30)
def test_skipping_a_failing_sample_goes_on_with_the_epoch():
    # the usual "skip bad samples" loop: PyTorch gives every other batch after the error
    it = iter(DataLoader(Failing(), batch_size=1, num_workers=2))
    got = []
    while True:
        try:
            got.append(int(next(it)[0]))
        except StopIteration:
            break
        except ValueError as e:
            assert "Caught ValueError in DataLoader worker process 0" in str(e)
            got.append("error")
    assert got == [0, 1, "error", 3, 4, 5, 6, 7]


@pytest.mark.timeout(30)
def test_a_persistent_loader_raises_a_workers_error_in_every_epoch():
    loader = DataLoader(Failing(), batch_size=2, num_workers=2, persistent_workers=True)
    for _ in range(2):
        got = []
        with pytest.raises(ValueError, match="sample 2 is broken"):
            for b in loader:
                got.append(b.tolist())
        assert got == [[0, 1]]
    workers = loader._iterator._workers
    assert all(w.is_alive() for w in workers)  # the same workers, still serving
    loader._iterator._shutdown()


def _ignore_sigterm(worker_id):
    signal.signal(signal.SIGTERM, lambda *args: None)  # a "save and exit later" handler


class Stuck(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3:
            time.sleep(60)  # a read that hangs (network file system)
        return i


@pytest.mark.timeout(30)
def test_timeout_stops_workers_that_ignore_sigterm():
    # PyTorch raises after the timeout; we used to wait for the stuck read to end
    loader = DataLoader(Stuck(), batch_size=2, num_workers=2, timeout=0.5,
                        worker_init_fn=_ignore_sigterm)
    it = iter(loader)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 0.5 seconds"):
        list(it)
    assert time.monotonic() - start < 3
    assert not any(w.is_alive() for w in it._workers)


@pytest.mark.timeout(30)
def test_freeing_a_persistent_loader_stops_its_workers_at_once():
    # PyTorch: the workers exit cleanly at once. We used to stall a second per worker (the
    # stop messages sat in a queue whose sending thread was already finalized), then SIGTERM.
    loader = DataLoader(list(range(12)), batch_size=2, num_workers=3, persistent_workers=True)
    for _ in range(2):
        assert sum(len(b) for b in loader) == 12
    workers = loader._iterator._workers
    start = time.monotonic()
    del loader
    gc.collect()
    assert time.monotonic() - start < 0.9
    assert [w.exitcode for w in workers] == [0, 0, 0]


@pytest.mark.timeout(30)
def test_a_stopped_persistent_iterator_is_replaced_by_a_fresh_one():
    loader = DataLoader(list(range(6)), batch_size=2, num_workers=2, persistent_workers=True)
    first = iter(loader)
    first._fail()  # as after a timeout, a dead worker or an interrupt
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]
    assert loader._iterator is not first
    loader._iterator._shutdown()
