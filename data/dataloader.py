"""`DataLoader`: batches from a dataset, in the main process or in worker processes.

With `num_workers > 0`, the main process sends (task number, batch indices) to the workers in
turn, each over a connection of its own, keeps `prefetch_factor` tasks per worker in flight, and
yields results in task order, so the batches are the same, in the same order, for any
`num_workers`. A worker's exception is raised in the main process for its batch, and the epoch
goes on; a dead worker, a timeout or an interrupt stop the iterator (its workers are killed,
and a persistent DataLoader starts new ones for the next epoch).
"""
import collections
import itertools
import multiprocessing
import os
import pickle
import signal
import time
import warnings

from ..cuda import is_available as _cuda_available
from ..profiler.recorder import traced
from .collate import default_collate, default_convert
from .pin_memory import pin_memory as _pin
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, draw_seed
from . import worker as _worker


class _InfiniteConstantSampler(Sampler):
    """The index sampler of an IterableDataset: batches are only counted, never indexed."""

    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Iterate over `dataset` in batches (PyTorch's signature and semantics).

    `shuffle=True` draws a permutation from `generator` (default: a seed from the global
    generator each epoch). Worker `i` is seeded with `base_seed + i`, where `base_seed` is drawn
    per epoch from the same generator; `get_worker_info()` tells a worker who it is.
    `pin_memory=True` returns batches in pinned host memory when a GPU is usable, so that
    `x.to("cuda", non_blocking=True)` copies asynchronously; without one it warns once and
    does nothing, as in PyTorch. Batches always come in order (`in_order=False` lets
    PyTorch hand out a worker's batch early; in order is one of the orders it allows).
    """

    # the batches are planned from these at construction (the batch sampler), so changing one
    # later would be ignored; PyTorch refuses it too
    _FIXED = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
              "persistent_workers")
    _initialized = False

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers option should be a non-negative integer; got "
                             f"num_workers={num_workers!r}. Use num_workers=0 to disable "
                             f"multiprocessing.")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative; got timeout={timeout}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             " Let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor option should be a positive integer; got "
                             f"{prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self._is_iterable = isinstance(dataset, IterableDataset)
        if self._is_iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}; shuffle inside the "
                                 f"dataset's __iter__ instead")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler "
                                 "and batch_sampler options; an IterableDataset decides its own "
                                 "order")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle; shuffle in the "
                             "sampler instead")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")

        if sampler is None:
            if self._is_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None
                                         else default_convert)
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        if pin_memory_device not in ("", "cuda") and not str(pin_memory_device).startswith(
                "cuda:"):
            raise NotImplementedError(f"DataLoader(pin_memory_device={pin_memory_device!r}): "
                                      f"Phalanx pins memory for CUDA only")
        self._pins = bool(pin_memory) and _cuda_available()
        if pin_memory and not self._pins:
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=2)
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        if isinstance(multiprocessing_context, str):
            multiprocessing_context = multiprocessing.get_context(multiprocessing_context)
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self._iterator = None
        self._initialized = True

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __setattr__(self, name, value):
        if self._initialized and name in self._FIXED:
            raise ValueError(f"{name} attribute should not be set after DataLoader is "
                             f"initialized; build a new DataLoader instead")
        super().__setattr__(name, value)

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator._closed:  # none yet, or stopped by an error
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator.reset()
        return self._iterator

    def __len__(self):
        return _num_batches(self.dataset, self._is_iterable, self._index_sampler,
                            self.batch_size, self.drop_last)


def _num_batches(dataset, is_iterable, index_sampler, batch_size, drop_last):
    if is_iterable:
        n = len(dataset)  # TypeError if the dataset has no length, as in PyTorch
        if batch_size is not None:
            n = n // batch_size if drop_last else -(-n // batch_size)
        return n
    return len(index_sampler)


class _BaseIter:
    def __init__(self, loader):
        # The iterator copies what it needs instead of keeping the loader: a persistent loader
        # holds its iterator, and that cycle would leave the workers' shutdown to the garbage
        # collector at some later time instead of the moment the loader goes away.
        self._dataset = loader.dataset
        self._is_iterable = loader._is_iterable
        self._index_sampler = loader._index_sampler
        self._auto_collation = loader._auto_collation
        self._collate_fn = loader.collate_fn
        self._batch_size, self._drop_last = loader.batch_size, loader.drop_last
        self._generator = loader.generator
        self._pins = loader._pins
        self._fetcher_cls = _worker.IterableFetcher if self._is_iterable else _worker.MapFetcher
        self._sampler_iter = iter(self._index_sampler)
        # drawn for every epoch, with or without workers, so shuffling is the same either way
        self._base_seed = draw_seed(self._generator)

    def __iter__(self):
        return self

    def __len__(self):
        return _num_batches(self._dataset, self._is_iterable, self._index_sampler,
                            self._batch_size, self._drop_last)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = self._fetcher_cls(self._dataset, self._auto_collation, self._collate_fn,
                                          self._drop_last)

    @traced("dataloader")  # the wait for a batch, on the profiler's timeline
    def __next__(self):
        data = self._fetcher.fetch(next(self._sampler_iter))
        return _pin(data) if self._pins else data


class _MultiProcessIter(_BaseIter):
    """Worker i has a duplex connection of its own to the main process. Tasks go to the workers
    in turn and each worker answers its requests in order, so the next batch is always the next
    message from one known worker: nothing arrives out of turn. The main process keeps no copy
    of a worker's end, so when a worker dies a read waiting on it ends at once with EOF, even
    halfway through a batch."""

    _closed = True
    _failed = False

    def __init__(self, loader):
        super().__init__(loader)
        n = self._num_workers = loader.num_workers
        self._timeout = loader.timeout
        self._prefetch_factor = loader.prefetch_factor
        self._persistent = loader.persistent_workers
        ctx = loader.multiprocessing_context or multiprocessing.get_context()
        self._conns, self._workers = [], []
        self._owner = os.getpid()
        self._closed = False  # from here on, _shutdown cleans up whatever was started
        for i in range(n):
            conn, worker_end = ctx.Pipe()
            self._conns.append(conn)
            w = ctx.Process(target=_worker.worker_loop, daemon=True,
                            args=(self._fetcher_cls, self._dataset, worker_end,
                                  self._auto_collation, self._collate_fn, self._drop_last,
                                  self._base_seed + i, loader.worker_init_fn, i, n))
            try:
                w.start()
            finally:
                # closed before the next worker starts, so no other process inherits it
                worker_end.close()
            self._workers.append(w)
        self._start_epoch()

    def _start_epoch(self):
        self._next_task = 0
        self._in_flight = collections.deque()  # the worker of each task sent, in task order
        self._active = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        for _ in range(self._prefetch_factor * self._num_workers):
            self._send_task()

    def reset(self):
        """A new epoch on persistent workers: wait until each worker is idle, then start."""
        try:
            self._sampler_iter = iter(self._index_sampler)
            # unused, but keeps the shuffle stream in step with loaders that start fresh workers
            draw_seed(self._generator)
            for w in range(self._num_workers):
                self._send(w, _worker.ResumeIteration())
            for w in range(self._num_workers):  # results of the abandoned epoch are dropped
                while not isinstance(self._receive(w), _worker.ResumeIteration):
                    pass
            self._start_epoch()
        except BaseException:
            self._fail()
            raise

    def _send_task(self):
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        for _ in range(self._num_workers):
            w = next(self._worker_cycle)
            if self._active[w]:
                break
        else:
            return
        self._send(w, (self._next_task, index))
        self._in_flight.append(w)
        self._next_task += 1

    def _send(self, w, message):
        try:
            self._conns[w].send(message)
        except OSError:
            raise self._dead_worker_error(self._workers[w]) from None

    def _receive(self, w):
        """The next message from worker `w`, watching for dead workers and the timeout."""
        conn = self._conns[w]
        start = time.monotonic()
        while True:
            wait = 1.0
            if self._timeout:
                wait = min(wait, self._timeout - (time.monotonic() - start))
                if wait <= 0:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds "
                                       f"waiting for a batch from its workers")
            if conn.poll(wait):
                break
            # a dead worker's end normally reads as EOF at once; this catches one whose end is
            # held open by a process it started
            for worker in self._workers:
                if worker.exitcode is not None:
                    raise self._dead_worker_error(worker)
        try:
            return pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            raise self._dead_worker_error(self._workers[w]) from None

    @staticmethod
    def _dead_worker_error(worker):
        worker.join(timeout=1)  # its end closes as it exits; wait for its exit code
        code = worker.exitcode
        if code is not None and code < 0:
            message = (f"DataLoader worker (pid {worker.pid}) is killed by signal: "
                       f"{signal.strsignal(-code)}. ")
            if -code == signal.SIGKILL:
                message += ("If it ran out of memory, lower num_workers, batch_size or "
                            "prefetch_factor.")
        else:
            message = (f"DataLoader worker (pid {worker.pid}) exited unexpectedly"
                       + (f" with exit code {code}" if code is not None else "")
                       + ". Details are lost due to multiprocessing. Rerunning with "
                         "num_workers=0 may give better error trace.")
        return RuntimeError(message)

    def _next_data(self):
        """The next batch (or a worker's ExceptionWrapper for it); None after the last."""
        while self._in_flight:
            w = self._in_flight.popleft()
            if not self._active[w]:
                continue  # its IterableDataset ended: the rest of its tasks are void
            data = self._receive(w)
            if isinstance(data, _worker.IterableDone):
                self._active[w] = False
                continue
            self._send_task()
            return data
        return None

    @traced("dataloader")
    def __next__(self):
        if self._failed:
            raise RuntimeError("this DataLoader iterator stopped at an earlier error or "
                               "interrupt; start a new one with iter(loader)")
        if self._closed:
            raise StopIteration
        try:
            data = self._next_data()
        except BaseException:
            self._fail()
            raise
        if data is None:
            if not self._persistent:
                self._shutdown()
            raise StopIteration
        if isinstance(data, _worker.ExceptionWrapper):
            # the task is done and the workers go on, so the caller may skip the batch and
            # continue, as in PyTorch
            data.reraise()
        return _pin(data) if self._pins else data

    def _fail(self):
        """After a timeout, a dead worker or an interrupt (Ctrl-C can cut a message in half),
        the connections can't be trusted: stop the workers at once; the DataLoader starts new
        ones for the next epoch."""
        self._failed = True
        self._shutdown(grace=0)

    def _shutdown(self, grace=1.0, close=True):
        """Ask the workers to stop, give them `grace` seconds to finish the batch they are on,
        then kill (SIGKILL, not SIGTERM, which a handler in the script may catch) those left."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._owner:
            return  # a copy in a process forked while this iterator ran: the workers aren't ours
        if grace:
            for conn in self._conns:
                try:
                    os.set_blocking(conn.fileno(), False)  # a stuck worker must not block us
                    conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        for w in self._workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                w.kill()
                w.join()
        if close:
            for conn in self._conns:
                conn.close()

    def __del__(self):
        # When the garbage collector frees this iterator with a reference cycle, it may have
        # finalized (closed) the connections already, without marking them closed: closing
        # them again could close a file descriptor that is someone else's by now. Left alone,
        # they close as they are freed.
        self._shutdown(close=False)
