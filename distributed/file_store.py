"""PyTorch's FileStore: a key-value store in one file, shared by every process that opens it
(the processes of one host, or of several hosts on a shared file system).

The file is an append-only log of msgpack records `[key, value]` (value None: the key was
deleted); each instance replays what the others appended since it last looked. Every access
holds an flock on the file, so records are appended whole and read-modify-writes (`add`,
`compare_set`) are atomic across processes. Nothing in the file is unpickled.

The file is created private to this user (mode 0600), and one that another user could read or
write is refused: the `file://` rendezvous keeps the job's token in it. As in PyTorch, user
keys live beside two counters (`num_keys` counts them the same way), and with `world_size`
the last of that many instances to close removes the file.
"""
import fcntl
import os
import stat
import time
import weakref
from contextlib import contextmanager

import msgpack

from .store import (DEFAULT_TIMEOUT, MAX_MESSAGE_BYTES, StoreError, StoreTimeout, _as_bytes,
                    _check_int, _check_key, _check_keys, _check_timeout)

_USER = "/"                       # user keys are stored under this prefix, as in PyTorch
_REFCOUNT, _CLEANUP = "refcount/", "cleanup/"


class _Log:
    """The file and what this process has replayed of it."""

    def __init__(self, path):
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(path, flags, 0o600)
        try:
            _check_private(self.fd, path)
        except BaseException:
            os.close(self.fd)
            raise
        self.data, self.read = {}, 0
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=2 * MAX_MESSAGE_BYTES)

    @contextmanager
    def locked(self, exclusive=False):
        """Hold the file's lock, with everything appended so far replayed."""
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            self._replay()
            self._check_whole()
            yield self.data
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def changed(self):
        """Whether another process appended since the last replay (without taking the lock)."""
        return os.fstat(self.fd).st_size != self.read

    def append(self, key, value):
        """Record `key = value` (None: deleted); the caller holds the exclusive lock."""
        record = msgpack.packb([key, value], use_bin_type=True)
        os.write(self.fd, record)           # O_APPEND: at the end, where our replay stopped
        self._take(record)

    def _replay(self):
        while True:
            chunk = os.pread(self.fd, 1 << 20, self.read)
            if not chunk:
                break
            self._take(chunk)

    def _take(self, chunk):
        self.read += len(chunk)
        self.unpacker.feed(chunk)
        try:
            records = list(self.unpacker)
        except (msgpack.UnpackException, ValueError) as e:
            raise StoreError(f"FileStore {self.path}: the file is not a store file ({e}); "
                             f"remove it, or pass another file_name") from None
        for record in records:
            if not (isinstance(record, list) and len(record) == 2 and isinstance(record[0], str)
                    and (record[1] is None or isinstance(record[1], bytes))):
                raise StoreError(f"FileStore {self.path}: the file holds a record that is not "
                                 f"a store entry; it was written by something else (remove it)")
            key, value = record
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def _check_whole(self):
        if self.unpacker.tell() != self.read:      # every writer appends whole records
            raise StoreError(f"FileStore {self.path}: the file ends in the middle of a record "
                             f"(a writer died while appending, or it is not a store file); "
                             f"remove it and start again")

    def add(self, key, amount):
        held = self.data.get(key, b"0")
        try:
            value = int(held) + amount
        except ValueError:
            raise ValueError(f"FileStore add: key {key[len(_USER):]!r} holds {held!r:.80}, not "
                             f"an integer counter") from None
        self.append(key, str(value).encode())
        return value


def _check_private(fd, path):
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"FileStore {path}: not a regular file")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(
            f"FileStore {path}: the file is not private to this user (owner uid {info.st_uid}, "
            f"mode {stat.filemode(info.st_mode)}); another user could read or change the "
            f"store. Remove it, or `chmod 600` it if it is yours")


def _release(log, world_size):
    """Close this instance; the last of `world_size` removes the file (PyTorch's rule)."""
    try:
        with log.locked(exclusive=True):
            finished, refs = log.add(_CLEANUP, 1), log.add(_REFCOUNT, -1)
            if refs == 0 and world_size >= 0 and finished >= world_size:
                try:
                    os.unlink(log.path)
                except FileNotFoundError:
                    pass
    finally:
        os.close(log.fd)


