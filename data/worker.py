"""What runs inside a DataLoader worker process: seeding, `get_worker_info()`, the fetch loop,
and how a worker's exception travels back to the main process with its traceback.

A worker talks to the main process over one duplex connection of its own: requests come in
((task, index), `ResumeIteration`, or None to stop) and each is answered in order by one
pickled message."""
import collections
import os
import pickle
import queue
import random
import sys
import threading
import traceback

import numpy as np

from ..tensor import manual_seed
from .dataset import getitems


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


class ResumeIteration:
    """Sent to persistent workers at the start of a new epoch; echoed back once they are idle."""


# ---- fetchers: turn one entry of the index sampler into one batch --------------------------
class MapFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn

    def fetch(self, index):
        if self.auto_collation:
            return self.collate_fn(getitems(self.dataset, index))
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


class _Outbox:
    """Sends this worker's pickled results to the main process from a background thread, so
    the worker goes on with its next request while the main process is busy elsewhere (what a
    multiprocessing.Queue's feeder thread does). Daemonic: at exit, results nobody will read are
    dropped instead of waited for."""

    def __init__(self, conn):
        self._queue = queue.SimpleQueue()
        threading.Thread(target=self._send_all, args=(conn,), daemon=True).start()

    def put(self, payload):
        self._queue.put(payload)

    def _send_all(self, conn):
        while True:
            payload = self._queue.get()
            try:
                conn.send_bytes(payload)
            except OSError:  # the main process closed its end: nobody is listening
                return


def _requests(conn):
    """The main process's requests, until it says stop (None), closes its end, or dies.
    Everything already sent is read before a request is handed out, so that a stop (or a new
    epoch) queued behind requests nobody will read is seen before working on them."""
    parent = os.getppid()
    pending = collections.deque()
    while True:
        while not pending or conn.poll():
            if not pending and not conn.poll(1.0):
                if os.getppid() != parent:  # the main process died: don't linger
                    return
                continue
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            if isinstance(request, ResumeIteration):
                pending.clear()  # the abandoned epoch's requests
            pending.append(request)
        yield pending.popleft()


def worker_loop(fetcher_cls, dataset, conn, auto_collation, collate_fn, drop_last, seed,
                init_fn, worker_id, num_workers):
    """Answer the (task, index) requests on `conn` in order, one pickled batch each.
    Results are pickled here, so an unpicklable batch becomes a reported error instead of a
    silent loss in the sending thread."""
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
        outbox = _Outbox(conn)
        for request in _requests(conn):
            if isinstance(request, ResumeIteration):
                if init_error is None and fetcher_cls is IterableFetcher:
                    fetcher = fetcher_cls(dataset, auto_collation, collate_fn, drop_last)
                outbox.put(pickle.dumps(request))
                continue
            _, index = request
            if init_error is not None:
                data = init_error
            else:
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    data = IterableDone()
                except Exception:
                    data = ExceptionWrapper(where)
            try:
                payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                payload = pickle.dumps(ExceptionWrapper(where + " (pickling the batch)"))
            outbox.put(payload)
    except KeyboardInterrupt:
        pass  # the main process handles Ctrl-C and shuts workers down
