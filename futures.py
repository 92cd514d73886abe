"""`torch.futures`: `Future`, `collect_all`, `wait_all`.

A Future holds the value of something that completes later. One made by the user is completed
with `set_result` / `set_exception`. One from an asynchronous collective
(`dist.all_reduce(t, async_op=True).get_future()`) stands for its work handle; its value is the
list of the call's output tensors, as in PyTorch. `then(callback)` gives a Future of
`callback(this future)`, and `add_done_callback(callback)` calls `callback(this future)`: both
run when this future completes, on the thread that completes it. A collective's work does not
call back, so while such a future (or a chain or collection ending in one) has callbacks
waiting, one daemon thread polls it and completes it as soon as the work is done; waiting, or
asking `done()`, completes it on the caller's thread as before. As in PyTorch, an exception
raised by an `add_done_callback` callback is logged, not raised (`then` puts it in its future).
"""
import logging
import threading
import time

__all__ = ["Future", "collect_all", "wait_all"]

log = logging.getLogger("phalanx.futures")


class _Watcher:
    """The thread that completes futures of asynchronous work that have callbacks waiting: it
    polls them (a short nap between rounds, longer while nothing completes) only while there
    are any."""
    NAP, LONGEST_NAP = 50e-6, 1e-3

    def __init__(self):
        self._pending = []
        self._wake = threading.Condition()
        self._thread = None

    def watch(self, future):
        with self._wake:
            self._pending.append(future)
            if self._thread is None or not self._thread.is_alive():   # none yet, or forked
                self._thread = threading.Thread(target=self._serve, name="phalanx-futures",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def _serve(self):
        nap = self.NAP
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                pending = list(self._pending)
            finished = [f for f in pending if _completes(f)]
            if finished:
                with self._wake:
                    self._pending = [f for f in self._pending if f not in finished]
                nap = self.NAP
            else:
                nap = min(2 * nap, self.LONGEST_NAP)
            time.sleep(nap)


def _completes(future):
    try:
        return future.done()
    except BaseException:               # a work that cannot be polled: its waiter will see it
        log.exception("completing a Future of asynchronous work failed")
        return True


_watcher = _Watcher()


class Future:
    def __init__(self, *, devices=None):
        if devices:
            raise NotImplementedError("Future(devices=...) is not supported: a Phalanx Future "
                                      "does not synchronise CUDA streams; leave it None")
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._value = self._error = None
        self._callbacks = []
        # what this future stands for, when it completes by itself (else: set_result):
        self._work = self._outputs = None   # an asynchronous collective and its outputs
        self._parent = None                 # the future whose then() made this one
        self._all = None                    # the futures collect_all waits for

    @classmethod
    def _of_work(cls, work, outputs):
        fut = cls()
        fut._work, fut._outputs = work, outputs
        return fut

    def _poll(self, block):
        """Complete this future if what it stands for is complete (with `block`: wait)."""
        if self._event.is_set():
            return
        if self._work is not None and (block or self._work.is_completed()):
            with self._lock:
                work, self._work = self._work, None
            if work is not None:               # else another thread is finishing it
                try:
                    work.wait()
                except BaseException as e:
                    self.set_exception(e)
                else:
                    self.set_result(self._outputs)
        elif self._parent is not None:
            self._parent._poll(block)          # completing it runs our callback
        elif self._all is not None:
            for f in self._all:
                f._poll(block)                 # the last to complete settles this one

    def done(self):
        self._poll(block=False)
        return self._event.is_set()

    def wait(self):
        """Block until complete; its value (or raise its exception)."""
        self._poll(block=True)
        self._event.wait()
        return self.value()

    def value(self):
        if not self._event.is_set():
            raise RuntimeError("Future.value() was called before the future completed; call "
                               "wait() instead")
        if self._error is not None:
            raise self._error
        return self._value

    def set_result(self, result):
        self._settle(result, None)

    def set_exception(self, result):
        if not isinstance(result, BaseException):
            raise TypeError(f"set_exception needs an exception, got {type(result).__name__}")
        self._settle(None, result)

    def _settle(self, value, error, once=False):
        with self._lock:
            if self._event.is_set():
                if once:
                    return
                raise RuntimeError("this Future is already completed")
            self._value, self._error = value, error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback, self)

    def add_done_callback(self, callback):
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                if len(self._callbacks) == 1 and self._work is not None and \
                        self._work.polls_from_any_thread:
                    _watcher.watch(self)        # work does not call back: poll it
                return
        _call(callback, self)

    def then(self, callback):
        child = Future()

        def run(parent):
            try:
                child.set_result(callback(parent))
            except BaseException as e:
                child.set_exception(e)
        child._parent = self                    # waiting for the child completes this one
        self.add_done_callback(run)
        return child

    def __repr__(self):
        state = "done" if self._event.is_set() else "pending"
        return f"<Future {state}>"


def _call(callback, future):
    try:
        callback(future)
    except Exception:
        log.exception(f"a callback of {future!r} raised")


def collect_all(futures):
    """A Future of the list of `futures`, complete when all of them are."""
    out = Future()
    out._all = list(futures)

    def settle_when_all_done(_):
        if all(f._event.is_set() for f in out._all):
            out._settle(out._all, None, once=True)
    for f in out._all:
        f.add_done_callback(settle_when_all_done)
    if not out._all:
        out._settle([], None)
    return out


def wait_all(futures):
    """The values of `futures`, waiting for each (the first exception is raised)."""
    return [f.wait() for f in futures]