class FileStore:
    """`FileStore(file_name, world_size=-1)`: the store in `file_name`, created if missing.
    `get` and `wait` block until the keys appear or the timeout (300 s by default,
    `set_timeout`) passes."""

    def __init__(self, file_name, world_size=-1, timeout=DEFAULT_TIMEOUT):
        self.path = os.fspath(file_name)
        self.world_size = _check_int(world_size, "world_size")
        self.timeout = _check_timeout(timeout)
        self._log = _Log(self.path)
        with self._log.locked(exclusive=True):
            self._log.add(_REFCOUNT, 1)
        self._finalizer = weakref.finalize(self, _release, self._log, self.world_size)

    def close(self):
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"FileStore({self.path!r})"

    def _locked(self, exclusive=False):
        if not self._finalizer.alive:
            raise StoreError(f"FileStore {self.path} is closed")
        return self._log.locked(exclusive)

    # -- the API (PyTorch's Store) ----------------------------------------------------------
    def set(self, key, value):
        value = _as_bytes(value, "value")
        with self._locked(exclusive=True):
            self._log.append(_USER + _check_key(key), value)

    def get(self, key, timeout=None):
        return self._when_present([key], timeout, lambda data: data[_USER + key])

    def add(self, key, amount=1):
        _check_key(key)
        amount = _check_int(amount, "amount")
        with self._locked(exclusive=True):
            return self._log.add(_USER + key, amount)

    def append(self, key, value):
        value = _as_bytes(value, "value")
        with self._locked(exclusive=True) as data:
            key = _USER + _check_key(key)
            self._log.append(key, data.get(key, b"") + value)

    def compare_set(self, key, expected, desired):
        """Set `key` to `desired` if it holds `expected` (b"" matches a missing key); returns
        the value it holds afterwards (`expected` for a missing key, as PyTorch)."""
        expected, desired = _as_bytes(expected, "expected value"), _as_bytes(desired, "value")
        with self._locked(exclusive=True) as data:
            key = _USER + _check_key(key)
            current = data.get(key)
            if (current is None and expected == b"") or current == expected:
                self._log.append(key, desired)
                return desired
            return expected if current is None else current

    def check(self, keys):
        with self._locked() as data:
            return all(_USER + k in data for k in _check_keys(keys))

    def wait(self, keys, timeout=None):
        self._when_present(keys, timeout, lambda data: None)

    def _when_present(self, keys, timeout, then):
        """then(data) under the lock, once every key of `keys` is there."""
        keys = [_USER + k for k in _check_keys(keys)]
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        deadline, pause = time.monotonic() + timeout, 0.001
        while True:
            with self._locked() as data:
                missing = [k[len(_USER):] for k in keys if k not in data]
                if not missing:
                    return then(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreTimeout(f"FileStore {self.path}: timed out after {timeout:.1f} s "
                                   f"waiting for key(s) {missing!r}; did every process reach "
                                   f"this point? raise the timeout if startup is slow")
            while not self._log.changed() and left > 0:     # sleep until the file grows
                time.sleep(min(pause, left))
                pause, left = min(pause * 2, 0.01), deadline - time.monotonic()

    def delete_key(self, key):
        with self._locked(exclusive=True) as data:
            key = _USER + _check_key(key)
            existed = key in data
            if existed:
                self._log.append(key, None)
            return existed

    delete = delete_key

    def keys(self, prefix=""):
        with self._locked() as data:
            start = _USER + _check_key(prefix, "prefix")
            return sorted(k[len(_USER):] for k in data if k.startswith(start))

    def num_keys(self):
        with self._locked() as data:
            return len(data)

    def multi_set(self, keys, values):
        keys, values = _check_keys(keys), [_as_bytes(v, "value") for v in values]
        if len(keys) != len(values):
            raise ValueError(f"multi_set: {len(keys)} keys but {len(values)} values")
        with self._locked(exclusive=True):
            for key, value in zip(keys, values):
                self._log.append(_USER + key, value)

    def multi_get(self, keys):
        return self._when_present(keys, None, lambda data: [data[_USER + k] for k in keys])

    def set_timeout(self, timeout):
        self.timeout = _check_timeout(timeout)

    def has_extended_api(self):
        return False


__all__ = ["FileStore"]
