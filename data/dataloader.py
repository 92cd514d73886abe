"""`DataLoader`: batches from a dataset, in the main process or in worker processes.

With `num_workers > 0`, the main process sends (task number, batch indices) to the workers in
turn through one index queue each, keeps `prefetch_factor` tasks per worker in flight, and yields
results in task order, so the batches are the same, in the same order, for any `num_workers`.
"""
import itertools
import multiprocessing
import pickle
import queue
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

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator.reset()
        return self._iterator

    def __len__(self):
        if self._is_iterable:
            n = len(self.dataset)  # TypeError if the dataset has no length, as in PyTorch
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
            return n
        return len(self._index_sampler)


class _BaseIter:
    def __init__(self, loader):
        self._loader = loader
        self._fetcher_cls = (_worker.IterableFetcher if loader._is_iterable
                             else _worker.MapFetcher)
        self._sampler_iter = iter(loader._index_sampler)
        # drawn for every epoch, with or without workers, so shuffling is the same either way
        self._base_seed = draw_seed(loader.generator)

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = self._fetcher_cls(loader.dataset, loader._auto_collation,
                                          loader.collate_fn, loader.drop_last)

    @traced("dataloader")  # the wait for a batch, on the profiler's timeline
    def __next__(self):
        data = self._fetcher.fetch(next(self._sampler_iter))
        return _pin(data) if self._loader._pins else data


class _MultiProcessIter(_BaseIter):
    _closed = True

    def __init__(self, loader):
        super().__init__(loader)
        n = self._num_workers = loader.num_workers
        ctx = loader.multiprocessing_context or multiprocessing.get_context()
        self._result_queue = ctx.Queue()
        self._index_queues, self._workers = [], []
        self._closed = False  # from here on, _shutdown cleans up whatever was started
        for i in range(n):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()
            w = ctx.Process(target=_worker.worker_loop, daemon=True,
                            args=(self._fetcher_cls, loader.dataset, index_queue,
                                  self._result_queue, loader._auto_collation,
                                  loader.collate_fn, loader.drop_last, self._base_seed + i,
                                  loader.worker_init_fn, i, n))
            w.start()
            self._index_queues.append(index_queue)
            self._workers.append(w)
        self._start_epoch()

    def _start_epoch(self):
        self._send_idx = self._rcvd_idx = 0
        self._tasks = {}  # task -> [worker] while pending, [worker, data] once it arrived early
        self._active = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        for _ in range(self._loader.prefetch_factor * self._num_workers):
            self._send_task()

    def reset(self):
        """A new epoch on persistent workers: wait until each worker is idle, then start."""
        self._sampler_iter = iter(self._loader._index_sampler)
        # unused, but keeps the shuffle stream in step with loaders that start fresh workers
        draw_seed(self._loader.generator)
        for q in self._index_queues:
            q.put(_worker.ResumeIteration())
        idle = 0
        while idle < self._num_workers:  # results of the abandoned epoch are dropped
            task, _ = self._get()
            idle += isinstance(task, _worker.ResumeIteration)
        self._start_epoch()

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
        self._index_queues[w].put((self._send_idx, index))
        self._tasks[self._send_idx] = [w]
        self._send_idx += 1

    def _get(self):
        """One (task, data) from the result queue, watching for dead workers and the timeout."""
        start = time.monotonic()
        while True:
            wait = 1.0
            if self._loader.timeout:
                wait = min(wait, self._loader.timeout - (time.monotonic() - start))
                if wait <= 0:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader timed out after {self._loader.timeout} "
                                       f"seconds waiting for a batch from its workers")
            try:
                return pickle.loads(self._result_queue.get(timeout=wait))
            except queue.Empty:
                dead = [w for w in self._workers if not w.is_alive()]
                if dead:
                    self._shutdown()
                    desc = ", ".join(f"pid {w.pid} exit code {w.exitcode}" for w in dead)
                    raise RuntimeError(
                        f"DataLoader worker ({desc}) exited unexpectedly. A negative exit code "
                        f"is the signal that killed it (-9: out of memory?). Run with "
                        f"num_workers=0 to see the error in the main process.") from None

    @traced("dataloader")
    def __next__(self):
        if self._closed:
            raise StopIteration
        while True:
            # skip tasks that went to a worker whose IterableDataset is exhausted
            while self._rcvd_idx < self._send_idx:
                info = self._tasks[self._rcvd_idx]
                if len(info) == 2 or self._active[info[0]]:
                    break
                del self._tasks[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                if not self._loader.persistent_workers:
                    self._shutdown()
                raise StopIteration
            info = self._tasks[self._rcvd_idx]
            if len(info) == 2:
                data = info[1]
            else:
                task, data = self._get()
                if isinstance(data, _worker.IterableDone):
                    self._active[data.worker_id] = False
                    continue
                if task != self._rcvd_idx:  # arrived early: keep it until its turn
                    self._tasks[task].append(data)
                    continue
            del self._tasks[self._rcvd_idx]
            self._rcvd_idx += 1
            self._send_task()
            if isinstance(data, _worker.ExceptionWrapper):
                self._shutdown()
                data.reraise()
            return _pin(data) if self._loader._pins else data

    def _shutdown(self):
        if self._closed:
            return
        self._closed = True
        for q in self._index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:  # a worker busy with a batch nobody will read is not waited for
            w.join(timeout=1)
            if w.is_alive():
                w.terminate()
                w.join()
        for q in self._index_queues + [self._result_queue]:
            q.cancel_join_thread()
            q.close()

    def __del__(self):
        self._shutdown()
