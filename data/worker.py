"""What runs inside a DataLoader worker process: seeding, `get_worker_info()`, the fetch loop,
and how a worker's exception travels back to the main process with its traceback."""
import os
import pickle
import queue
import random
import sys
import traceback

import numpy as np

from ..tensor import manual_seed


class WorkerInfo:
    """`id`, `num_workers`, `seed` and this worker's copy of `dataset`."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={type(self.dataset).__name__})")


_worker_info = None


def get_worker_info():
    """Inside a DataLoader worker: its `WorkerInfo`; in the main process: None."""
    return _worker_info


class ExceptionWrapper:
    """An exception caught in a worker, carried as its type and formatted traceback (exception
    objects need not be picklable) and raised again in the main process."""

    def __init__(self, where):
        exc_type, exc, _ = sys.exc_info()
        self.exc_type = exc_type
        self.message = (f"Caught {exc_type.__name__} {where}.\nOriginal "
                        + "".join(traceback.format_exception(exc_type, exc, exc.__traceback__)))

    def reraise(self):
        if self.exc_type is KeyError:  # KeyError quotes its message; keep it readable
            raise KeyError(_Readable(self.message))
        try:
            exc = self.exc_type(self.message)
        except Exception:
            raise RuntimeError(self.message) from None
        raise exc


class _Readable(str):
    def __repr__(self):
        return str(self)


class IterableDone:
    """A worker's answer when its copy of an IterableDataset is exhausted."""

    def __init__(self, worker_id):
        self.worker_id = worker_id


class ResumeIteration:
    """Sent to persistent workers at the start of a new epoch; echoed back once they are idle."""


# ---- fetchers: turn one entry of the index sampler into one batch --------------------------
class MapFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn

    def fetch(self, index):
        if self.auto_collation:
            return self.collate_fn([self.dataset[i] for i in index])
        return self.collate_fn(self.dataset[index])


class IterableFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        batch = []
        for _ in index:
            try:
                batch.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not batch or (self.drop_last and len(batch) < len(index)):
            raise StopIteration
        return self.collate_fn(batch)


def seed_everything(seed):
    """Seed Phalanx's global generator, `random` and NumPy's global state for one worker."""
    manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)


def worker_loop(fetcher_cls, dataset, index_queue, result_queue, auto_collation, collate_fn,
                drop_last, seed, init_fn, worker_id, num_workers):
    """Fetch batches for (task, index) requests until told to stop (None) or orphaned.
    Results go back pickled here, so an unpicklable batch becomes a reported error instead of a
    silent loss inside the queue's feeder thread."""
    global _worker_info
    where = f"in DataLoader worker process {worker_id}"
    try:
        seed_everything(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
        init_error = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = fetcher_cls(dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_error = ExceptionWrapper(where)
        parent = os.getppid()
        while True:
            try:
                request = index_queue.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the main process died: don't linger
                    break
                continue
            if request is None:
                break
            if isinstance(request, ResumeIteration):
                if init_error is None and fetcher_cls is IterableFetcher:
                    fetcher = fetcher_cls(dataset, auto_collation, collate_fn, drop_last)
                result_queue.put(pickle.dumps((request, None)))
                continue
            task, index = request
            if init_error is not None:
                data = init_error
            else:
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    data = IterableDone(worker_id)
                except Exception:
                    data = ExceptionWrapper(where)
            try:
                payload = pickle.dumps((task, data), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                payload = pickle.dumps((task, ExceptionWrapper(where + " (pickling the batch)")))
            result_queue.put(payload)
    except KeyboardInterrupt:
        pass  # the main process handles Ctrl-C and shuts workers down
    result_queue.cancel_join_thread()  # never block exit on results nobody will read
